"""Readers: round trips on small hand-written files, every malformed case, real ML-1M smoke."""

import gzip
import io
import re
import subprocess
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from posrec.data import sources
from posrec.data.readers import Interactions, check_duplicates, read_csv, read_ml1m
from posrec.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(tmp_path: Path, name: str, text: str, gz: bool = False) -> Path:
    p = tmp_path / name
    data = text.encode()
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


GOOD = "user_id,item_id,timestamp\n3,10,100\n1,20,50\n3,11,99\n"


@pytest.mark.parametrize("gz", [False, True])
def test_read_csv_roundtrip(tmp_path, gz):
    p = _write(tmp_path, "a.csv.gz" if gz else "a.csv", GOOD, gz=gz)
    x = read_csv(p, has_real_time=False)
    assert x.user.tolist() == [3, 1, 3]
    assert x.item.tolist() == [10, 20, 11]
    assert x.time.tolist() == [100, 50, 99]
    assert x.user.dtype == x.item.dtype == x.time.dtype == np.int64
    assert x.has_real_time is False


def test_read_csv_other_columns_order_extra_and_crlf(tmp_path):
    text = "rating,timestamp,item,user\r\n4.5,7,2,1\r\n3,8.0,5,1\r\n\r\n"
    p = _write(tmp_path, "b.csv", text)
    x = read_csv(p, user_col="user", item_col="item", time_col="timestamp")
    assert x.user.tolist() == [1, 1]
    assert x.item.tolist() == [2, 5]
    assert x.time.tolist() == [7, 8]  # "8.0" is an integral timestamp: accepted


def test_read_csv_tab_delimiter_option(tmp_path):
    p = _write(tmp_path, "c.tsv", "user_id\titem_id\ttimestamp\n1\t2\t3\n")
    x = read_csv(p, delimiter="\t")
    assert (x.user[0], x.item[0], x.time[0]) == (1, 2, 3)


