"""Image sources: indexable collections of ``HxWx3`` uint8 RGB images."""

from __future__ import annotations

import abc
import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from inpaint.data.io import ImageReadError, list_images, load_image

__all__ = [
    "SAMPLE_SPLITS",
    "BadItems",
    "FolderSource",
    "ImageSource",
    "SampleSource",
]

log = logging.getLogger("inpaint.data")

ON_CORRUPT_CHOICES = ("error", "skip")

# Natural photographs packaged with scikit-image (no download needed). Splits are
# disjoint; of the stereo pair only motorcycle_left is used. Sizes (H x W):
#   train: astronaut 512x512, coffee 400x600, rocket 427x640, motorcycle_left 500x741,
#          hubble_deep_field 872x1000, ihc 512x512 (colour);
#          camera, brick, grass, gravel 512x512 (grayscale)
#   val:   chelsea 300x451 (colour), coins 303x384 (grayscale)
#   test:  retina 1411x1411 (colour), moon 512x512 (grayscale)
# Synthetic or unsuitable files (color wheel, phantom, chessboards, logo, horse
# silhouette, text/page scans, blurred clock, cell) are not used.
SAMPLE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut.png",
        "coffee.png",
        "rocket.jpg",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "camera.png",
        "brick.png",
        "grass.png",
        "gravel.png",
    ),
    "val": ("chelsea.png", "coins.png"),
    "test": ("retina.jpg", "moon.png"),
}


class BadItems:
    """The indices of a source found unreadable (``on_corrupt="skip"``), as flags in shared memory: the
    DataLoader's worker processes (forked or spawned) and the main process see one set, so a corrupt item is
    skipped without retrying and reported once per run, however many workers meet it."""

    def __init__(self, n: int) -> None:
        self._flags = torch.zeros(max(int(n), 1), dtype=torch.bool).share_memory_()

    def __contains__(self, index: int) -> bool:
        return bool(self._flags[index])

    def __len__(self) -> int:
        return int(self._flags.sum())

    def add(self, index: int) -> bool:
        """Mark ``index`` bad; True when no process had marked it before (the caller then reports it)."""
        new = not bool(self._flags[index])
        self._flags[index] = True
        return new


class ImageSource(abc.ABC):
    """An indexable collection of RGB uint8 images."""

    #: True when ``load`` serves images already held in memory (few, small): consumers may then cache
    #: work derived from them (e.g. a resize) instead of redoing it for every sample
    in_memory: bool = False

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abc.abstractmethod
    def name(self, index: int) -> str:
        """Human-readable name of image ``index`` (for error messages and grids)."""

    @abc.abstractmethod
    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as a fresh ``HxWx3`` uint8 RGB array."""

    def _check_index(self, index: int) -> int:
        """Normalise a (possibly negative) index; raise IndexError when out of range."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {n} images")
        return index % n


class FolderSource(ImageSource):
    """Images in a folder (recursively) or named by a file list; see :func:`list_images`.

    ``on_corrupt="error"`` raises :class:`ImageReadError` for an unreadable file;
    ``"skip"`` warns once (logger ``inpaint.data``)
    naming the file and deterministically loads the next readable image
    (``index + 1``, wrapping around). Files found bad are remembered and not
    retried. If no file can be read, :class:`ImageReadError` is raised.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        file_list: str | os.PathLike[str] | None = None,
        on_corrupt: str = "error",
        recursive: bool = True,
        files: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        if on_corrupt not in ON_CORRUPT_CHOICES:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT_CHOICES}, got {on_corrupt!r}")
        self.root = Path(root).expanduser()
        self.on_corrupt = on_corrupt
        if files is not None:  # an explicit, already listed subset (e.g. one split of a folder)
            self.paths: list[Path] = [Path(f) for f in files]
        else:
            self.paths = list_images(self.root, file_list=file_list, recursive=recursive)
        self.bad_indices = BadItems(len(self.paths))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"FolderSource(root='{self.root}', n={len(self)}, on_corrupt='{self.on_corrupt}')"

    def name(self, index: int) -> str:
        path = self.paths[self._check_index(index)]
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def load(self, index: int) -> np.ndarray:
        return load_skipping_corrupt(
            self,
            index,
            lambda i: load_image(self.paths[i]),
            lambda i: f"image '{self.paths[i]}'",
            f"images of data root '{self.root}'",
            self.root,
        )


def load_skipping_corrupt(
    source: ImageSource,
    index: int,
    read: Callable[[int], np.ndarray],
    item: Callable[[int], str],
    collection: str,
    where: str | os.PathLike[str],
) -> np.ndarray:
    """``read(index)``, with the ``on_corrupt`` policy of ``source`` (which has ``on_corrupt`` and a
    ``bad_indices`` :class:`BadItems`): ``"error"`` raises :class:`ImageReadError` naming the item and the ``skip`` switch; ``"skip"`` warns
    naming the item (``item(i)``) and reads the next one (wrapping around), remembering the bad ones. The
    warning goes to the ``inpaint.data`` logger only (Hydra shows it and writes it to the run's log), once
    per item for all processes."""
    index = source._check_index(index)
    if source.on_corrupt == "error":
        try:
            return read(index)
        except ImageReadError as e:
            raise ImageReadError(
                f"{e}. Replace or delete the file, or set data.on_corrupt=skip to skip unreadable images "
                "(each is reported once)", path=e.path, reason=e.reason,
            ) from e
    n = len(source)
    first_error: ImageReadError | None = None
    for offset in range(n):
        i = (index + offset) % n
        if i in source.bad_indices:
            continue
        try:
            return read(i)
        except ImageReadError as e:
            first_error = first_error or e
            if source.bad_indices.add(i):
                log.warning("skipping corrupt %s (on_corrupt='skip'): %s", item(i), e)
    detail = f"; first error: {first_error}" if first_error is not None else ""
    raise ImageReadError(
        f"none of the {n} {collection} could be read (on_corrupt='skip'){detail}", path=str(where)
    )


def sample_dir() -> Path:
    """Folder of the image files packaged inside ``skimage.data`` (no download)."""
    spec = importlib.util.find_spec("skimage.data")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-image is not installed; SampleSource needs its packaged images")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _load_sample(filename: str) -> np.ndarray:
    arr = load_image(sample_dir() / filename)
    arr.setflags(write=False)  # cached and shared; callers get copies
    return arr


class SampleSource(ImageSource):
    """Real photographs shipped inside scikit-image, split into disjoint train/val/test sets.

    Works offline: only files packaged with scikit-image are read (see
    :data:`SAMPLE_SPLITS`). Images are cached in memory after the first load.
    """

    in_memory = True

    def __init__(self, split: str = "train") -> None:
        if split not in SAMPLE_SPLITS:
            raise ValueError(f"split must be one of {tuple(SAMPLE_SPLITS)}, got {split!r}")
        self.split = split
        self.filenames: tuple[str, ...] = SAMPLE_SPLITS[split]
        folder = sample_dir()
        missing = [f for f in self.filenames if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"scikit-image sample images {missing} not found in '{folder}'")

    def __len__(self) -> int:
        return len(self.filenames)

    def __repr__(self) -> str:
        return f"SampleSource(split='{self.split}', n={len(self)})"

    def name(self, index: int) -> str:
        return self.filenames[self._check_index(index)]

    def load(self, index: int) -> np.ndarray:
        return _load_sample(self.filenames[self._check_index(index)]).copy()
