"""Places2 (Places365-Standard or -Challenge), read through the official file lists of the devkit.

On-disk format (``data.root`` is the folder holding all of it; ``256`` becomes ``large`` with
``data.resolution=large``)::

    data_256/a/abbey/00000001.jpg ...           train images, <letter>/<category>[/<sub>]/NNNNNNNN.jpg
    val_256/Places365_val_00000001.jpg ...      the 36,500 validation images (flat)
    test_256/Places365_test_00000001.jpg ...    the 328,500 test images (flat)
    places365_train_standard.txt                '/a/abbey/00000000.jpg 0' (path under data_256, label)
    places365_train_challenge.txt               the same for the Challenge train set
    places365_val.txt                           'Places365_val_00000001.jpg 165'
    places365_test.txt                          'Places365_test_00000001.jpg' (no label)

The image folders come from ``train_256_places365standard.tar`` (or ``...challenge.tar``,
``train_large_...``), ``val_256.tar`` / ``val_large.tar`` and ``test_256.tar`` / ``test_large.tar``; the
lists from the devkit ``filelist_places365-standard.tar`` / ``-challenge.tar``. The owners hand them out
after a form on their download page, so nothing is downloaded here; archives put in the root are
checked (published md5 where one is known) and extracted by ``python -m inpaint.prepare``. torchvision
renames the extracted train folder to ``data_256_standard`` / ``data_large_challenge`` etc.; that name
is accepted when ``data_256`` (``data_large``) is absent.

Options: ``variant`` picks the train list (``standard``: 1,803,460 images, ``challenge``: 8,026,628; the
Standard images are the first up-to-5,000 per class of Challenge), ``resolution`` the folders (``256``:
256x256 images, ``large``: aspect ratio kept), ``test_split`` what is tested on.

Splits: train is the chosen train list. With ``test_split=test`` (default) val is the official
validation set (36,500) and test the official test set (328,500). With ``test_split=val`` (for the many
who only download the validation images) the official validation set becomes test and, as the dataset
then has no validation split, :class:`~inpaint.data.datasets.base.DatasetDataModule` carves
``data.val_size`` (default 2,000) images out of train. To evaluate on a deterministic prefix of the
36,500 / 328,500 images (ISNet tests on 10,000) use ``trainer.limit_val_batches`` /
``trainer.limit_test_batches``.

What is checked, and when: the list files are parsed in one pass over their bytes (vectorised; no per-
line Python work), so the 8 M line Challenge list takes about two seconds and is held compactly (the
file's bytes plus arrays of offsets and line numbers, not 8 M Python strings, which also keeps
DataLoader workers from copying it). Every malformed line is an error naming the file and line number.
Every image listed for val and test must exist (one directory listing per folder). For train, a
deterministic sample of up to 10,000 listed files (evenly spaced through the list, all of them for
smaller lists) is checked at start up; if any is missing, all entries are checked (one listing per
folder) and the error names the first missing paths with their line numbers and gives the count.
``python -m inpaint.prepare`` always checks every train entry. A listed image that is removed later is
never dropped silently: reading it raises :class:`~inpaint.data.io.ImageReadError` naming it, or with
``data.on_corrupt=skip`` warns naming it and uses the next readable image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inpaint.data.datasets.base import (
    Archive,
    DatasetDataModule,
    DatasetLayout,
    DatasetNotReadyError,
    Requirement,
)
from inpaint.data.sources import BadItems, FolderSource, ImageSource

__all__ = [
    "ARCHIVE_MD5",
    "FileList",
    "ListSource",
    "Places2DataModule",
    "Places2Layout",
    "RESOLUTIONS",
    "TEST_SPLITS",
    "VARIANTS",
    "read_list",
]

VARIANTS = ("standard", "challenge")
RESOLUTIONS = ("256", "large")
TEST_SPLITS = ("test", "val")

VAL_LIST = "places365_val.txt"
TEST_LIST = "places365_test.txt"
CATEGORIES_FILE = "categories_places365.txt"

#: published md5 of each archive the owners distribute (torchvision ``Places365._IMAGES_META``);
#: None where no checksum is published
ARCHIVE_MD5: dict[str, str | None] = {
    "train_256_places365standard.tar": "53ca1c756c3d1e7809517cc47c5561c5",
    "train_256_places365challenge.tar": "741915038a5e3471ec7332404dfb64ef",
    "val_256.tar": "e27b17d8d44f4af9a78502beb927f808",
    "train_large_places365standard.tar": "67e186b496a84c929568076ed01a8aa1",
    "train_large_places365challenge.tar": "605f18e68e510c82b958664ea134545f",
    "val_large.tar": "9b71c4993ad89d2d8bcbdc4aef38042f",
    "test_256.tar": None,
    "test_large.tar": None,
    "filelist_places365-standard.tar": None,
    "filelist_places365-challenge.tar": None,
}

# at most this many train entries are checked for existence at start up (evenly spaced)
_SAMPLE = 10_000
# how many missing entries an error message names before giving only the count
_SHOW = 5
# longest label accepted in a list (Places365 labels are 0..364)
_MAX_LABEL_DIGITS = 6
_NL, _SPACE, _SLASH, _ZERO, _NINE = (ord(c) for c in "\n /09")


@dataclass(frozen=True, eq=False)
class FileList:
    """The entries of one list file, held compactly: the file's bytes and where each path lies in them.

    Entry ``i`` is ``blob[starts[i]:ends[i]]`` (a leading ``/`` already skipped), read from line
    ``linenos[i]`` of ``path``."""

    path: Path
    blob: bytes
    starts: np.ndarray
    ends: np.ndarray
    linenos: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def rel(self, index: int) -> str:
        """Entry ``index`` as a path relative to its image folder."""
        return self.blob[self.starts[index] : self.ends[index]].decode("utf-8", "surrogateescape")


def read_list(path: str | os.PathLike[str], labelled: bool) -> FileList:
    """Parse a Places list: ``PATH LABEL`` lines (``labelled``) or ``PATH`` lines, blank lines skipped.

    A leading ``/`` of a path is dropped (the train lists write ``/a/abbey/00000000.jpg``). A line with
    a different number of fields, a non-numeric label or an empty path raises ``ValueError`` naming the
    file and the line number."""
    path = Path(path)
    blob = path.read_bytes()
    if b"\r" in blob:
        blob = blob.replace(b"\r\n", b"\n")
    if blob and not blob.endswith(b"\n"):
        blob += b"\n"
    buf = np.frombuffer(blob, dtype=np.uint8)
    ends = np.flatnonzero(buf == _NL)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    linenos = np.arange(1, len(ends) + 1, dtype=np.int64)
    nonblank = ends > starts
    starts, ends, linenos = starts[nonblank], ends[nonblank], linenos[nonblank]
    if len(starts) == 0:
        raise ValueError(f"'{path}' lists no images (it is empty)")

    spaces = np.flatnonzero(buf == _SPACE)
    first_space = np.searchsorted(spaces, starts)
    n_spaces = np.searchsorted(spaces, ends) - first_space
    if labelled:
        ok = n_spaces == 1
        sep = spaces[np.minimum(first_space, len(spaces) - 1)] if len(spaces) else ends
        sep = np.where(ok, sep, ends)
        label_len = ends - sep - 1
        ok &= (label_len >= 1) & (label_len <= _MAX_LABEL_DIGITS)
        for k in range(_MAX_LABEL_DIGITS):
            byte = buf[np.minimum(sep + 1 + k, len(buf) - 1)]
            ok &= (label_len <= k) | ((byte >= _ZERO) & (byte <= _NINE))
        path_ends = sep
        expected = "'PATH LABEL' separated by one space, e.g. '/a/abbey/00000001.jpg 0'"
    else:
        ok = n_spaces == 0
        path_ends = ends
        expected = "one file name per line, e.g. 'Places365_test_00000001.jpg'"
    path_starts = starts + (buf[starts] == _SLASH)
    ok &= path_ends > path_starts
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        line = blob[starts[i] : ends[i]].decode("utf-8", "replace")
        more = f" ({bad.size} malformed lines in all)" if bad.size > 1 else ""
        raise ValueError(f"'{path}', line {linenos[i]}: malformed line {line!r}; expected {expected}{more}")
    return FileList(path, blob, path_starts, path_ends, linenos)


def find_missing(folder: Path, entries: FileList) -> tuple[int, list[int]]:
    """(how many entries have no file under ``folder``, the indices of the first few).

    Lists each folder once per run of consecutive entries in it (the official lists are grouped by
    folder) instead of a ``stat`` per file."""
    base = os.fsencode(folder)
    blob = entries.blob
    count, first = 0, []
    current: bytes | None = None
    names: set[bytes] = set()
    chunk = 1 << 20  # bounds the Python ints alive at once
    for lo in range(0, len(entries), chunk):
        starts, ends = entries.starts[lo : lo + chunk].tolist(), entries.ends[lo : lo + chunk].tolist()
        for i, s, e in zip(range(lo, lo + len(starts)), starts, ends, strict=True):
            parent, _, name = blob[s:e].rpartition(b"/")
            if parent != current:
                current = parent
                try:
                    names = set(os.listdir(os.path.join(base, parent) if parent else base))
                except OSError:
                    names = set()
            if name not in names:
                count += 1
                if len(first) < _SHOW:
                    first.append(i)
    return count, first


def any_missing(folder: Path, entries: FileList, indices: np.ndarray) -> bool:
    """True when a file of the entries at ``indices`` is absent (one ``stat`` each: for a small sample)."""
    return any(not (folder / entries.rel(i)).is_file() for i in indices.tolist())


def sample_indices(n: int, size: int | None = None) -> np.ndarray:
    """``size`` (default 10,000) indices evenly spaced over ``range(n)``, first and last included; all of
    them when ``n <= size``."""
    size = _SAMPLE if size is None else size
    if n <= size:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


class _PathsOfList(Sequence):
    """``folder / entry`` for each entry of a :class:`FileList`, made on access (no list of 8 M Paths)."""

    def __init__(self, folder: Path, entries: FileList) -> None:
        self.folder = folder
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.folder / self.entries.rel(index)


class ListSource(FolderSource):
    """A :class:`FolderSource` over the entries of a Places list (same ``on_corrupt`` behaviour)."""

    def __init__(self, folder: Path, entries: FileList, on_corrupt: str = "error") -> None:
        super().__init__(folder, files=(), on_corrupt=on_corrupt)
        self.entries = entries
        self.paths = _PathsOfList(self.root, entries)  # type: ignore[assignment]
        self.bad_indices = BadItems(len(self.paths))  # sized for the list, not the empty files=()

    def __repr__(self) -> str:
        return f"ListSource(list='{self.entries.path}', folder='{self.root}', n={len(self)})"

    def name(self, index: int) -> str:
        return self.entries.rel(self._check_index(index))


def _choice(option: str, value: object, allowed: Sequence[str]) -> str:
    text = str(value)
    if text not in allowed:
        raise ValueError(f"data.{option}={value!r} is not one of {', '.join(allowed)}")
    return text


class Places2Layout(DatasetLayout):
    """Places365 image folders and devkit lists under ``root`` (see the module docstring)."""

    name = "places2"
    title = "Places2 (Places365)"
    homepage = "http://places2.csail.mit.edu/download.html"
    how_to_get = (
        "fill in the form on that page to get the links; download the train/val/test tars for your "
        "resolution and the devkit filelist_places365-<variant>.tar with the file lists"
    )
    default_val_size = 2000

    def __init__(
        self,
        root: str | os.PathLike[str],
        variant: str = "standard",
        resolution: str | int = "256",
        test_split: str = "test",
        on_corrupt: str = "error",
        verify_checksums: bool = True,
    ) -> None:
        super().__init__(root, on_corrupt=on_corrupt, verify_checksums=verify_checksums)
        self.variant = _choice("variant", variant, VARIANTS)
        self.resolution = _choice("resolution", resolution, RESOLUTIONS)
        self.test_split = _choice("test_split", test_split, TEST_SPLITS)

    # ------------------------------------------------------------------------------------ names

    @property
    def train_list(self) -> str:
        return f"places365_train_{self.variant}.txt"

    def train_dirname(self) -> str:
        """``data_256`` (``data_large``), or torchvision's ``data_256_standard`` etc. if only that exists."""
        plain = f"data_{self.resolution}"
        renamed = f"{plain}_{self.variant}"
        if not self.path(plain).is_dir() and self.path(renamed).is_dir():
            return renamed
        return plain

    @property
    def val_dirname(self) -> str:
        return f"val_{self.resolution}"

    @property
    def test_dirname(self) -> str:
        return f"test_{self.resolution}"

    # ----------------------------------------------------------------------------------- layout

    def requirements(self) -> list[Requirement]:
        res, var = self.resolution, self.variant
        val_used = ("val",) if self.test_split == "test" else ("test",)
        reqs = [
            Requirement(
                self.train_dirname(),
                f"train images <letter>/<category>/NNNNNNNN.jpg, from "
                f"train_{res}_places365{var}.tar (torchvision's data_{res}_{var}/ also accepted)",
                "dir",
                splits=("train",),
            ),
            Requirement(
                self.train_list,
                f"the {var} train list, lines '/a/abbey/00000000.jpg 0', from filelist_places365-{var}.tar",
                splits=("train",),
            ),
            Requirement(
                self.val_dirname,
                f"the 36,500 validation images Places365_val_*.jpg, from val_{res}.tar",
                "dir",
                splits=val_used,
            ),
            Requirement(VAL_LIST, "validation list, lines 'Places365_val_00000001.jpg 165'", splits=val_used),
        ]
        if self.test_split == "test":
            reqs += [
                Requirement(
                    self.test_dirname,
                    f"the 328,500 test images Places365_test_*.jpg, from test_{res}.tar "
                    "(or use data.test_split=val)",
                    "dir",
                    splits=("test",),
                ),
                Requirement(TEST_LIST, "test list, lines 'Places365_test_00000001.jpg'", splits=("test",)),
            ]
        return reqs

    def archives(self) -> list[Archive]:
        res, var = self.resolution, self.variant
        lists = (self.train_list, VAL_LIST) + ((TEST_LIST,) if self.test_split == "test" else ())
        names = [
            (f"train_{res}_places365{var}.tar", (f"data_{res}",)),
            (f"val_{res}.tar", (self.val_dirname,)),
            (f"filelist_places365-{var}.tar", lists),
        ]
        if self.test_split == "test":
            names.insert(2, (f"test_{res}.tar", (self.test_dirname,)))
        return [Archive(name, provides=provides, md5=ARCHIVE_MD5[name]) for name, provides in names]

    # ----------------------------------------------------------------------------------- splits

    def _checked(self, folder: Path, entries: FileList, archive: str, sample: bool) -> ListSource:
        """The source of ``entries`` in ``folder``, after checking that its images exist (module doc)."""
        if sample and not any_missing(folder, entries, sample_indices(len(entries))):
            return ListSource(folder, entries, on_corrupt=self.on_corrupt)
        # everything (also when the sample found a gap: the error then gives the exact count)
        count, first = find_missing(folder, entries)
        if count:
            shown = "; ".join(f"line {entries.linenos[i]}: '{folder / entries.rel(i)}'" for i in first)
            more = f"; ... and {count - len(first):,} more" if count > len(first) else ""
            raise DatasetNotReadyError(
                f"data={self.name}: {count:,} of the {len(entries):,} images listed in '{entries.path}' are "
                f"missing under '{folder}': {shown}{more}. Extract {archive} into '{self.root}' again, or "
                "use a list naming only the images you have."
            )
        return ListSource(folder, entries, on_corrupt=self.on_corrupt)

    def splits(self) -> dict[str, ImageSource]:
        res, var = self.resolution, self.variant
        train = self._checked(
            self.path(self.train_dirname()),
            read_list(self.path(self.train_list), labelled=True),
            f"train_{res}_places365{var}.tar",
            sample=True,
        )
        val = self._checked(
            self.path(self.val_dirname),
            read_list(self.path(VAL_LIST), labelled=True),
            f"val_{res}.tar",
            sample=False,
        )
        if self.test_split == "val":
            return {"train": train, "test": val}
        test = self._checked(
            self.path(self.test_dirname),
            read_list(self.path(TEST_LIST), labelled=False),
            f"test_{res}.tar",
            sample=False,
        )
        return {"train": train, "val": val, "test": test}

    def build_indexes(self) -> list[str]:
        """Check every train entry (start up checks only a sample); nothing needs caching."""
        folder = self.path(self.train_dirname())
        entries = read_list(self.path(self.train_list), labelled=True)
        self._checked(folder, entries, f"train_{self.resolution}_places365{self.variant}.tar", sample=False)
        return [f"  {self.train_list}: all {len(entries):,} listed images present in '{folder}'"]


class Places2DataModule(DatasetDataModule):
    """Places2 / Places365 (``data=places2``): ``data.variant``, ``data.resolution``, ``data.test_split``."""

    layout_class = Places2Layout