def _err(tmp_path, text, name="bad.csv", gz=False, **kw) -> str:
    p = _write(tmp_path, name, text, gz=gz)
    with pytest.raises(DataError) as e:
        read_csv(p, **kw)
    msg = str(e.value)
    assert str(p) in msg, msg  # every message names the file
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_csv(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    assert "empty" in _err(tmp_path, "")


def test_header_only(tmp_path):
    assert "no data rows" in _err(tmp_path, "user_id,item_id,timestamp\n")


def test_missing_column_named(tmp_path):
    msg = _err(tmp_path, "user_id,item_id\n1,2\n")
    assert "'timestamp'" in msg and "line 1" in msg


def test_no_header(tmp_path):
    msg = _err(tmp_path, "1,2,3\n4,5,6\n")
    assert "header row is required" in msg


def test_extra_field_in_row(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n4,5,6,7\n")
    assert "line 3" in msg and "4 field" in msg


def test_missing_field_in_row(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n\n4,5\n")
    assert "line 4" in msg  # blank line 3 is skipped but still counted


def test_non_integer_id(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n1,abc,4\n")
    assert "line 3" in msg and "'item_id'" in msg and "'abc'" in msg


def test_float_id_rejected(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1.5,2,3\n")
    assert "line 2" in msg and "'user_id'" in msg


def test_negative_id(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n\n1,-7,4\n")
    assert "line 4" in msg and "negative" in msg


def test_id_beyond_int32(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n2147483648,2,4\n")
    assert "line 3" in msg and "int32" in msg


def test_nan_timestamp(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3\n1,3,nan\n")
    assert "line 3" in msg and "'timestamp'" in msg


def test_non_numeric_timestamp(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,2020-01-01\n")
    assert "line 2" in msg and "not a number" in msg


def test_fractional_timestamp(tmp_path):
    msg = _err(tmp_path, "user_id,item_id,timestamp\n1,2,3.25\n")
    assert "line 2" in msg and "not an integer" in msg


@pytest.mark.parametrize("value,message", [
    ("3.25", "timestamp '3.25' is not an integer"),
    ("1e-3", "timestamp '1e-3' is not an integer"),
    ("nan", "timestamp is 'nan'"),
    ("inf", "timestamp is 'inf'"),
    ("-inf", "timestamp is '-inf'"),
])
def test_non_integral_timestamps_are_refused_with_line_and_column(tmp_path, value, message):
    msg = _err(tmp_path, f"user_id,item_id,timestamp\n1,2,3\n1,3,{value}\n")
    assert f"line 3, column 'timestamp': {message}" in msg


def test_integral_float_timestamps_are_read_exactly(tmp_path):
    p = _write(tmp_path, "f.csv", "user_id,item_id,timestamp\n1,2,1e3\n1,3,978300760.0\n")
    assert read_csv(p).time.tolist() == [1000, 978300760]


def _loadtxt_of_numpy_1_24(monkeypatch):
    """np.loadtxt as numpy 1.23-1.26 behave: a value of an integer column that is not an
    integer ("1.5", "nan") is parsed through float, truncated, with a DeprecationWarning
    (numpy 2 raises ValueError instead)."""
    real = np.loadtxt

    def loadtxt(fname, *args, dtype=float, **kw):
        text = fname.read()
        try:
            return real(io.StringIO(text), *args, dtype=dtype, **kw)
        except ValueError:
            dt = np.dtype(dtype)
            as_float = (
                np.dtype([(n, np.float64) for n in dt.names]) if dt.names else np.float64
            )
            warnings.warn("loadtxt(): Parsing an integer via a float is deprecated.",
                          DeprecationWarning, stacklevel=2)
            with np.errstate(invalid="ignore"):
                return real(io.StringIO(text), *args, dtype=as_float, **kw).astype(dt)

    monkeypatch.setattr(np, "loadtxt", loadtxt)


@pytest.mark.parametrize("row,message", [
    ("1,2,3.25", "timestamp '3.25' is not an integer"),
    ("1,2,nan", "timestamp is 'nan'"),
    ("1.5,2,3", "'1.5' is not an integer id"),
])
def test_old_numpy_float_parsing_of_integers_is_not_trusted(tmp_path, monkeypatch, row,
                                                            message):
    p = _write(tmp_path, "old.csv", f"user_id,item_id,timestamp\n7,8,9\n{row}\n")
    _loadtxt_of_numpy_1_24(monkeypatch)
    with pytest.warns(DeprecationWarning):  # the simulation does warn
        np.loadtxt(io.StringIO(row), delimiter=",", dtype=np.int64)
    with pytest.raises(DataError) as e:
        read_csv(p)
    assert f"{p}: line 3, column" in str(e.value) and message in str(e.value)
    # A clean file still takes the fast path, and reads the same.
    ok = _write(tmp_path, "ok.csv", "user_id,item_id,timestamp\n7,8,9\n1,2,3\n")
    assert read_csv(ok).time.tolist() == [9, 3]


def test_tab_file_read_as_csv(tmp_path):
    msg = _err(tmp_path, "user_id\titem_id\ttimestamp\n1\t2\t3\n")
    assert "looks tab-separated" in msg
    # No config key sets a delimiter: the hint says how to convert the file instead.
    assert "delimiter=" not in msg
    assert "comma-separated fields are expected: convert it, e.g. `tr '\\t' ','" in msg


def test_wrong_delimiter_hints_name_a_working_fix(tmp_path):
    p = _write(tmp_path, "bad.csv", "user_id,item_id,timestamp\n1::2::3\n")
    with pytest.raises(DataError) as e:
        read_csv(p)
    assert "sed 's/::/,/g'" in str(e.value) and "--config.data.name=ml-1m" in str(e.value)
    # The hint's command really makes a file read_csv accepts.
    for text, sep in (("user_id\titem_id\ttimestamp\n1\t2\t3\n", "\t"),
                      ("user_id;item_id;timestamp\n1;2;3\n", ";"),
                      ("user_id item_id  timestamp\n1 2   3\n", " ")):
        bad = _write(tmp_path, "in.txt", text)
        with pytest.raises(DataError) as e:
            read_csv(bad)
        cmd = re.search(r"e\.g\. `(.*) < FILE > FILE\.csv`", str(e.value))[1]
        out = tmp_path / "out.csv"
        subprocess.run(f"{cmd} < {bad} > {out}", shell=True, check=True)
        x = read_csv(out)
        assert (x.user.tolist(), x.item.tolist(), x.time.tolist()) == ([1], [2], [3]), sep
    # A raw format with its own separator (ml-100k is tab-separated) gets no CSV advice.
    u = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n186,302,3,891717742\n")
    with pytest.raises(DataError) as e:
        sources.read_ml100k(u, sources.ReadOptions())
    assert str(e.value) == (
        f"{u}: line 2: 1 field(s) where 4 are expected; the file looks comma-separated, but "
        "tab-separated fields are expected: is this the right file for this format?"
    )


def test_semicolon_file_read_as_csv(tmp_path):
    assert "semicolon" in _err(tmp_path, "user_id;item_id;timestamp\n1;2;3\n")


def test_truncated_gzip(tmp_path):
    full = gzip.compress(("user_id,item_id,timestamp\n" + "1,2,3\n" * 2000).encode())
    p = tmp_path / "t.csv.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated gzip") as e:
        read_csv(p)
    assert str(p) in str(e.value)


def test_gz_name_but_plain(tmp_path):
    assert "not gzip" in _err(tmp_path, GOOD, name="plain.csv.gz")


def test_binary_file(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"user_id,item_id,timestamp\n\xff\xfe\x00\x01\n")
    with pytest.raises(DataError, match="line 2"):
        read_csv(p)


RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"


def test_read_ml1m_dat_and_zip(tmp_path):
    dat = _write(tmp_path, "ratings.dat", RATINGS)
    x = read_ml1m(dat)
    assert x.user.tolist() == [1, 1, 2]
    assert x.item.tolist() == [1193, 661, 1357]
    assert x.time.tolist() == [978300760, 978302109, 978298709]
    assert x.has_real_time is True
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/README", "hi")
        zf.writestr("ml-1m/ratings.dat", RATINGS)
    y = read_ml1m(z)
    assert y.item.tolist() == x.item.tolist() and y.time.tolist() == x.time.tolist()


def test_read_ml1m_errors(tmp_path):
    bad = _write(tmp_path, "ratings.dat", "1::2::3::4\n1::x::3::5\n")
    with pytest.raises(DataError, match="line 2"):
        read_ml1m(bad)
    csv = _write(tmp_path, "r2.dat", GOOD)
    with pytest.raises(DataError, match="UserID::MovieID"):
        read_ml1m(csv)
    z = tmp_path / "ml-1m.zip"
    z.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="zip"):
        read_ml1m(z)
    with pytest.raises(DataError, match="not found"):
        read_ml1m(tmp_path / "missing.zip")


def test_read_ml1m_directory_or_unreadable_file(tmp_path, make_unreadable):
    d = tmp_path / "ml-1m"
    d.mkdir()
    with pytest.raises(DataError, match=f"{d}: is a directory, expected a data file"):
        read_ml1m(d)
    dat = _write(tmp_path, "ratings.dat", RATINGS)
    make_unreadable(dat)
    with pytest.raises(DataError, match=f"{dat}: cannot read file .*Permission denied"):
        read_ml1m(dat)


def test_real_ml1m_smoke():
    path = SHARED / "ml-1m.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    t0 = time.perf_counter()
    x = read_csv(path, has_real_time=False)
    elapsed = time.perf_counter() - t0
    assert len(x) == 1_000_209
    assert len(np.unique(x.user)) == 6_040
    assert len(np.unique(x.item)) == 3_706
    assert elapsed < 5.0, f"reading ML-1M took {elapsed:.2f}s"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_check_duplicates_matches_a_python_reference(seed):
    """Random logs with many repeats: drop=True keeps exactly the first occurrence of each
    (user, item, time) row, in file order; drop=False names the first repeat's row."""
    rng = np.random.default_rng(seed)
    n = 3000
    inter = Interactions(rng.integers(0, 6, n), rng.integers(0, 6, n),
                         rng.integers(-3, 5, n) * 10**12, True)
    seen, keep, first_repeat = {}, [], None
    for r, row in enumerate(zip(inter.user.tolist(), inter.item.tolist(),
                                inter.time.tolist(), strict=True)):
        if row in seen:
            first_repeat = first_repeat or (r, seen[row])
        else:
            seen[row] = r
            keep.append(r)
    out = check_duplicates(inter, Path("f.csv"), True)
    assert out.user.tolist() == inter.user[keep].tolist()
    assert out.item.tolist() == inter.item[keep].tolist()
    assert out.time.tolist() == inter.time[keep].tolist()
    with pytest.raises(DataError) as e:
        check_duplicates(inter, Path("f.csv"), False, row_line=lambda r: r + 2)
    r, original = first_repeat
    assert f"f.csv: line {r + 2} repeats line {original + 2}; {n - len(keep)} duplicate" in str(
        e.value)
    clean = Interactions(inter.user[keep], inter.item[keep], inter.time[keep], True)
    assert check_duplicates(clean, Path("f.csv"), False) is clean
