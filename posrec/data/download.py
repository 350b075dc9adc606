"""Checksummed, atomic downloads into a local cache (used for MovieLens-1M).

A file in the cache is trusted only if its sha256 matches the pinned value. A download goes
to a temp file in the cache directory and is `os.replace`d into place only after its size and
checksum are verified, so an interrupted or corrupt download never replaces (or poses as) a
good cached copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from posrec.errors import DataError

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
# sha256 of the official ml-1m.zip (verified on download).
ML1M_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
# md5 published by GroupLens next to the file (recorded for reference; sha256 is what we check).
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: $POSREC_DATA_DIR if set, else ~/.cache/posrec (not created here)."""
    env = os.environ.get("POSREC_DATA_DIR", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "posrec"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _progress(done: int, total: int | None, name: str, *, final: bool = False) -> None:
    if total:
        msg = f"\rdownloading {name}: {done / 2**20:.1f} / {total / 2**20:.1f} MiB"
    else:
        msg = f"\rdownloading {name}: {done / 2**20:.1f} MiB"
    sys.stderr.write(msg + ("\n" if final else ""))
    sys.stderr.flush()


def fetch(
    url: str, sha256: str, filename: str, *, timeout: float = 60.0, hint: str = ""
) -> Path:
    """Returns `cache_dir()/filename`, downloading `url` first unless a verified copy exists.

    Args:
        url: http(s):// or file:// URL.
        sha256: expected hex digest of the file.
        filename: name of the file inside the cache directory.
        timeout: socket timeout in seconds.
        hint: what the user can do instead (ends every error message); the default says to
            download `url` by hand and pass --config.data.path.

    Raises:
        DataError: the URL cannot be reached (the message says how to download by hand),
            the download is truncated (fewer bytes than Content-Length), or the checksum does
            not match. In every case an existing good cached file is left untouched and no
            partial file is left behind.
    """
    directory = cache_dir()
    dest = directory / filename
    want = sha256.lower()
    if dest.exists():
        have = sha256_file(dest)
        if have == want:
            return dest
        sys.stderr.write(
            f"posrec: cached {dest} has sha256 {have}, expected {want}; downloading again\n"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"{directory}: cannot create the download cache ({e}); set POSREC_DATA_DIR to a "
            "writable directory"
        ) from e
    manual = hint or (
        f"download {url} by hand and pass --config.data.path=/path/to/{filename} "
        f"(or place it at {dest})"
    )
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise DataError(f"cannot reach {url} ({e}); {manual}") from e
            h = hashlib.sha256()
            done = 0
            with resp:
                length = resp.headers.get("Content-Length") if resp.headers else None
                total = int(length) if length and length.isdigit() else None
                try:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        _progress(done, total, filename)
                except (OSError, http.client.HTTPException) as e:
                    raise DataError(
                        f"{dest}: download of {url} interrupted after {done} bytes ({e}); "
                        f"try again or {manual}"
                    ) from e
            _progress(done, total, filename, final=True)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise DataError(
                f"{dest}: truncated download of {url}: got {done} of {total} bytes; "
                f"try again or {manual}"
            )
        got = h.hexdigest()
        if got != want:
            raise DataError(
                f"{dest}: checksum mismatch for {url}: sha256 {got}, expected {want} "
                f"({done} bytes); the file is corrupt or has changed upstream; {manual}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
