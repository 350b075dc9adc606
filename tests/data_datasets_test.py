"""Data-set registry and raw-format readers on hand-made fixtures in each source's exact format.

Expected arrays and post-preprocessing counts are computed by hand in the comments; downloads
are tested with file:// URLs and a local HTTP server (never the internet).
"""

import dataclasses
import gzip
import hashlib
import http.server
import json
import os
import re
import sys
import threading
import zipfile
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from posrec.config_lib import default_config, validate
from posrec.data import datasets, download, load_interactions, load_split, sources
from posrec.data.preprocess import preprocess
from posrec.errors import ConfigError, DataError

FIX = Path(__file__).resolve().parent / "fixtures"
OPTS = sources.ReadOptions()


def _data(**kw) -> ml_collections.ConfigDict:
    c = default_config()
    c.data.update(kw)
    return c


def _counts(seqs) -> tuple[int, int, int]:
    return seqs.num_users, seqs.num_items, len(seqs.items)


def _raw_sequences(seqs) -> list[list[int]]:
    return [seqs.raw_item[seqs.user_items(u)].tolist() for u in range(seqs.num_users)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("POSREC_DATA_DIR", str(d))
    return d


# ---- readers: every fixture parses to hand-written arrays -----------------------------------


def test_amazon_ratings():
    x = sources.read_amazon_ratings(FIX / "ratings_Beauty.csv", OPTS)
    # users sorted: A1YJEY40YUW4SE=0, A2G04D4GJR2FHU=1, A3NHUQ33CFH3VM=2, AZD4GY1L9YQ1L=3;
    # items sorted: 7806397051=0, 9759091062=1, B00000JHS3=2, B00004TMFE=3, B0000535UX=4
    assert x.user.tolist() == [2, 0, 0, 0, 1, 1, 2, 3]
    assert x.item.tolist() == [3, 0, 1, 4, 0, 1, 0, 2]
    assert x.time.tolist()[:3] == [1299913600, 1300000000, 1300086400]
    assert x.has_real_time
    # 2-core: items 2,3,4 have one rating -> user 2 keeps one item -> dropped; 2 x 2 left.
    seqs = preprocess(x, 2, 2)
    assert _counts(seqs) == (2, 2, 4)
    assert _raw_sequences(seqs) == [[0, 1], [0, 1]]


def test_amazon_reviews_json_and_gzip(tmp_path):
    src = FIX / "reviews_Beauty_5.json"
    gz = tmp_path / "reviews_Beauty_5.json.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    x = sources.read_amazon_reviews(src, OPTS)
    y = sources.read_amazon_reviews(gz, OPTS)
    # users: A1YJEY40YUW4SE=0, A3G6XNM240RMWA=1, A60XNB876KYML=2; items 7806397051=0,
    # 9759091062=1, B00004TMFE=2
    assert x.user.tolist() == y.user.tolist() == [0, 2, 1, 0, 2, 1]
    assert x.item.tolist() == y.item.tolist() == [0, 0, 0, 1, 1, 2]
    assert x.time.tolist() == [1391040000, 1397779200, 1378425600, 1388534400, 1397779200,
                               1378425600]
    # 2-core drops item 2, then user 1 (one item left); user 0 reviewed item 1 (2014-01-01)
    # before item 0 (2014-01-30).
    seqs = preprocess(x, 2, 2)
    assert _counts(seqs) == (2, 2, 4)
    assert _raw_sequences(seqs) == [[1, 0], [0, 1]]


def test_gowalla_dedup_then_kcore():
    x = sources.read_gowalla(FIX / "loc-gowalla_totalCheckins.txt", OPTS)
    assert x.user.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert x.item.tolist() == [22847, 420315, 420315, 316637, 420315, 22847, 316637]
    assert x.time[0] == 1287532527  # 2010-10-19T23:55:27Z
    # User 0 newest first in the file; chronological: 316637, 420315, 420315, 22847.
    seqs = preprocess(x, 0, 0, dedup_consecutive=True)
    assert _raw_sequences(seqs) == [[316637, 420315, 22847], [22847, 420315], [316637]]
    # 2-core after dedup: user 2 (one check-in) goes, then 316637 (one left), 2 x 2 remain.
    seqs = preprocess(x, 2, 2, dedup_consecutive=True)
    assert _raw_sequences(seqs) == [[420315, 22847], [22847, 420315]]


def test_steam_literals_regex_and_fallback():
    lines = [ln for ln in (FIX / "steam_reviews.json").read_text().splitlines() if ln.strip()]
    import ast

    for line in lines:  # the fast regex path agrees with a full literal_eval of the line
        d = ast.literal_eval(line)
        assert sources._steam_fields(line) == (repr(d["username"]), d["product_id"], d["date"])
    assert sources._STEAM_RE.search(lines[3]) is None  # keys reordered: fallback path used
    x = sources.read_steam(FIX / "steam_reviews.json", OPTS)
    # '"Ron\'s Game"' sorts before "'Chaos Syren'" (0x22 < 0x27): Ron = 0, Chaos = 1.
    assert x.user.tolist() == [1, 0, 1, 0, 1]
    assert x.item.tolist() == [725280, 725280, 328100, 35140, 35140]
    assert x.time[0] == 1513468800  # 2017-12-17 00:00 UTC
    seqs = preprocess(x, 0, 0)
    # Chaos: 328100 (12-10), then 725280 and 35140 both on 12-17, in file order.
    assert _raw_sequences(seqs) == [[725280, 35140], [328100, 725280, 35140]]
    assert _counts(preprocess(x, 2, 2)) == (2, 2, 4)  # 328100 has one review


def test_ml20m_csv_and_zip(tmp_path):
    z = tmp_path / "ml-20m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIX / "ml-20m_ratings.csv", "ml-20m/ratings.csv")
    for path in (FIX / "ml-20m_ratings.csv", z):
        x = sources.read_ml20m(path, OPTS)
        assert x.user.tolist() == [1, 1, 1, 2, 2, 3]
        assert x.item.tolist() == [2, 29, 32, 3, 62, 2]
        assert x.time.tolist()[3:] == [974820889, 974820598, 944919407]
    assert _raw_sequences(preprocess(x, 0, 0))[0] == [29, 32, 2]


ML20M_HEADER = "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n"


@pytest.mark.parametrize("row,message", [
    ("-4,29,3.5,1112484676", "line 3, column 'userId': id -4 is negative"),
    ("1,2147483648,3.5,1112484676", "line 3, column 'movieId': id 2147483648 is beyond"),
    ("1,29,3.5,1112484676.5", "line 3, column 'timestamp': timestamp '1112484676.5' is not"),
    ("1,29,3.5,nan", "line 3, column 'timestamp': timestamp is 'nan'"),
    ("1,29,3.5,1112484676,7", "line 3: 5 field(s) where 4 are expected"),
    ("1,29,3.5,99999999999999999999", "line 3, column 'timestamp': '99999999999999999999'"),
])
def test_ml20m_rows_are_checked_like_every_csv(tmp_path, row, message):
    path = tmp_path / "ratings.csv"
    path.write_text(ML20M_HEADER + row + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        sources.read_ml20m(path, OPTS)


def test_ml20m_when_loadtxt_overflows(monkeypatch):
    """numpy versions that raise OverflowError for an integer beyond int64 (numpy 2: a
    ValueError): the file is read by the line-by-line parser instead, same result."""
    want = sources.read_ml20m(FIX / "ml-20m_ratings.csv", OPTS)

    def overflow(*args, **kw):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(np, "loadtxt", overflow)
    got = sources.read_ml20m(FIX / "ml-20m_ratings.csv", OPTS)
    assert got.user.tolist() == want.user.tolist() and got.time.tolist() == want.time.tolist()


def test_ml100k_and_lastfm(tmp_path):
    x = sources.read_ml100k(FIX / "ml-100k_u.data", OPTS)
    assert x.user.tolist() == [196, 186, 22, 196, 186]
    assert x.item.tolist() == [242, 302, 377, 302, 242]
    z = tmp_path / "hetrec2011-lastfm-2k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIX / "user_taggedartists-timestamps.dat", "user_taggedartists-timestamps.dat")
    for path in (FIX / "user_taggedartists-timestamps.dat", z):
        y = sources.read_hetrec_lastfm(path, OPTS)
        # (2, 52, t) appears with two tags: one interaction; milliseconds -> seconds.
        assert y.user.tolist() == [2, 2, 2, 4]
        assert y.item.tolist() == [52, 63, 73, 52]
        assert y.time.tolist() == [1238536800, 1238536800, 1230764400, 1241128800]


@pytest.mark.parametrize("fmt,member,header", [
    ("ml-20m", "ml-20m/ratings.csv", b"userId,movieId,rating,timestamp\n"),
    ("hetrec-lastfm", "user_taggedartists-timestamps.dat",
     b"userID\tartistID\ttagID\ttimestamp\n"),
])
def test_zip_member_that_is_not_utf8_is_named(tmp_path, fmt, member, header):
    z = tmp_path / "archive.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(member, header + b"1,2,3.5,4\n\xff\xfe\n")
    with pytest.raises(DataError, match=re.escape(f"{z}: {member}: line 3: not UTF-8 text")):
        sources.FORMATS[fmt].reader(z, OPTS)


@pytest.mark.parametrize("fmt", ["ml-20m", "ml-100k", "hetrec-lastfm", "zvuk"])
def test_zip_or_text_readers_refuse_an_unreadable_file(tmp_path, make_unreadable, fmt):
    path = tmp_path / "data.bin"
    path.write_bytes(b"PK\x03\x04")
    make_unreadable(path)
    with pytest.raises(DataError, match=f"{path}: cannot read file .*Permission denied"):
        sources.FORMATS[fmt].reader(path, OPTS)


GOWALLA_ROW = "1\t2010-10-19T23:55:27Z\t30.2\t-97.7\t22847\n"


@pytest.mark.parametrize("stamp", ["", "NaT", "2010-13-01T00:00:00Z", "yesterday"])
def test_gowalla_bad_or_missing_time_is_named(tmp_path, stamp):
    path = tmp_path / "checkins.txt"
    path.write_text(GOWALLA_ROW + f"2\t{stamp}\t30.2\t-97.7\t22847\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: line 2: check-in time {stamp!r}")):
        sources.read_gowalla(path, OPTS)


def test_gowalla_conversion_error_without_a_bad_line_is_a_data_error(monkeypatch):
    """If numpy's vectorised conversion fails although every time parses on its own, the
    reader reports the file and numpy's message (it used to re-raise the bare ValueError)."""
    def fail(stamps):
        raise ValueError("simulated failure of the vectorised conversion")

    monkeypatch.setattr(sources, "_checkin_seconds", fail, raising=False)
    path = FIX / "loc-gowalla_totalCheckins.txt"
    with pytest.raises(DataError, match=re.escape(f"{path}: the check-in times could not be "
                                                  "converted (simulated failure")):
        sources.read_gowalla(path, OPTS)


WRONG = [
    ("amazon-ratings", "reviews_Beauty_5.json"),
    ("amazon-reviews", "ratings_Beauty.csv"),
    ("gowalla", "ml-100k_u.data"),
    ("steam", "reviews_Beauty_5.json"),
    ("ml-20m", "ratings_Beauty.csv"),
    ("ml-100k", "ml-20m_ratings.csv"),
    ("hetrec-lastfm", "ml-100k_u.data"),
]


@pytest.mark.parametrize("fmt,name", WRONG)
def test_wrong_format_names_the_file(fmt, name):
    with pytest.raises(DataError) as e:
        sources.FORMATS[fmt].reader(FIX / name, OPTS)
    assert str(FIX / name) in str(e.value) and "expected" in str(e.value)


@pytest.mark.parametrize("fmt,text,message", [
    ("amazon-ratings", "A1,B1,5.0,1400000000\nA2,B2,1400000001\n",
     "line 2: 3 comma-separated field(s) instead of 4; expected"),
    ("gowalla", "1\t2010-10-19T23:55:27Z\t30.2\t-97.7\t22847\n1\t2010-10-19T23:55:27Z\n",
     "line 2: 2 tab-separated field(s) instead of 5; expected"),
])
def test_a_line_with_the_wrong_number_of_fields_is_named(tmp_path, fmt, text, message):
    path = tmp_path / "data.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
        sources.FORMATS[fmt].reader(path, OPTS)


def test_wrong_format_through_the_registry_mentions_the_csv_alternative():
    cfg = _data(name="gowalla", path=str(FIX / "steam_reviews.json"))
    with pytest.raises(DataError) as e:
        load_interactions(cfg.data)
    msg = str(e.value)
    assert "steam_reviews.json" in msg and "loc-gowalla" in msg
    assert "user_id,item_id,timestamp" in msg


# ---- parquet: Yambda and Zvuk ----------------------------------------------------------------


def _yambda(tmp_path: Path, listens: bool) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols = {
        "uid": pa.array([10, 10, 10, 20, 20, 30], pa.uint32()),
        "timestamp": pa.array([5, 10, 10, 15, 20, 25], pa.uint32()),
        "item_id": pa.array([7, 8, 9, 7, 8, 9], pa.uint32()),
        "is_organic": pa.array([1, 0, 1, 1, 1, 0], pa.uint8()),
    }
    if listens:
        cols["played_ratio_pct"] = pa.array([100, 49, 50, 120, 3, 51], pa.uint16())
        cols["track_length_seconds"] = pa.array([200] * 6, pa.uint32())
    path = tmp_path / ("listens.parquet" if listens else "likes.parquet")
    pq.write_table(pa.table(cols), path, row_group_size=4)  # two row groups
    return path


def test_yambda_likes_and_listens(tmp_path):
    likes = sources.read_yambda(_yambda(tmp_path, False), OPTS)
    assert likes.user.tolist() == [10, 10, 10, 20, 20, 30]
    assert likes.item.tolist() == [7, 8, 9, 7, 8, 9]
    assert likes.time.tolist() == [5, 10, 10, 15, 20, 25] and likes.has_real_time
    listens_path = _yambda(tmp_path, True)
    every = sources.read_yambda(listens_path, OPTS)
    assert len(every) == 6
    # played_ratio_pct [100, 49, 50, 120, 3, 51] >= 50 keeps rows 0, 2, 3, 5.
    kept = sources.read_yambda(listens_path, sources.ReadOptions(min_play_ratio=50))
    assert kept.user.tolist() == [10, 10, 20, 30]
    assert kept.item.tolist() == [7, 9, 7, 9]
    with pytest.raises(DataError, match="min_play_ratio=0"):
        sources.read_yambda(_yambda(tmp_path, False), sources.ReadOptions(min_play_ratio=50))


def test_yambda_through_the_config(tmp_path):
    path = _yambda(tmp_path, True)
    cfg = _data(name="yambda-listens", path=str(path), min_play_ratio=50)
    x = load_interactions(cfg.data)
    assert x.user.tolist() == [10, 10, 20, 30] and x.has_real_time
    cfg.data.min_play_ratio = 0
    assert len(load_interactions(cfg.data)) == 6


def _zvuk_table(pa, users):
    n = len(users)
    return pa.table({
        "user_id": users,
        "session_id": pa.array(np.arange(n), pa.int64()),
        "datetime": pa.array(
            np.datetime64("2023-03-01T00:00:00", "us") + np.arange(n) * np.timedelta64(90, "s"),
            pa.timestamp("us")),
        "track_id": pa.array([5, 6, 5, 5, 7][:n], pa.int64()),
        "play_duration": pa.array([30, 1, 200, 200, 15][:n], pa.int64()),
    })


def test_zvuk_parquet_zip_and_string_users(tmp_path, cache):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "zvuk-interactions.parquet"
    pq.write_table(_zvuk_table(pa, pa.array([3, 3, 1, 3, 1], pa.int64())), path)
    x = sources.read_zvuk(path, OPTS)
    assert x.user.tolist() == [3, 3, 1, 3, 1]
    assert x.item.tolist() == [5, 6, 5, 5, 7]
    t0 = 1677628800  # 2023-03-01 UTC
    assert x.time.tolist() == [t0, t0 + 90, t0 + 180, t0 + 270, t0 + 360]
    # Repeats are kept: user 3 played track 5 twice.
    assert _raw_sequences(preprocess(x, 0, 0))[1] == [5, 6, 5]
    z = tmp_path / "zvuk-dataset.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(path, "zvuk-interactions.parquet")
    y = sources.read_zvuk(z, OPTS)
    assert y.user.tolist() == x.user.tolist() and y.time.tolist() == x.time.tolist()
    assert (cache / "extracted" / "zvuk-dataset" / "zvuk-interactions.parquet").exists()
    s = tmp_path / "s.parquet"
    pq.write_table(_zvuk_table(pa, pa.array(["b", "b", "a", "b", "a"])), s)
    assert sources.read_zvuk(s, OPTS).user.tolist() == [1, 1, 0, 1, 0]


def test_two_extractions_of_one_member_at_once_both_succeed(tmp_path, cache, monkeypatch):
    """Runs of a parallel sweep extracting the same zip member at the same time: here a
    second extraction runs to the end while the first is about to publish its copy. Each
    writes a temp file of its own, so both succeed and the member is intact."""
    z = tmp_path / "zvuk-dataset.zip"
    payload = bytes(range(256)) * 5000
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("zvuk-interactions.parquet", payload)
    real_replace = os.replace
    nested = []

    def replace_after_another_extraction(src, dst):
        if not nested:
            nested.append(None)  # the nested extraction publishes without interruption
            nested[0] = sources._extracted(z, "zvuk-interactions.parquet", "zvuk")
        return real_replace(src, dst)

    monkeypatch.setattr(sources.os, "replace", replace_after_another_extraction)
    out = sources._extracted(z, "zvuk-interactions.parquet", "zvuk")
    assert out == nested[0] and out.read_bytes() == payload
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left


def test_parquet_errors(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    bad = tmp_path / "likes.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet"):
        sources.read_yambda(bad, OPTS)
    with pytest.raises(DataError) as e:
        sources.read_zvuk(_yambda(tmp_path, False), OPTS)  # a Yambda file given as Zvuk
    assert "user_id" in str(e.value) and "likes.parquet" in str(e.value)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError, match=r'pip install -e "\.\[parquet\]"'):
        sources.read_yambda(bad, OPTS)


