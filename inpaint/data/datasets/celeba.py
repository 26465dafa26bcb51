"""CelebA, aligned and cropped faces, with the owners' train/val/test partition.

On-disk format (``data.root`` is the folder holding both items)::

    img_align_celeba/000001.jpg ... 202599.jpg   aligned faces, JPEG, 178 wide x 218 high
    list_eval_partition.txt                      one line per image: '000001.jpg 0'
                                                 (0 = train, 1 = val, 2 = test)

The images come in ``img_align_celeba.zip`` (md5 00d2c5bc6d35e252742224ab0c1e8fcb), which extracts to
``img_align_celeba/``; the partition file's published md5 is d32c9cbf5e040fd4025c592c306e6668 and is
verified unless ``data.verify_checksums=false``. Both are distributed through Google Drive / Baidu from
the project page after agreeing to the owners' terms, so nothing is downloaded here.

Splits: all three are official and read from ``list_eval_partition.txt``. The real file is contiguous:
train 000001-162770 (162,770 images), val 162771-182637 (19,867), test 182638-202599 (19,962). Nothing
is carved or reshuffled.

Departures from common loaders: only the two items above are needed. torchvision's ``CelebA`` also
demands (and md5-checks) the attribute, identity, bounding-box and landmark files, which inpainting
never reads. Every image the partition lists must exist: when ``splits()`` is called the image folder is
listed once (one ``os.scandir``, no per-file ``stat``) and any listed file that is absent is reported
with its line number, instead of being dropped or failing later in a worker.

Preprocessing is configuration, not code (``conf/data/celeba.yaml``): the usual recipe (EdgeConnect)
takes the centre 178x178 square (rows 20-197) and resizes it to 256x256, i.e. ``data.center_crop=178``
``data.resize_short=256`` ``data.image_size=256``. 64x64 GAN work often uses a 140 or 108 centre crop
instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from inpaint.data.datasets.base import (
    Archive,
    DatasetDataModule,
    DatasetLayout,
    DatasetNotReadyError,
    Requirement,
)
from inpaint.data.sources import FolderSource, ImageSource

__all__ = [
    "CELEBA_ARCHIVE_MD5",
    "CELEBA_PARTITION_MD5",
    "CelebADataModule",
    "CelebALayout",
    "SPLIT_CODES",
    "read_partition",
]

IMAGES_DIR = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
ARCHIVE = "img_align_celeba.zip"
CELEBA_PARTITION_MD5 = "d32c9cbf5e040fd4025c592c306e6668"
CELEBA_ARCHIVE_MD5 = "00d2c5bc6d35e252742224ab0c1e8fcb"

#: the code each split has in ``list_eval_partition.txt``
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_CODE_SPLIT = {str(code): split for split, code in SPLIT_CODES.items()}

# how many missing files an error message lists before giving only the count
_SHOW = 5


def read_partition(path: str | os.PathLike[str]) -> dict[str, list[tuple[int, str]]]:
    """``list_eval_partition.txt`` as ``{split: [(line number, file name), ...]}`` in file order.

    Each non-blank line must be ``NAME CODE`` with CODE 0 (train), 1 (val) or 2 (test); anything else
    raises ``ValueError`` naming the file and the line number. A name listed twice is an error too."""
    path = Path(path)
    out: dict[str, list[tuple[int, str]]] = {split: [] for split in SPLIT_CODES}
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            parts = raw.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in _CODE_SPLIT:
                raise ValueError(
                    f"'{path}', line {lineno}: malformed line {raw.rstrip()!r}; expected 'NAME CODE' with "
                    "CODE 0 (train), 1 (val) or 2 (test), e.g. '000001.jpg 0'"
                )
            name = parts[0]
            if name in seen:
                raise ValueError(f"'{path}', line {lineno}: '{name}' is already listed on line {seen[name]}")
            seen[name] = lineno
            out[_CODE_SPLIT[parts[1]]].append((lineno, name))
    return out


class CelebALayout(DatasetLayout):
    """``img_align_celeba/`` + ``list_eval_partition.txt`` under ``root`` (see the module docstring)."""

    name = "celeba"
    title = "CelebA (aligned faces)"
    homepage = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    how_to_get = (
        "the owners share img_align_celeba.zip and Eval/list_eval_partition.txt through Google Drive and "
        "Baidu after you agree to their terms (non-commercial research); no direct download"
    )

    def requirements(self) -> list[Requirement]:
        splits = tuple(SPLIT_CODES)
        return [
            Requirement(
                IMAGES_DIR,
                "the 202,599 aligned 178x218 JPEG faces (from img_align_celeba.zip)",
                "dir",
                splits=splits,
            ),
            Requirement(
                PARTITION_FILE,
                "official split of each image, lines '000001.jpg 0' (0/1/2 = train/val/test)",
                md5=CELEBA_PARTITION_MD5,
                splits=splits,
            ),
        ]

    def archives(self) -> list[Archive]:
        return [Archive(ARCHIVE, provides=(IMAGES_DIR,), md5=CELEBA_ARCHIVE_MD5)]

    def splits(self) -> dict[str, ImageSource]:
        partition_file = self.path(PARTITION_FILE)
        images = self.path(IMAGES_DIR)
        partition = read_partition(partition_file)
        empty = [s for s, rows in partition.items() if not rows]
        if empty:
            raise ValueError(
                f"'{partition_file}' lists no image for the {empty[0]} split (code {SPLIT_CODES[empty[0]]}); "
                "the official file has 162,770 train / 19,867 val / 19,962 test lines"
            )
        with os.scandir(images) as entries:
            present = {e.name for e in entries}
        listed = sorted(row for rows in partition.values() for row in rows)
        missing = [(lineno, name) for lineno, name in listed if name not in present]
        if missing:
            shown = "; ".join(f"line {n}: '{images / name}'" for n, name in missing[:_SHOW])
            more = f"; ... and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
            raise DatasetNotReadyError(
                f"data={self.name}: {len(missing)} of the {len(listed)} images listed in "
                f"'{partition_file}' are missing from '{images}': {shown}{more}. Extract {ARCHIVE} again "
                "(it holds all 202,599), or give a partition file that lists only the images you have."
            )
        return {
            split: FolderSource(images, files=[images / name for _, name in rows], on_corrupt=self.on_corrupt)
            for split, rows in partition.items()
        }


class CelebADataModule(DatasetDataModule):
    """CelebA with its official train/val/test partition (``data=celeba``)."""

    layout_class = CelebALayout
