"""Recommendations from a checkpoint vs the model's top-K computed directly.

The run trains on a CSV whose original ids are far from the internal ones (items 1000 + 7i,
users 50 + 3u), so a wrong id map cannot pass. The reference applies the restored model with
flax, scores in float64 numpy, masks with a Python set and ranks with np.argsort.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import posrec
from posrec import checkpoint, config_lib, recommend, train
from posrec.data.synthetic import make_synthetic
from posrec.errors import DataError
from posrec.models import sasrec

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

REPO = Path(__file__).resolve().parents[1]
T = 8


def raw_item(i):
    return 1000 + 7 * int(i)


def raw_user(u):
    return 50 + 3 * int(u)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run on a 120-user, 40-item CSV with remapped ids; also the CSV's rows."""
    d = tmp_path_factory.mktemp("rec")
    inter = make_synthetic(num_users=120, num_items=40, seq_len=16, seed=3)
    rows = [(raw_user(u), raw_item(i), int(t)) for u, i, t in zip(inter.user, inter.item,
                                                                   inter.time)]
    path = d / "data.csv"
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    config = config_lib.default_config()
    config.data.update(name="csv", path=str(path), min_user_count=0, min_item_count=0)
    config.model.update(max_len=T, hidden=16, num_blocks=1, dropout=0.1, positional="absolute")
    config.train.update(num_epochs=2, batch_size=32, log_every=1000)
    config.eval.batch_size = 64
    workdir = d / "run"
    train.train_and_evaluate(config, workdir)
    return workdir, rows


@pytest.fixture(scope="module")
def rec(run_dir):
    return posrec.Recommender.from_checkpoint(run_dir[0])


def reference_top_k(workdir, history, k, exclude_seen=True):
    """Independent top-k: restored params, flax apply, float64 numpy scores, argsort."""
    config, params, _ = checkpoint.restore_params(workdir, "best")
    item_ids = np.load(Path(workdir) / "item_ids.npy")
    internal = {int(raw): i for i, raw in enumerate(item_ids) if i > 0}
    ids = [internal[x] for x in history]
    inputs = np.zeros((1, T), np.int32)
    tail = ids[-T:]
    inputs[0, T - len(tail):] = tail
    model = sasrec.SASRec(config.model, len(item_ids) - 1)
    hidden = np.asarray(model.apply({"params": params}, inputs, train=False))[0, -1]
    table = np.asarray(params["item_embed"]["embedding"], np.float64)
    scores = table @ hidden.astype(np.float64)
    scores[0] = -np.inf
    if exclude_seen:
        scores[sorted(set(ids))] = -np.inf
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])][:k]
    return item_ids[order], scores[order]


def user_histories(rows):
    """{original user: original items in time order (file order on ties)}, plain Python."""
    by_user = {}
    for pos, (u, i, t) in enumerate(rows):
        by_user.setdefault(u, []).append((t, pos, i))
    return {u: [i for _, _, i in sorted(v)] for u, v in by_user.items()}


def assert_same(got, want_items, want_scores):
    np.testing.assert_array_equal(got.items, want_items)
    np.testing.assert_allclose(got.scores, want_scores, rtol=1e-5, atol=1e-5)
    assert got.items.dtype == np.int64


def test_recommend_equals_direct_top_k(run_dir, rec):
    workdir, rows = run_dir
    hist = user_histories(rows)
    rng = np.random.default_rng(0)
    catalog = sorted({i for _, i, _ in rows})
    cases = [hist[raw_user(1)], hist[raw_user(57)][:3], [catalog[5]],
             list(rng.choice(catalog, 25)),  # longer than T, with repeats
             list(rng.choice(catalog, 4))]
    for history in cases:
        for k in (1, 10):
            assert_same(rec.recommend(history, k), *reference_top_k(workdir, history, k))


def test_k_beyond_the_catalog_returns_every_unseen_item(run_dir, rec):
    workdir, rows = run_dir
    history = user_histories(rows)[raw_user(4)]
    got = rec.recommend(history, k=1000)
    assert len(got.items) == 40 - len(set(history))
    assert not set(got.items) & set(history)
    assert_same(got, *reference_top_k(workdir, history, 1000))


