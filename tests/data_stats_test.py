"""`python -m posrec.data.stats` against counts computed independently in plain Python, and
every data-set config (loads, validates, its docstring's command and statistics are true)."""

import csv
import gzip
import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from posrec.config_lib import default_config, validate
from posrec.data import datasets
from posrec.data.stats import compute_stats, format_stats
from posrec.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONFIGS = ["beauty", "beauty_bert4rec", "video_games", "toys", "yelp", "lastfm", "ml100k",
           "ml20m", "gowalla", "zvuk", "yambda_likes", "yambda_listens", "steam"]


def _config(path: Path, **data):
    c = default_config()
    c.data.update(dict(name="csv", path=str(path), has_real_time=False))
    c.data.update(data)
    return c


def _write_csv(path: Path, rows) -> Path:
    text = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    path.write_text(text)
    return path


def _quantile(sorted_xs: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), in plain Python."""
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _reference(rows, k_user: int, k_item: int) -> dict:
    """Iterative k-core and every statistic, with dicts and lists only."""
    rows = list(rows)
    while True:
        uc = Counter(u for u, _, _ in rows)
        ic = Counter(i for _, i, _ in rows)
        kept = [r for r in rows if uc[r[0]] >= k_user and ic[r[1]] >= k_item]
        if len(kept) == len(rows):
            break
        rows = kept
    lengths = sorted(Counter(u for u, _, _ in rows).values())
    users, items = len(lengths), len({i for _, i, _ in rows})
    evaluated = [n for n in lengths if n >= 3]
    return {
        "users": users,
        "items": items,
        "interactions": len(rows),
        "seq_len": {k: _quantile(lengths, q) for k, q in
                    (("min", 0), ("p25", .25), ("p50", .5), ("p75", .75), ("p90", .9),
                     ("max", 1))} | {"mean": round(sum(lengths) / users, 2)},
        "density": len(rows) / (users * items),
        "valid_users": len(evaluated),
        "train_interactions": sum(n - 2 if n >= 3 else n for n in lengths),
    }


def test_hand_computed(tmp_path):
    # u1: 4 items, u2: 3, u3: 2 (never evaluated), u4: item 9 only (9 is seen once -> the
    # 2-core drops it, then u4). Left: 3 users, items {1, 2, 3}, 9 interactions.
    rows = [(1, 1, 0), (1, 2, 1), (1, 3, 2), (1, 1, 3), (2, 2, 0), (2, 3, 1), (2, 1, 2),
            (3, 1, 0), (3, 2, 1), (4, 9, 0)]
    s = compute_stats(_config(_write_csv(tmp_path / "a.csv", rows), min_user_count=2,
                              min_item_count=2))
    assert s["raw"] == {"users": 4, "items": 4, "interactions": 10}
    assert (s["users"], s["items"], s["interactions"]) == (3, 3, 9)
    # lengths sorted [2, 3, 4]: p25 = 2 + 0.5 * 1 = 2.5, p90 = 3 + 0.8 * 1 = 3.8
    assert s["seq_len"] == {"min": 2, "p25": 2.5, "p50": 3, "p75": 3.5, "p90": 3.8, "max": 4,
                            "mean": 3.0}
    assert s["density"] == pytest.approx(9 / 9)
    assert s["time"] is None
    # LOO: u1 and u2 evaluated; training = 2 + 1 + u3's 2 = 5 interactions in 3 sequences.
    assert s["split"] == {"name": "loo", "valid_users": 2, "test_users": 2,
                          "train_sequences": 3, "train_interactions": 5}
    text = format_stats(s)
    assert "3 users, 3 items, 9 interactions" in text and "order index only" in text


def test_random_log_matches_plain_python(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(int(u), int(i), t) for t, (u, i) in
            enumerate(zip(rng.integers(0, 150, 3000), rng.zipf(1.6, 3000) % 400))]
    s = compute_stats(_config(_write_csv(tmp_path / "r.csv", rows)))
    ref = _reference(rows, 5, 5)
    for key in ("users", "items", "interactions"):
        assert s[key] == ref[key]
    assert s["seq_len"] == pytest.approx(ref["seq_len"])
    assert s["density"] == pytest.approx(ref["density"])
    assert s["split"]["valid_users"] == s["split"]["test_users"] == ref["valid_users"]
    assert s["split"]["train_interactions"] == ref["train_interactions"]


def test_real_time_span_and_temporal_split(tmp_path):
    day = 86400
    rows = [(u, i, 1_000_000_000 + (u * 7 + i) * day) for u in range(8) for i in range(6)]
    s = compute_stats(_config(_write_csv(tmp_path / "t.csv", rows), has_real_time=True,
                              split="temporal"))
    assert s["time"]["first"] == 1_000_000_000
    assert s["time"]["days"] == (7 * 7 + 5)
    assert s["time"]["first_date"] == "2001-09-09"  # 1e9 s after the epoch, UTC
    assert s["split"]["name"] == "temporal"
    assert "2001-09-09 .. " in format_stats(s)


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="README.md"):
        compute_stats(_config(ROOT / "README.md", name="steam"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posrec.data.stats", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_json_text_and_errors(tmp_path):
    rows = [(u, (u + k) % 6, k) for u in range(6) for k in range(6)]  # a 6-core
    path = _write_csv(tmp_path / "c.csv", rows)
    args = ["--config=configs/beauty.py", f"--config.data.path={path}"]
    out = _run(*args, "--json")
    assert out.returncode == 0, out.stderr
    cfg = _load("beauty").get_config()
    cfg.data.path = str(path)
    assert json.loads(out.stdout) == json.loads(json.dumps(compute_stats(cfg)))
    text = _run(*args)
    assert text.returncode == 0 and text.stdout.strip() == format_stats(compute_stats(cfg))
    bad = _run("--config=configs/beauty.py", "--config.data.name=beuty")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("posrec: error: config.data.name='beuty'")
    assert len(bad.stderr.strip().splitlines()) == 1 and "gowalla" in bad.stderr


@pytest.mark.skipif(not (SHARED / "beauty.csv.gz").exists(), reason="shared/data not present")
def test_shared_beauty_matches_plain_python():
    with gzip.open(SHARED / "beauty.csv.gz", "rt") as f:
        rows = [(int(r["user_id"]), int(r["item_id"]), int(r["timestamp"]))
                for r in csv.DictReader(f)]
    cfg = _load("beauty").get_config()
    cfg.data.path = str(SHARED / "beauty.csv.gz")
    s = compute_stats(cfg)
    ref = _reference(rows, 5, 5)
    assert (s["users"], s["items"], s["interactions"]) == (ref["users"], ref["items"],
                                                           ref["interactions"])
    assert s["raw"]["interactions"] == len(rows)
    assert s["seq_len"] == pytest.approx(ref["seq_len"])
    assert s["split"]["test_users"] == ref["valid_users"]
    assert s["split"]["train_interactions"] == ref["train_interactions"]


# ---- the data-set configs --------------------------------------------------------------------


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid_and_documented(name):
    module = _load(name)
    cfg = module.get_config()
    validate(cfg)
    ds = datasets.get(cfg.data.name)
    assert ds.config == f"configs/{name}.py"
    doc = module.__doc__
    assert f"python -m posrec.main --config=configs/{name}.py --workdir=" in doc
    assert f"python -m posrec.data.stats --config=configs/{name}.py" in doc
    assert cfg.model.max_len == (200 if name in ("ml100k", "ml20m", "gowalla", "zvuk",
                                                 "yambda_likes", "yambda_listens") else 50)
    if "shared/data/" not in doc:
        assert "not verified here" in doc


_EXPECTED = re.compile(
    r"posrec\.data\.stats on shared/data/(\S+?)\):\s+([\d,]+)\s+users,\s+([\d,]+)\s+items,"
    r"\s+([\d,]+)\s+interactions"
)


@pytest.mark.parametrize("name", [c for c in CONFIGS if "shared/data/" in _load(c).__doc__])
def test_docstring_statistics_are_measured(name):
    module = _load(name)
    m = _EXPECTED.search(" ".join(module.__doc__.split()))
    assert m, "the docstring states the measured counts"
    path = SHARED / m.group(1)
    if not path.exists():
        pytest.skip(f"{path} not present")
    cfg = module.get_config()
    cfg.data.path = str(path)
    s = compute_stats(cfg)
    want = tuple(int(g.replace(",", "")) for g in m.groups()[1:])
    assert (s["users"], s["items"], s["interactions"]) == want
