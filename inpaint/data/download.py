"""Checksums, downloads and archive extraction for the dataset ``prepare`` step.

Only what the dataset owners let anyone fetch is ever downloaded (CIFAR-10, LSUN); everything else is
checked in place and, when missing, reported with where its owner distributes it.

Archive extraction is defined here; the checksums and :func:`download_url` are defined in
:mod:`inpaint.download` (shared with the weight registry) and re-exported.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

# the checksums and the download itself live one layer lower (the weight registry uses them too)
from inpaint.download import ChecksumError, check_md5, download_url, file_digest, md5sum

log = logging.getLogger("inpaint.data")

__all__ = ["ChecksumError", "check_md5", "download_url", "extract", "file_digest", "md5sum"]


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