def test_exclude_seen_false(run_dir, rec):
    workdir, rows = run_dir
    history = user_histories(rows)[raw_user(9)]
    got = rec.recommend(history, k=40, exclude_seen=False)
    assert len(got.items) == 40
    assert_same(got, *reference_top_k(workdir, history, 40, exclude_seen=False))


def test_batch_equals_single(run_dir, rec):
    _, rows = run_dir
    hist = user_histories(rows)
    histories = [hist[raw_user(u)][: 2 + u % 9] for u in range(1, 12)]  # 11 rows: padded to 16
    batch = rec.recommend_batch(histories, k=5)
    assert len(batch) == len(histories)
    for h, got in zip(histories, batch, strict=True):
        single = rec.recommend(h, k=5)
        np.testing.assert_array_equal(got.items, single.items)
        # another batch shape may round the last bit of a float32 dot product differently
        np.testing.assert_allclose(got.scores, single.scores, rtol=1e-6)


def test_recommend_user_uses_the_full_history(run_dir, rec):
    workdir, rows = run_dir
    history = user_histories(rows)[raw_user(17)]
    np.testing.assert_array_equal(rec.user_history(raw_user(17)), history)
    assert_same(rec.recommend_user(raw_user(17), k=10), *reference_top_k(workdir, history, 10))
    with pytest.raises(DataError, match="user 51 is not in the run's data"):
        rec.recommend_user(51)  # 51 = 50 + 1: not a multiple-of-3 offset, never a user


def test_unknown_items_are_reported(run_dir, rec, caplog):
    _, rows = run_dir
    known = user_histories(rows)[raw_user(2)][:5]
    history = [known[0], 5, known[1], 1001, *known[2:]]  # 5, 1001: not 1000 + 7i
    with pytest.raises(DataError, match=r"2 item id\(s\) not in the model's catalog of 40 "
                                        r"items: 5, 1001; .*unknown='warn'"):
        rec.recommend(history, k=5)
    with caplog.at_level("WARNING"):
        got = rec.recommend(history, k=5, unknown="warn")
    assert "dropping 2 item id(s) not in the model's catalog of 40 items: 5, 1001" in caplog.text
    want = rec.recommend(known, k=5)
    np.testing.assert_array_equal(got.items, want.items)
    with pytest.raises(DataError, match="no item of the model's catalog"):
        rec.recommend([5, 6], k=5, unknown="warn")


def test_run_history_text(run_dir, rec):
    workdir, rows = run_dir
    history = user_histories(rows)[raw_user(3)][:6]
    text = recommend.run(str(workdir), history=",".join(map(str, history)), k=3)
    lines = text.splitlines()
    assert lines[0] == "history of 6 items; top 3 of 40 items (seen items excluded)"
    assert lines[1].split() == ["rank", "item_id", "score"]
    want = rec.recommend(history, k=3)
    for r, (line, item, score) in enumerate(zip(lines[2:], want.items, want.scores), 1):
        assert line.split() == [str(r), str(item), f"{score:.4f}"]
    with pytest.raises(DataError, match=r"--history entry 2 \('x'\)"):
        recommend.run(str(workdir), history="1007,x", k=3)


def test_cli_user(run_dir, rec):
    workdir, rows = run_dir
    user = raw_user(30)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "posrec.recommend", f"--workdir={workdir}", f"--user={user}",
         "--k=4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    n = len(user_histories(rows)[user])
    assert lines[0] == f"user {user}: {n} items in the history; top 4 of 40 items (seen items " \
                       "excluded)"
    want = rec.recommend_user(user, k=4)
    assert [line.split() for line in lines[2:]] == [
        [str(r), str(i), f"{s:.4f}"] for r, (i, s) in enumerate(zip(want.items, want.scores), 1)
    ]


def test_import_posrec_does_not_import_jax():
    code = "import sys, posrec; assert 'jax' not in sys.modules, 'import posrec imported jax'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert posrec.Recommender is recommend.Recommender  # resolved lazily by posrec.__getattr__
    with pytest.raises(AttributeError, match="no attribute 'Recommend'"):
        posrec.Recommend  # noqa: B018
