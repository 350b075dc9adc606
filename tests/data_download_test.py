"""download.fetch against a local HTTP server (never the internet), plus load_interactions."""

import contextlib
import dataclasses
import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from posrec.data import datasets, download, load_interactions, load_split
from posrec.errors import ConfigError, DataError

PAYLOAD = b"posrec test payload\n" * 5000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path == "/good":
            body, length = PAYLOAD, len(PAYLOAD)
        elif self.path == "/other":
            body, length = b"something else", 14
        elif self.path == "/truncated":
            body, length = PAYLOAD[: len(PAYLOAD) // 3], len(PAYLOAD)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("POSREC_DATA_DIR", str(d))
    return d


def _no_partials(d: Path) -> bool:
    return not any(p.name.endswith(".part") for p in d.iterdir()) if d.exists() else True


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("POSREC_DATA_DIR", str(tmp_path))
    assert download.cache_dir() == tmp_path
    monkeypatch.delenv("POSREC_DATA_DIR")
    assert download.cache_dir() == Path.home() / ".cache" / "posrec"


def test_constants():
    r = datasets.REGISTRY["ml-1m"].remote
    assert r.url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert len(r.sha256) == 64 and len(r.md5) == 32


def test_good_download_is_cached(server, cache, capsys):
    _Handler.requests.clear()
    p = download.fetch(f"{server}/good", SHA, "f.bin")
    assert p == cache / "f.bin" and p.read_bytes() == PAYLOAD
    assert "downloading f.bin" in capsys.readouterr().err
    again = download.fetch(f"{server}/good", SHA.upper(), "f.bin")
    assert again == p and _Handler.requests == ["/good"]  # second call served from the cache
    assert _no_partials(cache)


def test_checksum_mismatch_keeps_old_cache(server, cache):
    cache.mkdir()
    old = cache / "f.bin"
    old.write_bytes(b"an older copy")
    with pytest.raises(DataError) as e:
        download.fetch(f"{server}/other", SHA, "f.bin")
    assert "checksum mismatch" in str(e.value) and "f.bin" in str(e.value)
    assert old.read_bytes() == b"an older copy"
    assert _no_partials(cache)


def test_good_cache_never_replaced(server, cache):
    download.fetch(f"{server}/good", SHA, "f.bin")
    # Even pointed at a different URL, a verified cached copy is returned as is.
    assert download.fetch(f"{server}/other", SHA, "f.bin").read_bytes() == PAYLOAD


def test_truncated_download_detected(server, cache):
    with pytest.raises(DataError) as e:
        download.fetch(f"{server}/truncated", SHA, "t.bin")
    assert "t.bin" in str(e.value)
    assert "truncated" in str(e.value) or "interrupted" in str(e.value)
    assert not (cache / "t.bin").exists() and _no_partials(cache)


def _closed_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url(cache):
    url = f"http://127.0.0.1:{_closed_port()}/ml-1m.zip"
    with pytest.raises(DataError) as e:
        download.fetch(url, SHA, "ml-1m.zip", timeout=5)
    assert "by hand" in str(e.value) and "--config.data.path=" in str(e.value)
    assert _no_partials(cache)


def test_file_url(tmp_path, cache):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    assert download.fetch(src.as_uri(), SHA, "g.bin").read_bytes() == PAYLOAD


# ---- load_interactions / load_split dispatch ------------------------------------------------

RATINGS = "".join(f"{u}::{i}::4::{1000 + 10 * u + i}\n" for u in range(1, 7) for i in range(1, 7))


def _cfg(**data) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict(dict(
        name="csv", path="", columns=("user_id", "item_id", "timestamp"), has_real_time=True,
        min_user_count=5, min_item_count=5, dedup_consecutive=False, split="loo",
        temporal_quantile=0.9,
        synthetic=ml_collections.ConfigDict(dict(num_users=50, num_items=100, seq_len=12)),
    ))
    c.data.update(data)
    return c


def _patch_ml1m(monkeypatch, **remote):
    ds = datasets.REGISTRY["ml-1m"]
    new = dataclasses.replace(ds, remote=dataclasses.replace(ds.remote, **remote))
    monkeypatch.setitem(datasets.REGISTRY, "ml-1m", new)


def test_load_ml1m_offline_message(cache, monkeypatch):
    _patch_ml1m(monkeypatch, url=f"http://127.0.0.1:{_closed_port()}/ml-1m.zip")
    with pytest.raises(DataError) as e:
        load_interactions(_cfg(name="ml-1m").data)
    msg = str(e.value)
    assert "by hand" in msg and "--config.data.path=/path/to/ml-1m.zip (or a CSV)" in msg


def test_load_ml1m_from_cached_zip(cache, monkeypatch):
    cache.mkdir()
    z = cache / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", RATINGS)
    _patch_ml1m(monkeypatch, sha256=download.sha256_file(z), md5="")
    x = load_interactions(_cfg(name="ml-1m").data)
    assert len(x) == 36 and x.has_real_time


def test_load_paths(tmp_path):
    z = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", RATINGS)
    dat = tmp_path / "ratings.dat"
    dat.write_text(RATINGS)
    csv = tmp_path / "x.csv"
    csv.write_text("u,i,t\n" + "".join(f"{u},{i},{i}\n" for u in range(6) for i in range(6)))
    assert len(load_interactions(_cfg(name="ml-1m", path=str(z)).data)) == 36
    assert len(load_interactions(_cfg(name="ml-1m", path=str(dat)).data)) == 36
    x = load_interactions(_cfg(name="csv", path=str(csv), columns=("u", "i", "t"),
                               has_real_time=False).data)
    assert len(x) == 36 and not x.has_real_time
    with pytest.raises(ConfigError, match="data.path"):
        load_interactions(_cfg(name="csv").data)
    with pytest.raises(ConfigError):
        load_interactions(_cfg(name="nope").data)
    # Order indices only -> temporal split refused end to end.
    with pytest.raises(DataError, match="loo"):
        load_split(_cfg(name="csv", path=str(csv), columns=("u", "i", "t"),
                        has_real_time=False, split="temporal"))


def test_load_split_synthetic():
    split, seqs = load_split(_cfg(name="synthetic"))
    assert seqs.num_users == 50 and split.name == "loo"
    assert len(split.test) == 50
    assert np.array_equal(split.test.users, np.arange(50))
