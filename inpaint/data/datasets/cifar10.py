"""CIFAR-10, python version: the five training batches and the test batch, read into memory.

On-disk format (``cifar-10-python.tar.gz``, md5 c58f30108f718f92721af3b95e74349a, extracts to
``cifar-10-batches-py/``)::

    cifar-10-batches-py/data_batch_1 ... data_batch_5   10,000 training images each
    cifar-10-batches-py/test_batch                       10,000 test images (1,000 per class)
    cifar-10-batches-py/batches.meta                     class names
    cifar-10-batches-py/readme.html

Each batch is a pickled dict (written by Python 2, so its keys load as ``bytes`` with
``encoding="bytes"``; re-pickled copies may have ``str`` keys, and both are accepted) holding ``data``, a
uint8 array of shape (N, 3072) whose rows are 1024 red, 1024 green then 1024 blue values, each plane a
32x32 image in row-major order; ``labels`` (N ints in 0..9); ``filenames`` (N names) and
``batch_label``. ``batches.meta`` holds ``label_names`` (airplane, automobile, ... truck).

Splits: the owners publish train (``data_batch_1..5``, 50,000 images) and test (``test_batch``, 10,000)
and no validation set. Following the SC-NN setup (hold out 5,000 training images) the validation split
is carved out of train by :class:`~inpaint.data.datasets.base.DatasetDataModule`
(``data.val_size``, default 5,000), leaving 45,000 for training; test is the official test batch.

Security: unpickling can run arbitrary code, so pickles must only be read from files you trust. That is
why the published md5 of every batch is verified by default (``data.verify_checksums=true``). As a
second guard the reader refuses any pickled global other than the few numpy reconstructors a batch
needs, and only the seven files named above are ever unpickled.

The root (``data.root``) is the folder the tarball was extracted in (the one containing
``cifar-10-batches-py/``); pointing it at ``cifar-10-batches-py`` itself works too.

``data.on_corrupt`` has no effect here: a batch is one file holding 10,000 images, so a damaged batch
is always an error (it would fail its checksum first).
"""

from __future__ import annotations

import codecs
import os
import pickle
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inpaint.data.datasets.base import Archive, DatasetDataModule, DatasetLayout, Requirement
from inpaint.data.io import ImageReadError
from inpaint.data.sources import ImageSource

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_DIRNAME",
    "CIFAR10_MD5",
    "CIFAR10DataModule",
    "CIFAR10Layout",
    "CIFAR10Source",
    "LABEL_NAMES",
    "TEST_BATCHES",
    "TRAIN_BATCHES",
    "read_batch",
]

CIFAR10_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES: tuple[str, ...] = ("test_batch",)
META_FILE = "batches.meta"

#: md5 of each file of the official tarball, as published alongside it
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

#: the tarball; ``provides`` is relative to the folder it is extracted in. Module-level so that tests
#: can point it at a local ``file://`` copy.
CIFAR10_ARCHIVE = Archive(
    filename="cifar-10-python.tar.gz",
    provides=tuple(f"{CIFAR10_DIRNAME}/{f}" for f in CIFAR10_MD5),
    md5="c58f30108f718f92721af3b95e74349a",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)

LABEL_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_SIDE = 32
_ROW = 3 * _SIDE * _SIDE  # 3072 values per image

# The only globals a CIFAR batch pickle refers to: numpy's array reconstruction (under its numpy 1 and
# numpy 2 module names), and the codec Python 3 uses to pickle bytes at protocol 2. Anything else is
# refused before it is looked up, so a tampered file cannot make unpickling call arbitrary code.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': a CIFAR-10 batch holds only numpy arrays, "
                "lists, numbers and strings"
            ) from None


