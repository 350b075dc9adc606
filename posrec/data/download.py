"""Checksummed, atomic downloads into a local cache (the data sets of `posrec.data.datasets`).

A cached file is trusted only if it matches every digest pinned for it (sha256 and/or the md5
a publisher prints next to the file). When the publisher gives no checksum, the file is trusted
on first use (TOFU): after the first good download (or the first use of a copy placed in the
cache by hand) its sha256 is written to `<filename>.sha256.json` beside it, and every later use
and every re-download must match that record.

A download goes to a temp file in the cache directory and is `os.replace`d into place only after
its size and checksums are verified, so an interrupted, truncated or corrupt download never
replaces (or poses as) a good cached copy. Progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from posrec.config_lib import write_json_atomic
from posrec.errors import DataError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: $POSREC_DATA_DIR if set, else ~/.cache/posrec (not created here)."""
    env = os.environ.get("POSREC_DATA_DIR", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "posrec"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    return _digests(path)[0]


def _digests(path: str | os.PathLike) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file in one pass over it."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def record_path(dest: Path) -> Path:
    """Where the trust-on-first-use sha256 of cached file `dest` is kept."""
    return dest.with_name(dest.name + ".sha256.json")


def _read_record(rec: Path) -> str:
    """The sha256 recorded in `rec` ("" when there is no record yet)."""
    if not rec.exists():
        return ""
    try:
        digest = str(json.loads(rec.read_text())["sha256"]).lower()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"{rec}: unreadable checksum record ({e}); delete it to record the sha256 of the "
            "cached file again"
        ) from e
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise DataError(
            f"{rec}: {digest!r} is not a sha256 digest; delete the record to record it again"
        )
    return digest


def _mismatch(have: tuple[str, str], want_sha256: str, want_md5: str) -> str:
    """What differs between the digests `have` = (sha256, md5) and the pinned ones ('' = ok)."""
    out = []
    if want_sha256 and have[0] != want_sha256:
        out.append(f"sha256 {have[0]}, expected {want_sha256}")
    if want_md5 and have[1] != want_md5:
        out.append(f"md5 {have[1]}, expected {want_md5}")
    return "; ".join(out)


def _progress(done: int, total: int | None, name: str, *, final: bool = False) -> None:
    if total:
        msg = f"\rdownloading {name}: {done / 2**20:.1f} / {total / 2**20:.1f} MiB"
    else:
        msg = f"\rdownloading {name}: {done / 2**20:.1f} MiB"
    sys.stderr.write(msg + ("\n" if final else ""))
    sys.stderr.flush()


def fetch(
    url: str,
    sha256: str,
    filename: str,
    *,
    md5: str = "",
    timeout: float = 60.0,
    hint: str = "",
) -> Path:
    """Returns `cache_dir()/filename`, downloading `url` first unless a verified copy exists.

    Args:
        url: http(s):// or file:// URL.
        sha256: expected hex sha256 of the file, or "" when the publisher gives none.
        filename: name of the file inside the cache directory.
        md5: the publisher's hex md5, or "" (e.g. GroupLens prints one next to each zip).
        timeout: socket timeout in seconds.
        hint: what the user can do instead (ends every error message); the default says to
            download `url` by hand and pass --config.data.path.

    With neither `sha256` nor `md5` pinned, the file's sha256 is recorded on first use in
    `record_path(cache_dir()/filename)` and verified on every later use (trust on first use).

    Raises:
        DataError: the URL cannot be reached (the message says how to download by hand),
            the download is truncated (fewer bytes than Content-Length), or a checksum does
            not match (pinned or recorded). In every case an existing good cached file is left
            untouched and no partial file is left behind.
    """
    directory = cache_dir()
    dest = directory / filename
    rec = record_path(dest)
    tofu = not sha256 and not md5
    want_sha256 = (_read_record(rec) if tofu else sha256).lower()
    want_md5 = md5.lower()
    if dest.exists():
        have = _digests(dest)
        bad = _mismatch(have, want_sha256, want_md5)
        if not bad:
            if tofu and not want_sha256:
                size = dest.stat().st_size
                write_json_atomic(rec, {"url": url, "sha256": have[0], "bytes": size})
            return dest
        sys.stderr.write(f"posrec: cached {dest}: {bad}; downloading again\n")
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
            sha, md5_h = hashlib.sha256(), hashlib.md5()
            done = 0
            with resp:
                length = resp.headers.get("Content-Length") if resp.headers else None
                total = int(length) if length and length.isdigit() else None
                try:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        sha.update(chunk)
                        md5_h.update(chunk)
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
        got = (sha.hexdigest(), md5_h.hexdigest())
        bad = _mismatch(got, want_sha256, want_md5)
        if bad:
            why = (
                f"the sha256 recorded at the first download ({rec}) differs: the file is corrupt "
                f"or has changed upstream (delete {rec} to accept the new file)"
                if tofu
                else "the file is corrupt or has changed upstream"
            )
            raise DataError(
                f"{dest}: checksum mismatch for {url}: {bad} ({done} bytes); {why}; {manual}"
            )
        os.replace(tmp, dest)
        if tofu and not want_sha256:
            write_json_atomic(rec, {"url": url, "sha256": got[0], "bytes": done})
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
