"""Property-based fuzzing of malformed interaction files, end to end through training.

Each example builds a VALID CSV (checked: it loads), applies exactly one malformation, and
runs `train.train_and_evaluate` on it. Every example must end in a DataError that names the
file (and, for a bad row, its line), before anything is written: no run directory, no
temporary files, the input untouched. Reaching model initialisation fails the test.

15 malformations x 25 examples; `pytest tests/fuzz_test.py --hypothesis-show-statistics`
shows the examples run and their outcomes per malformation.
"""

import gzip
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from posrec import cli, config_lib, train
from posrec.data import load_split
from posrec.errors import DataError

REPO = Path(__file__).resolve().parents[1]
HEADER = ("user_id", "item_id", "timestamp")


@st.composite
def valid_tables(draw):
    """(header, rows): 2-6 users with 3-6 rows each, unique timestamps, optional extra
    `rating` column, columns in any order. Always a valid file for the tiny config."""
    columns = list(HEADER) + (["rating"] if draw(st.booleans()) else [])
    columns = draw(st.permutations(columns))
    rows, t = [], 0
    for user in draw(st.lists(st.integers(0, 10**6), min_size=2, max_size=6, unique=True)):
        for _ in range(draw(st.integers(3, 6))):
            t += draw(st.integers(1, 1000))
            values = {"user_id": str(user), "item_id": str(draw(st.integers(0, 50))),
                      "timestamp": str(t), "rating": draw(st.sampled_from(["1", "4.5", "x"]))}
            rows.append([values[c] for c in columns])
    return list(columns), rows


def _not_an_int(s: str) -> bool:
    try:
        int(s.strip().strip('"'))
    except ValueError:
        return True
    return False


NON_INT = st.one_of(
    st.sampled_from(["", "1.5", "2.0", "abc", "1e3", "nan", "--1", "0x1F", "1,5", "☃"]),
    st.text("abcxyzE.-+_ 0123456789", min_size=1, max_size=8),
).filter(lambda s: _not_an_int(s) and "," not in s)
BAD_TIME = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "", "abc", "1.5", "12:00", "1e400", "1/2/20"]),
    st.text("abcxyz:/", min_size=1, max_size=6),
)
KINDS = {  # kind -> what the message must say
    "missing_column": "missing column",
    "extra_field": r"field\(s\) where \d+ are expected",
    "missing_field": r"field\(s\) where \d+ are expected",
    "non_integer_id": "is not an integer id",
    "negative_id": "is negative",
    "id_beyond_int32": "beyond the int32 range",
    "bad_timestamp": "timestamp|is not a number",
    "timestamp_beyond_int64": "beyond the int64 range",
    "empty_file": "empty file",
    "header_only": "no data rows",
    "truncated_gzip": "truncated gzip|corrupt gzip|not gzip-compressed",
    "wrong_delimiter": "separated",
    "duplicate_row": "repeats line",
    "not_utf8": "not UTF-8",
    "empty_after_filtering": "k-core",
}


def _render(header, rows, delimiter=","):
    return "".join(delimiter.join(r) + "\n" for r in [header, *rows])


@st.composite
def malformed_files(draw, kind):
    """A dict: kind, data (the file's bytes), name, bad_line (the line the message must name,
    or None), overrides (config), base (the valid text it was made from)."""
    header, rows = draw(valid_tables())
    base = _render(header, rows)
    r = draw(st.integers(0, len(rows) - 1))
    line = r + 2  # 1-based, after the header
    id_col = header.index(draw(st.sampled_from(["user_id", "item_id"])))
    time_col = header.index("timestamp")
    rows = [list(x) for x in rows]
    name, overrides, bad_line = "data.csv", {}, line
    if kind == "missing_column":
        drop = header.index(draw(st.sampled_from(HEADER)))
        header = header[:drop] + header[drop + 1:]
        rows = [x[:drop] + x[drop + 1:] for x in rows]
        bad_line = 1
    elif kind == "extra_field":
        rows[r].insert(draw(st.integers(0, len(rows[r]))), draw(st.sampled_from(["7", "", "a"])))
    elif kind == "missing_field":
        del rows[r][draw(st.integers(0, len(rows[r]) - 1))]
    elif kind == "non_integer_id":
        rows[r][id_col] = draw(NON_INT)
    elif kind == "negative_id":
        rows[r][id_col] = str(-draw(st.integers(1, 10**12)))
    elif kind == "id_beyond_int32":
        rows[r][id_col] = str(draw(st.integers(2**31, 10**30)))
    elif kind == "bad_timestamp":
        rows[r][time_col] = draw(BAD_TIME)
    elif kind == "timestamp_beyond_int64":
        rows[r][time_col] = str(draw(st.integers(2**63, 10**40)) * draw(st.sampled_from([1, -1])))
    elif kind == "duplicate_row":
        at = draw(st.integers(r + 1, len(rows)))
        rows.insert(at, list(rows[r]))
        bad_line = at + 2
    elif kind == "empty_after_filtering":
        overrides["data.min_user_count"] = 100
        bad_line = None
    if kind == "empty_file":
        data, bad_line = draw(st.sampled_from(["", "\n", "   \n\n", "\r\n"])).encode(), None
    elif kind == "header_only":
        data, bad_line = (",".join(header) + "\n" * draw(st.integers(0, 3))).encode(), None
    elif kind == "wrong_delimiter":
        data = _render(header, rows, draw(st.sampled_from([";", "\t", "|"]))).encode()
        bad_line = 1
    elif kind == "truncated_gzip":
        full = gzip.compress(_render(header, rows).encode())
        data, name, bad_line = full[: draw(st.integers(1, len(full) - 1))], "data.csv.gz", None
    elif kind == "not_utf8":
        text = _render(header, rows).encode()
        cut = draw(st.integers(len(",".join(header)) + 1, len(text) - 1))
        data = text[:cut] + bytes([draw(st.sampled_from([0xFF, 0xFE, 0xC3]))]) + b"\n" + text[cut:]
        bad_line = text[:cut].count(b"\n") + 1
    elif kind not in ("empty_file", "header_only"):
        data = _render(header, rows).encode()
    return dict(kind=kind, data=data, name=name, bad_line=bad_line, overrides=overrides,
                base=base)