def _text(value: Any) -> Any:
    """Python-2 strings come back as bytes with ``encoding="bytes"``: decode them (latin-1 is lossless)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _unpickle(path: Path) -> dict[str, Any]:
    """One batch (or meta) file as a dict with ``str`` keys; ImageReadError naming the file when it is
    not a readable CIFAR pickle."""
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as e:
        raise ImageReadError(
            f"CIFAR-10 file '{path}' does not exist", path=str(path), reason="missing"
        ) from e
    except MemoryError:
        raise
    except Exception as e:  # UnpicklingError, EOFError (truncated), ValueError, TypeError, ...
        reason = f"{e or 'empty error'} ({type(e).__name__})"
        raise ImageReadError(
            f"cannot read CIFAR-10 file '{path}': not a valid pickled batch, it is damaged or truncated: "
            f"{reason}. Extract it again from cifar-10-python.tar.gz",
            path=str(path),
            reason=reason,
        ) from e
    if not isinstance(obj, dict):
        raise ImageReadError(
            f"cannot read CIFAR-10 file '{path}': expected a pickled dict, found {type(obj).__name__}",
            path=str(path),
        )
    return {_text(k): v for k, v in obj.items()}


def read_batch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one batch file: ``images`` (N,32,32,3) uint8, ``labels`` (N,) int64 (-1 when absent),
    ``filenames`` (N str, empty strings when absent) and ``batch_label`` (str)."""
    path = Path(path)
    d = _unpickle(path)

    def bad(why: str) -> ImageReadError:
        return ImageReadError(f"cannot read CIFAR-10 batch '{path}': {why}", path=str(path), reason=why)

    if "data" not in d:
        raise bad(f"it has no 'data' entry (keys: {sorted(map(str, d))})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise bad(f"'data' must be a uint8 array of shape (N, {_ROW}), found {got}")
    n = data.shape[0]
    images = np.ascontiguousarray(data.reshape(n, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1))
    labels = d.get("labels")
    if labels is None:
        labels_arr = np.full(n, -1, dtype=np.int64)
    else:
        try:
            labels_arr = np.asarray(labels, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise bad(f"'labels' is not a list of integers ({e})") from e
        if len(labels_arr) != n:
            raise bad(f"it has {n} images but {len(labels_arr)} labels")
    filenames = d.get("filenames", [""] * n)
    if not isinstance(filenames, (list, tuple)):
        raise bad(f"'filenames' must be a list, found {type(filenames).__name__}")
    filenames = [_text(f) for f in filenames]
    if len(filenames) != n:
        raise bad(f"it has {n} images but {len(filenames)} filenames")
    return {
        "images": images,
        "labels": labels_arr,
        "filenames": filenames,
        "batch_label": _text(d.get("batch_label", "")),
    }


def read_label_names(path: str | os.PathLike[str]) -> list[str]:
    """``label_names`` of a ``batches.meta`` file."""
    meta = _unpickle(Path(path))
    names = meta.get("label_names")
    if not isinstance(names, list):
        raise ImageReadError(f"CIFAR-10 meta file '{path}' has no 'label_names' list", path=str(path))
    return [_text(n) for n in names]


class CIFAR10Source(ImageSource):
    """The images of some CIFAR-10 batch files, concatenated in the order given, held in memory.

    ``name(i)`` is ``"<batch file>/<index in that batch>"`` (e.g. ``data_batch_3/17``): stable and
    unique. ``labels`` (int64, -1 where a batch has none), ``filenames`` and, when ``meta`` names a
    readable ``batches.meta``, ``label_names`` are kept for users; training does not need them. A missing,
    truncated or malformed batch raises :class:`ImageReadError` naming the file.
    """

    in_memory = True

    def __init__(
        self, batch_files: Sequence[str | os.PathLike[str]], meta: str | os.PathLike[str] | None = None
    ):
        if not batch_files:
            raise ValueError("CIFAR10Source needs at least one batch file")
        self.batch_files = [Path(p) for p in batch_files]
        images, labels, names, filenames = [], [], [], []
        for path in self.batch_files:
            batch = read_batch(path)
            images.append(batch["images"])
            labels.append(batch["labels"])
            filenames += batch["filenames"]
            names += [f"{path.name}/{j}" for j in range(len(batch["images"]))]
        self.images: np.ndarray = np.concatenate(images)
        self.images.setflags(write=False)  # shared; load() hands out copies
        self.labels: np.ndarray = np.concatenate(labels)
        self.filenames: list[str] = filenames
        self._names = names
        self.label_names: list[str] | None = None
        if meta is not None and Path(meta).is_file():
            self.label_names = read_label_names(meta)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        files = ", ".join(p.name for p in self.batch_files)
        return f"CIFAR10Source([{files}], n={len(self)})"

    def name(self, index: int) -> str:
        return self._names[self._check_index(index)]

    def load(self, index: int) -> np.ndarray:
        return self.images[self._check_index(index)].copy()


class CIFAR10Layout(DatasetLayout):
    """CIFAR-10 (python version) under ``data.root``: see the module docstring for the format and splits.

    ``root`` is the folder containing ``cifar-10-batches-py/`` (where the official tarball extracts), or
    that ``cifar-10-batches-py`` folder itself.
    """

    name = "cifar10"
    title = "CIFAR-10 (python version)"
    homepage = "https://www.cs.toronto.edu/~kriz/cifar.html"
    how_to_get = (
        "cifar-10-python.tar.gz, 163 MB; the owners allow direct download, which "
        "`python -m inpaint.prepare data=cifar10` does"
    )
    default_val_size = 5000

    def _prefix(self) -> str:
        """'cifar-10-batches-py/' when the batches are in that subfolder of root, '' when root is that folder."""
        if (self.root / CIFAR10_DIRNAME).is_dir():
            return f"{CIFAR10_DIRNAME}/"
        if self.root.name == CIFAR10_DIRNAME or (self.root / TRAIN_BATCHES[0]).is_file():
            return ""
        return f"{CIFAR10_DIRNAME}/"

    def requirements(self) -> list[Requirement]:
        pre = self._prefix()
        reqs = [
            Requirement(
                f"{pre}{f}", f"training batch {i + 1} of 5", md5=CIFAR10_MD5[f], splits=("train", "val")
            )
            for i, f in enumerate(TRAIN_BATCHES)
        ]
        reqs.append(
            Requirement(f"{pre}test_batch", "test batch", md5=CIFAR10_MD5["test_batch"], splits=("test",))
        )
        reqs.append(
            Requirement(
                f"{pre}{META_FILE}",
                "class names (checked; no split reads images from it)",
                md5=CIFAR10_MD5[META_FILE],
            )
        )
        return reqs

    def archives(self) -> list[Archive]:
        if self._prefix():
            return [CIFAR10_ARCHIVE]
        # root is cifar-10-batches-py itself: the tarball (put in root) extracts into root's parent
        provides = tuple(p.removeprefix(f"{CIFAR10_DIRNAME}/") for p in CIFAR10_ARCHIVE.provides)
        return [replace(CIFAR10_ARCHIVE, provides=provides, extract_to="..")]

    def splits(self) -> dict[str, ImageSource]:
        folder = self.root / self._prefix()
        meta = folder / META_FILE
        return {
            "train": CIFAR10Source([folder / f for f in TRAIN_BATCHES], meta=meta),
            "test": CIFAR10Source([folder / f for f in TEST_BATCHES], meta=meta),
        }


class CIFAR10DataModule(DatasetDataModule):
    """``data=cifar10``: CIFAR-10 train (minus a carved validation split) and the official test batch."""

    layout_class = CIFAR10Layout