# ---- user sample --------------------------------------------------------------------------

_M = (1 << 64) - 1


def _splitmix_py(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def test_user_sample_mask_matches_python_reference():
    users = np.array([0, 1, 2, 3, 12345, 2**31 - 1] * 2, np.int64)
    for fraction, seed in ((0.5, 0), (0.3, 7), (0.9, 123)):
        key = _splitmix_py(seed)
        want = [(_splitmix_py(u ^ key) >> 11) / 2**53 < fraction for u in users.tolist()]
        assert sources.user_sample_mask(users, fraction, seed).tolist() == want
    assert sources.user_sample_mask(users, 1.0, 0).all()


def test_sample_users_keeps_whole_histories():
    rng = np.random.default_rng(0)
    user = rng.integers(0, 4000, 40000)
    inter = sources._interactions(user, rng.integers(0, 50, 40000), np.arange(40000), True,
                                  Path("x"), OPTS)
    out = datasets.sample_users(inter, 0.25, seed=3)
    kept = set(out.user.tolist())
    for u in list(kept)[:50]:
        assert (out.user == u).sum() == (user == u).sum()  # every row of a kept user
    n = len(np.unique(user))
    assert abs(len(kept) - 0.25 * n) < 4 * np.sqrt(n * 0.25 * 0.75)  # binomial, 4 sigma
    other = set(datasets.sample_users(inter, 0.25, seed=4).user.tolist())
    assert other != kept
    assert datasets.sample_users(inter, 1.0, 0) is inter


def test_parquet_stream_sample_equals_post_sample(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 3000
    rng = np.random.default_rng(1)
    path = tmp_path / "likes.parquet"
    pq.write_table(pa.table({
        "uid": pa.array(rng.integers(0, 500, n), pa.uint32()),
        "timestamp": pa.array(np.arange(n), pa.uint32()),
        "item_id": pa.array(rng.integers(0, 80, n), pa.uint32()),
    }), path, row_group_size=700)
    full = sources.read_yambda(path, OPTS)
    streamed = sources.read_yambda(path, sources.ReadOptions(user_sample=0.3,
                                                             user_sample_seed=5))
    post = datasets.sample_users(full, 0.3, 5)
    assert streamed.user.tolist() == post.user.tolist()
    assert streamed.time.tolist() == post.time.tolist()


# ---- registry: names, dispatch, local CSVs --------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(ConfigError) as e:
        load_interactions(_data(name="beuty").data)
    for name in ("beauty", "gowalla", "yambda-likes", "zvuk", "steam", "ml-20m", "csv"):
        assert name in str(e.value)
    with pytest.raises(ConfigError, match="yambda-listens"):
        validate(_data(name="yambda"))


def test_validate_new_keys():
    for bad in (dict(user_sample=0.0), dict(user_sample=1.5), dict(min_play_ratio=-1),
                dict(user_sample_seed=-2)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            validate(_data(**bad))


def test_registry_entries_are_consistent():
    root = Path(__file__).resolve().parents[1]
    for name, ds in datasets.REGISTRY.items():
        assert ds.name == name and (root / ds.config).exists(), name
        if ds.remote is not None:
            assert ds.remote.url.startswith("https://") and ds.format in sources.FORMATS
            assert not ds.remote.sha256 or len(ds.remote.sha256) == 64
            assert not ds.remote.md5 or len(ds.remote.md5) == 32


def test_order_indices_are_caught_before_filtering_leaves_gaps(tmp_path):
    """A CSV of per-user positions read with has_real_time left True (the shared ml-1m with
    configs/ml1m.py): the 2-core filter drops item 9 (seen once), leaving gaps in user 0's
    positions, and the temporal split is still refused. Real times in the same layout split."""
    def write(times):
        items = [[1, 2, 9, 3, 4], [1, 2, 3, 4], [2, 1, 4, 3]]
        rows = "".join(f"{u},{i},{t}\n" for u, its in enumerate(items)
                       for i, t in zip(its, times(u, len(its))))
        path = tmp_path / f"x{len(list(tmp_path.iterdir()))}.csv"
        path.write_text("user_id,item_id,timestamp\n" + rows)
        return str(path)

    cfg = dict(name="csv", split="temporal", min_user_count=0, min_item_count=2,
               temporal_quantile=0.5)
    with pytest.raises(DataError, match="order indices only"):
        load_split(_data(path=write(lambda u, n: range(n)), **cfg))
    _, seqs = load_split(_data(path=write(lambda u, n: range(n)), **dict(cfg, split="loo")))
    assert seqs.times[:4].tolist() == [0, 1, 3, 4]  # the gap the old check missed
    split, _ = load_split(_data(path=write(lambda u, n: [100 * k + 7 * u for k in range(n)]),
                                **cfg))
    assert len(split.test.targets) > 0


def test_are_order_indices_by_hand():
    from posrec.data.readers import are_order_indices
    u = np.array([5, 5, 5, 2, 2])
    assert are_order_indices(u, np.array([0, 1, 2, 0, 1]))
    assert are_order_indices(u, np.array([2, 0, 1, 1, 0]))  # rows in any order
    assert not are_order_indices(u, np.array([1, 2, 3, 0, 1]))  # starts at 1
    assert not are_order_indices(u, np.array([0, 1, 3, 0, 1]))  # a gap
    assert not are_order_indices(u, np.array([0, 1, 1, 0, 1]))  # a repeat
    assert not are_order_indices(np.zeros(3, int), np.arange(3))  # one user: no evidence


def test_columns_csv_for_a_registry_name(tmp_path):
    csv = tmp_path / "beauty.csv.gz"
    rows = "".join(f"{u},{i},{k}\n" for u in range(3) for k, i in enumerate((1, 2, 3)))
    csv.write_bytes(gzip.compress(("user_id,item_id,timestamp\n" + rows).encode()))
    x = load_interactions(_data(name="beauty", path=str(csv), has_real_time=False).data)
    assert len(x) == 9 and not x.has_real_time
    with pytest.raises(DataError, match="loo"):  # order indices: temporal split refused
        load_split(_data(name="beauty", path=str(csv), has_real_time=False, split="temporal",
                         min_user_count=0, min_item_count=0))
    # The raw Amazon format knows its times are real, whatever data.has_real_time says.
    y = load_interactions(_data(name="beauty", path=str(FIX / "reviews_Beauty_5.json"),
                                has_real_time=False).data)
    assert y.has_real_time and len(y) == 6


def test_no_download_for_yelp(cache):
    with pytest.raises(ConfigError) as e:
        load_interactions(_data(name="yelp").data)
    assert "yelp.com/dataset" in str(e.value) and "--config.data.path" in str(e.value)


# ---- downloads: checksums, trust on first use, truncation ----------------------------------


def _point_at(monkeypatch, name: str, url: str, **remote) -> None:
    ds = datasets.REGISTRY[name]
    new = dataclasses.replace(ds, remote=dataclasses.replace(ds.remote, url=url, **remote))
    monkeypatch.setitem(datasets.REGISTRY, name, new)


def test_tofu_record_then_verify(tmp_path, cache, monkeypatch):
    src = tmp_path / "upstream" / "loc-gowalla_totalCheckins.txt.gz"
    src.parent.mkdir()
    src.write_bytes(gzip.compress((FIX / "loc-gowalla_totalCheckins.txt").read_bytes()))
    _point_at(monkeypatch, "gowalla", src.as_uri())
    cfg = _data(name="gowalla").data
    x = load_interactions(cfg)
    assert len(x) == 7
    cached = cache / "loc-gowalla_totalCheckins.txt.gz"
    rec = json.loads(download.record_path(cached).read_text())
    assert rec["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert rec["bytes"] == src.stat().st_size
    # Upstream changes: the verified cache is still used, nothing is fetched.
    src.write_bytes(gzip.compress(b"0\t2011-01-01T00:00:00Z\t0\t0\t1\n"))
    assert len(load_interactions(cfg)) == 7
    # Cache lost: the changed upstream file no longer matches the recorded sha256.
    cached.unlink()
    with pytest.raises(DataError) as e:
        load_interactions(cfg)
    msg = str(e.value)
    assert "checksum mismatch" in msg and "recorded" in msg and "sha256.json" in msg
    assert not cached.exists() and not list(cache.glob("*.part"))
    assert json.loads(download.record_path(cached).read_text()) == rec  # record unchanged


def test_tofu_hand_placed_copy_is_recorded(cache):
    cache.mkdir()
    placed = cache / "x.bin"
    placed.write_bytes(b"hand-placed")
    assert download.fetch("http://127.0.0.1:9/never", "", "x.bin") == placed
    assert download._read_record(download.record_path(placed)) == hashlib.sha256(
        b"hand-placed").hexdigest()
    placed.write_bytes(b"changed on disk")  # tampered cache: refetch is attempted and fails
    with pytest.raises(DataError, match="cannot reach"):
        download.fetch("http://127.0.0.1:9/never", "", "x.bin", timeout=5)
    download.record_path(placed).write_text("{not json")
    with pytest.raises(DataError, match="unreadable checksum record"):
        download.fetch("http://127.0.0.1:9/never", "", "x.bin")


def test_publisher_md5(tmp_path, cache, monkeypatch):
    z = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIX / "ml-100k_u.data", "ml-100k/u.data")
    good = hashlib.md5(z.read_bytes()).hexdigest()
    _point_at(monkeypatch, "ml-100k", z.as_uri(), md5="0" * 32)
    with pytest.raises(DataError) as e:
        load_interactions(_data(name="ml-100k").data)
    assert "md5" in str(e.value) and "ml-100k.zip" in str(e.value)
    assert not (cache / "ml-100k.zip").exists()
    _point_at(monkeypatch, "ml-100k", z.as_uri(), md5=good)
    assert len(load_interactions(_data(name="ml-100k").data)) == 5
    assert not download.record_path(cache / "ml-100k.zip").exists()  # md5 pinned: no TOFU


class _Truncating(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(2 * len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_truncated_download_never_replaces_good_cache(tmp_path, cache, monkeypatch):
    _Truncating.body = (FIX / "steam_reviews.json").read_bytes()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Truncating)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/steam_reviews.json.gz"
        _point_at(monkeypatch, "steam", url)
        with pytest.raises(DataError) as e:
            load_interactions(_data(name="steam").data)
        assert "truncated" in str(e.value) and "steam_reviews.json.gz" in str(e.value)
        assert not (cache / "steam_reviews.json.gz").exists()
        assert not download.record_path(cache / "steam_reviews.json.gz").exists()
        assert not list(cache.glob(".*.part"))
        # A good copy in the cache (recorded) is used; the broken server is never asked.
        good = gzip.compress((FIX / "steam_reviews.json").read_bytes())
        (cache / "steam_reviews.json.gz").write_bytes(good)
        assert len(load_interactions(_data(name="steam").data)) == 5
        assert len(load_interactions(_data(name="steam").data)) == 5
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- duplicate rows: the same check and option for every reader ------------------------------

RATINGS_DAT = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"
# (data set name, format, fixture file or text); every text format but Last.fm, whose own
# rule merges repeated (user, artist, time) rows.
DUPLICATE_CASES = [
    ("ml-1m", "ml-1m", "ratings.dat"),
    ("ml-20m", "ml-20m", "ml-20m_ratings.csv"),
    ("ml-100k", "ml-100k", "ml-100k_u.data"),
    ("beauty-bert4rec", "amazon-ratings", "ratings_Beauty.csv"),
    ("beauty", "amazon-reviews", "reviews_Beauty_5.json"),
    ("gowalla", "gowalla", "loc-gowalla_totalCheckins.txt"),
    ("steam", "steam", "steam_reviews.json"),
]


def _repeat_last_row(tmp_path: Path, name: str) -> tuple[Path, Path, int, int]:
    """(clean copy, copy whose last data line is written twice, its line, the original's)."""
    text = RATINGS_DAT if name == "ratings.dat" else (FIX / name).read_text()
    lines = text.splitlines()
    last = max(k for k, line in enumerate(lines) if line.strip())
    clean = tmp_path / "clean" / name
    clean.parent.mkdir()
    clean.write_text(text)
    dup = tmp_path / name
    dup.write_text("\n".join(lines) + "\n" + lines[last] + "\n")
    return clean, dup, len(lines) + 1, last + 1


@pytest.mark.parametrize("name,fmt,fixture", DUPLICATE_CASES)
def test_every_reader_refuses_or_drops_a_repeated_row(tmp_path, caplog, name, fmt, fixture):
    clean, dup, line, original = _repeat_last_row(tmp_path, fixture)
    with pytest.raises(DataError) as e:
        sources.FORMATS[fmt].reader(dup, OPTS)
    assert f"{dup}: line {line} repeats line {original}" in str(e.value)
    assert "--config.data.drop_duplicates=True" in str(e.value)
    with pytest.raises(DataError, match=f"line {line} repeats line {original}"):
        load_interactions(_data(name=name, path=str(dup)).data)  # the default config refuses
    # data.drop_duplicates=True, through the config as a run reads it: the rows of the file
    # without the repeat, in file order, and a warning with the count.
    want = sources.FORMATS[fmt].reader(clean, OPTS)
    with caplog.at_level("WARNING"):
        got = load_interactions(_data(name=name, path=str(dup), drop_duplicates=True).data)
    assert "dropped 1 duplicate row(s)" in caplog.text and str(dup) in caplog.text
    for field in ("user", "item", "time"):
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field


def test_ml1m_zip_duplicates_follow_the_option(tmp_path):
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", RATINGS_DAT + "2::1357::5::978298709\n")
    with pytest.raises(DataError, match="line 4 repeats line 3"):
        load_interactions(_data(name="ml-1m", path=str(z)).data)
    x = load_interactions(_data(name="ml-1m", path=str(z), drop_duplicates=True).data)
    assert x.user.tolist() == [1, 1, 2] and x.item.tolist() == [1193, 661, 1357]


def test_parquet_duplicates_are_named_by_their_values(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "likes.parquet"
    pq.write_table(pa.table({
        "uid": pa.array([10, 10, 20, 10], pa.uint32()),
        "timestamp": pa.array([5, 10, 15, 5], pa.uint32()),
        "item_id": pa.array([7, 8, 7, 7], pa.uint32()),
    }), path, row_group_size=2)  # the repeat is in the second row group
    with pytest.raises(DataError, match=re.escape("(uid 10, item_id 7, timestamp 5)")):
        sources.read_yambda(path, OPTS)
    x = sources.read_yambda(path, dataclasses.replace(OPTS, drop_duplicates=True))
    assert x.user.tolist() == [10, 10, 20] and x.time.tolist() == [5, 10, 15]


def test_same_user_and_item_at_another_time_is_not_a_duplicate():
    # Gowalla fixture: user 0 checks in at 420315 twice, 43 s apart; both rows are kept.
    x = sources.read_gowalla(FIX / "loc-gowalla_totalCheckins.txt", OPTS)
    assert x.item.tolist().count(420315) == 3
