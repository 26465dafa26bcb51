"""LSDIR (large-scale dataset for image restoration): about 85k high-resolution Flickr photos as PNG.

On-disk format (``data.root`` is the folder the archives were extracted in)::

    0001000/0000001.png ... 0001000/0001000.png    training PNGs, 1,000 per folder, each folder
    0002000/0001001.png ...                        named by the highest index it holds (7 digits)
    ...
    0085000/0084991.png                            84,991 in all
    val1/HR/val/0000001.png ... 0000250.png        the 250 official validation PNGs
    val1/X2/, val1/X3/, val1/X4/                   downscaled copies of val: ignored

Depending on how the training archives (``shard-00.tar.gz`` ... ``shard-16.tar.gz``) were unpacked, the
1,000-image folders sit directly under the root, under ``HR/train/`` (the paths of the owners'
``train.json``) or under ``shard-XX/``. The loader does not assume one of these: every ``*.png`` under
the root outside ``val1/`` (and outside hidden folders) is a training image. So the root must not hold
other PNGs, such as downscaled copies of the training set. Each image is named by its 1,000-image folder
and file (``0001000/0000001.png``) whatever the layout, so the order of the train split and the
validation images carved from it are the same for every layout; the same name found twice is an error.

The train file list is walked once and cached as ``<root>/.inpaint-cache/lsdir-train-files.json`` (or the
user cache folder when the root is read-only). Its key records each 7-digit folder's size and mtime,
which change when files are added or removed in it, and the folders and loose PNGs around them, so an
added or removed folder or image rebuilds the list; the 7-digit folders themselves are stat'ed, not
listed, on a cache hit.

Splits: LSDIR's test set is not published, so the official validation set (``val1/HR/val``, 250
images) is used as **test**, and a validation split of ``data.val_size`` (default 500) images is carved
out of train by :class:`~inpaint.data.datasets.base.DatasetDataModule`.

The photos are large (about 2K on the long side), so they are not resized (``resize_short: null``):
training takes random ``image_size`` crops (256), evaluation with ``eval_crops_per_image: 1`` takes the
centre crop of each image (more crops per image: fixed, seeded positions).

Getting it: the owners' original host is gone; the archives now live in the gated Hugging Face dataset
``ofsoundof/LSDIR``, downloadable after accepting its terms. No per-file md5 is published (deepinv's
checksums are of whole folders, not of files, and are not used here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from inpaint.data.cache import cache_dir, cached_json, fingerprint
from inpaint.data.datasets.base import (
    Archive,
    DatasetDataModule,
    DatasetLayout,
    DatasetNotReadyError,
    PrepareReport,
    Requirement,
)
from inpaint.data.download import extract
from inpaint.data.sources import FolderSource, ImageSource

__all__ = [
    "LSDIRDataModule",
    "LSDIRLayout",
    "VAL_DIR",
    "canonical_name",
]

VAL_DIR = "val1/HR/val"
SHARDS = tuple(f"shard-{i:02d}.tar.gz" for i in range(17))
VAL_ARCHIVE = "val1.tar.gz"
CACHE_NAME = "lsdir-train-files"


def _is_block_folder(name: str) -> bool:
    """A 1,000-image training folder is named by 7 digits (``0001000``)."""
    return len(name) == 7 and name.isascii() and name.isdigit()


def _is_png(name: str) -> bool:
    return name.lower().endswith(".png") and not name.startswith(".")


def canonical_name(rel: str) -> str:
    """``<7-digit folder>/<file>`` for a path inside a 1,000-image folder (any layout), else ``rel``."""
    parts = rel.rsplit("/", 2)
    if len(parts) >= 2 and _is_block_folder(parts[-2]):
        return f"{parts[-2]}/{parts[-1]}"
    return rel


class _NamedSource(FolderSource):
    """A :class:`FolderSource` whose image names are given (layout-independent) rather than relative paths."""

    def __init__(self, root: Path, files: Sequence[Path], names: Sequence[str], on_corrupt: str) -> None:
        super().__init__(root, files=files, on_corrupt=on_corrupt)
        self.names = list(names)

    def name(self, index: int) -> str:
        return self.names[self._check_index(index)]


class LSDIRLayout(DatasetLayout):
    """LSDIR training PNGs (any of the three layouts) and ``val1/HR/val`` under ``root``."""

    name = "lsdir"
    title = "LSDIR"
    homepage = "https://ofsoundof.github.io/lsdir-data/"
    how_to_get = (
        "the archives shard-00.tar.gz ... shard-16.tar.gz (train) and val1.tar.gz are in the gated Hugging "
        "Face dataset ofsoundof/LSDIR: accept its terms there, then download them"
    )
    default_val_size = 500

    # ----------------------------------------------------------------------------------- layout

    def requirements(self) -> list[Requirement]:
        return [
            Requirement(
                VAL_DIR,
                "the 250 official validation PNGs 0000001.png ... (the test split here; "
                "val1/X2, X3, X4 are ignored)",
                "dir",
                splits=("test",),
            ),
        ]

    def archives(self) -> list[Archive]:
        return [Archive(name, provides=()) for name in SHARDS] + [Archive(VAL_ARCHIVE, provides=(VAL_DIR,))]

    def layout_text(self) -> str:
        train = (
            f"    {self.root}/0001000/0000001.png ... 0085000/0084991.png  : the 84,991 training PNGs in "
            "1,000-image folders, directly under the root, under HR/train/ or under shard-XX/  [train]"
        )
        return train + "\n" + super().layout_text()

    def problems(self, verify_checksums: bool | None = None) -> list[str]:
        out = super().problems(verify_checksums)
        if not self.root.is_dir():
            return out
        val = self.path(VAL_DIR)
        if val.is_dir() and not self._val_files():
            out.append(f"folder '{val}' holds no PNG image (expected 0000001.png ... 0000250.png)")
        if not self._has_train_png():
            out.append(
                f"no training PNG found under '{self.root}' outside val1/ (expected e.g. "
                f"'{self.root}/0001000/0000001.png', or the same under HR/train/ or shard-00/)"
            )
        return out

    # ------------------------------------------------------------------------------------ files

    def _has_train_png(self) -> bool:
        """Whether a training PNG exists (depth-first, stopping at the first one found)."""
        stack = [(self.root, True)]
        while stack:
            folder, top = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
            except OSError:
                continue
            for e in entries:
                if e.name.startswith(".") or (top and e.name == "val1"):
                    continue
                if e.is_dir():
                    stack.append((Path(e.path), False))
                elif _is_png(e.name) and e.is_file():
                    return True
        return False

    def _survey(self) -> tuple[list[tuple[str, Path]], list[str]]:
        """(7-digit folders as (relative path, path), PNG files outside them), without listing the former."""
        blocks: list[tuple[str, Path]] = []
        loose: list[str] = []
        stack = [(self.root, "")]
        while stack:
            folder, rel = stack.pop()
            with os.scandir(folder) as it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    sub = f"{rel}/{e.name}" if rel else e.name
                    if e.is_dir():
                        if not rel and e.name == "val1":
                            continue
                        if _is_block_folder(e.name):
                            blocks.append((sub, Path(e.path)))
                        else:
                            stack.append((Path(e.path), sub))
                    elif _is_png(e.name) and e.is_file():
                        loose.append(sub)
        return sorted(blocks), sorted(loose)

    def train_files(self) -> list[str]:
        """Relative paths of the training PNGs in canonical-name order (cached; see the module doc)."""
        blocks, loose = self._survey()
        key = {
            "version": 1,
            "blocks": [
                [rel, *fp] for (rel, _), fp in zip(blocks, fingerprint(*(p for _, p in blocks)), strict=True)
            ],
            "loose": loose,
        }

        def build() -> list[str]:
            found = list(loose)
            for _, path in blocks:
                for dirpath, dirnames, filenames in os.walk(path):
                    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                    sub = Path(dirpath).relative_to(self.root).as_posix()
                    found += [f"{sub}/{f}" for f in filenames if _is_png(f)]
            named = sorted((canonical_name(r), r) for r in found)
            for (a, ra), (b, rb) in zip(named, named[1:], strict=False):
                if a == b:
                    raise ValueError(
                        f"LSDIR train image '{a}' is present twice under data.root='{self.root}': '{ra}' and "
                        f"'{rb}'. Keep one copy of the training set (one layout) under the root."
                    )
            return [r for _, r in named]

        return cached_json(self.root, CACHE_NAME, key, build)

    def _val_files(self) -> list[Path]:
        folder = self.path(VAL_DIR)
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if _is_png(e.name) and e.is_file())

    # ----------------------------------------------------------------------------------- splits

    def splits(self) -> dict[str, ImageSource]:
        rels = self.train_files()
        if not rels:
            raise DatasetNotReadyError(self.not_ready_message(self.problems()))
        train = _NamedSource(
            self.root, [self.root / r for r in rels], [canonical_name(r) for r in rels], self.on_corrupt
        )
        val_dir = self.path(VAL_DIR)
        test = FolderSource(val_dir, files=self._val_files(), on_corrupt=self.on_corrupt)
        return {"train": train, "test": test}

    def build_indexes(self) -> list[str]:
        n = len(self.train_files())
        return [f"  train file list: {n:,} PNGs (cached in '{cache_dir(self.root) / CACHE_NAME}.json')"]

    def prepare(self, download: bool = True, val_size: int | None = None) -> PrepareReport:
        """Also extract the training shards found in the root when no training PNG is there yet (the
        shared ``prepare`` only extracts archives that provide a missing requirement)."""
        lines = []
        if self.root.is_dir() and not self._has_train_png():
            for name in SHARDS:
                if (self.root / name).is_file():
                    extract(self.root / name, self.root)
                    lines.append(f"  extracted {name}")
        report = super().prepare(download, val_size)
        report.lines[1:1] = lines
        return report


class LSDIRDataModule(DatasetDataModule):
    """LSDIR (``data=lsdir``): train minus a carved validation split; official val1 as test."""

    layout_class = LSDIRLayout