def tiny_config(path, **overrides):
    config = config_lib.default_config()
    config.data.update(name="csv", path=str(path), min_user_count=0, min_item_count=0)
    config.model.update(max_len=8, hidden=16, num_blocks=1)
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_malformed_file_is_a_data_error_and_writes_nothing(fuzz_dir, kind, data):
    case = data.draw(malformed_files(kind))
    d = Path(tempfile.mkdtemp(dir=fuzz_dir))
    base = d / "base.csv"
    base.write_text(case["base"])
    load_split(tiny_config(base))  # the unmodified table is valid: the malformation is the cause
    base.unlink()

    path = d / case["name"]
    path.write_bytes(case["data"])
    workdir = d / "run"
    config = tiny_config(path, **case["overrides"])
    with mock.patch.object(train, "init_state",
                           side_effect=AssertionError("a malformed file reached training")):
        with pytest.raises(DataError) as err:
            train.train_and_evaluate(config, workdir)
    msg = str(err.value)
    assert type(err.value) is DataError
    assert re.search(KINDS[case["kind"]], msg), (case["kind"], msg)
    if case["kind"] != "empty_after_filtering":
        assert str(path) in msg, msg
    if case["bad_line"] is not None:
        assert f"line {case['bad_line']}" in msg, (case["bad_line"], msg)
    assert sorted(os.listdir(d)) == [case["name"]]  # no run dir, no temporary files
    assert path.read_bytes() == case["data"]
    event(f"outcome: DataError naming the {'line' if case['bad_line'] else 'file'}")


def test_cli_prints_one_line_without_traceback(tmp_path):
    """The CLI reports a data error as one line, exit code 2, no traceback."""
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\n1,2,3\n1,-4,5\n")
    args = [sys.executable, "-m", "posrec.main", "--config=configs/quickstart.py",
            f"--workdir={tmp_path / 'run'}", "--config.data.name=csv",
            f"--config.data.path={bad}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("posrec")]
    assert lines == [
        f"posrec: error: {bad}: line 3, column 'item_id': id -4 is negative; ids must be "
        "non-negative 32-bit integers (re-index them first)"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module,extra,want", [
    ("posrec.main", ["--config.model.hiden=3"],
     "posrec: error: unknown config key 'hiden' in --config.model.hiden "
     "(Did you mean \"hidden\"?)"),
    ("posrec.main", ["--config.train.num_epochs=abc"],
     "posrec: error: flag --config.train.num_epochs=abc: invalid literal for int()"),
    ("posrec.main", ["--config=configs/nosuch.py"],
     "posrec: error: --config: Configuration is not available"),
    ("posrec.main", ["--bogus=1"], "posrec: error: Unknown command line flag 'bogus'"),
    ("posrec.data.stats", ["--config.data.nosuch=1"],
     "posrec: error: unknown config key 'nosuch' in --config.data.nosuch"),
    ("posrec.data.stats", ["--config=BROKEN"],  # an error inside get_config(), kept whole
     "posrec: error: --config: 'NoneType' object has no attribute 'foo'"),
])
def test_bad_flags_and_overrides_are_one_line_errors(tmp_path, module, extra, want):
    """Errors while absl parses the flags (before posrec's own checks) are posrec errors
    too: one line, exit code 2, no traceback, nothing written."""
    (tmp_path / "broken.py").write_text("def get_config():\n    return None.foo\n")
    extra = [a.replace("BROKEN", str(tmp_path / "broken.py")) for a in extra]
    args = [sys.executable, "-m", module, "--config=configs/quickstart.py", *extra]
    if module == "posrec.main":
        args.append(f"--workdir={tmp_path / 'run'}")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(want), proc.stderr
    assert not (tmp_path / "run").exists()


def test_debug_reraises_with_the_traceback(capsys):
    with pytest.raises(DataError, match="bad"):
        with cli.report_errors(debug=True):
            raise DataError("bad")
    with pytest.raises(SystemExit) as exit_info:
        with cli.report_errors(debug=False):
            raise DataError("bad")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "posrec: error: bad\n"
