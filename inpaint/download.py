"""Fetching a file over HTTP(S) and checking its digest: the low level shared by the dataset ``prepare``
step (:mod:`inpaint.data.download`, which adds archive extraction and re-exports these) and the
pretrained-weight registry (:mod:`inpaint.weights`, which ``inpaint.nets`` uses, so this module must stay
free of the data and model layers: it imports only the standard library and :mod:`inpaint.errors`).

The progress messages go to the ``inpaint.data`` logger, as they always have.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.request
from pathlib import Path

from inpaint.errors import ChecksumError

log = logging.getLogger("inpaint.data")

__all__ = ["ChecksumError", "check_md5", "download_url", "file_digest", "md5sum"]


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """Hex digest of a file, read in chunks (``algorithm``: any ``hashlib`` name)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5sum(path: str | os.PathLike[str]) -> str:
    return file_digest(path, "md5")


def check_md5(path: str | os.PathLike[str], expected: str, override: str = "data.verify_checksums=false") -> None:
    """Raise :class:`ChecksumError` naming the file, both checksums and the override when they differ."""
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for '{path}': md5 {actual}, the published md5 is {expected}. The file is "
            f"damaged, truncated or a different version: download it again, or set {override} to use it anyway"
        )


def download_url(url: str, dest: str | os.PathLike[str], md5: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (via ``dest.part``, renamed when complete and verified)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done, last = 0, time.monotonic()
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if time.monotonic() - last > 10:
                    pct = f" ({100 * done / total:.0f} %)" if total else ""
                    log.info("  %s: %.1f MB%s", dest.name, done / 1e6, pct)
                    last = time.monotonic()
    except OSError as e:
        part.unlink(missing_ok=True)
        raise OSError(f"could not download {url}: {e}") from e
    if md5 is not None:
        try:
            check_md5(part, md5, override="nothing (a download must match)")
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest
