"""Checksums, downloads and archive extraction for the dataset ``prepare`` step.

Only what the dataset owners let anyone fetch is ever downloaded (CIFAR-10, LSUN); everything else is
checked in place and, when missing, reported with where its owner distributes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

log = logging.getLogger("inpaint.data")

__all__ = ["ChecksumError", "check_md5", "download_url", "extract", "md5sum"]


class ChecksumError(ValueError):
    """A file's checksum differs from the one its owners publish."""


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


def _safe_target(dest: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ValueError(f"archive member '{name}' would extract outside '{dest}'")
    return target


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` into ``dest``, refusing members that escape it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s into %s", archive, dest)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = _safe_target(dest, member.filename)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_target(dest, m.name)
                if m.issym() or m.islnk():
                    raise ValueError(f"archive '{archive}' holds a link ('{m.name}'); refusing to extract it")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: also strips unsafe modes
                tf.extractall(dest, members=members, filter="data")
            else:
                tf.extractall(dest, members=members)
        return
    raise ValueError(f"'{archive}' is neither a tar nor a zip archive")
