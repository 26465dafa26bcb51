"""Mask generators backed by fixed masks: a folder of mask image files, or one mask per dataset.

:class:`NvidiaMask` reads binary hole masks from image files, e.g. the NVIDIA irregular-mask test set
(Liu et al. 2018): 12,000 512x512 PNGs in which **255 (white) marks a hole**.  Like every generator of
:mod:`inpaint.data.masks` it returns a float32 ``[H, W]`` mask with 1 = hole, 0 = known.

Training samples (``index=None``) pick a file uniformly at random with ``rng`` and augment it (flips,
90-degree rotations, optional dilation).  Evaluation samples (``index`` given) are paired with a fixed
mask, without augmentation: image ``i`` gets mask ``perm[i mod n]`` of the (filtered, sorted) file list,
where ``perm = np.random.default_rng(seed).permutation(n)``.  The pairing depends only on the mask folder,
``ratio`` and ``seed``, not on the training seed, so two runs or two models score the same holes.

:class:`FixedMask` turns any generator into a single mask used for every sample of a dataset (the
mGANprior thesis hides 12 %, 25 % or 40 % of every image of a dataset with one fixed block mask).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inpaint.data.cache import cache_dir, cached_json, fingerprint
from inpaint.data.io import IMAGE_EXTENSIONS, ImageReadError, scan_files
from inpaint.data.masks import MaskGenerator, _check_int, _check_range, call_mask

__all__ = ["FixedMask", "MaskPolarityWarning", "NvidiaMask", "read_mask_file"]

log = logging.getLogger("inpaint.data")

HOLE_VALUES = ("white", "black")

NVIDIA_SOURCE = (
    "The NVIDIA irregular-mask test set is distributed on the NVIDIA ADLR partial-convolution page "
    "https://nv-adlr.github.io/publication/partialconv-inpainting : its archive test_mask.zip extracts "
    "to mask/testing_mask_dataset/00000.png ... 11999.png (12,000 512x512 PNGs, 255 = hole; licence "
    "CC BY-NC-SA 4.0, research use only); set mask.root=<...>/mask/testing_mask_dataset"
)

_SIXTEEN_BIT = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


class MaskPolarityWarning(UserWarning):
    """The masks of a folder look inverted: most of their pixels are holes under the chosen ``hole``."""


# --------------------------------------------------------------------------------------------- reading


def _gray_uint8(img: Image.Image) -> np.ndarray:
    """Any PIL image -> ``[H, W]`` uint8 gray levels (16-bit scaled to 8 bits, float in [0, 1] x 255)."""
    if img.mode in _SIXTEEN_BIT:
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return ((arr + 128) // 257).astype(np.uint8)
    if img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if arr.max(initial=0.0) <= 1.0:
            arr = arr * 255.0
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8)


def read_mask_file(path: str | os.PathLike[str], hole: str = "white", threshold: int = 128) -> np.ndarray:
    """Read a mask image file as a bool ``[H, W]`` array, True = hole, at its native resolution.

    The file is converted to gray levels (mode ``L``; RGB, RGBA, palette, 1-bit and 16-bit files all work)
    and binarised: ``hole="white"`` makes pixels ``>= threshold`` holes, ``hole="black"`` pixels
    ``< threshold``.  A missing, unreadable or corrupt file raises :class:`ImageReadError` naming it.
    ``inpaint.predict`` reads its masks here too (its ``mask_threshold`` is a fraction of white, converted
    to this gray level).
    """
    if hole not in HOLE_VALUES:
        raise ValueError(f"hole={hole!r}: use 'white' (bright mask pixels are holes) or 'black'")
    return binarize_mask(read_mask_levels(path), hole, threshold)


def binarize_mask(gray: np.ndarray, hole: str = "white", threshold: int = 128) -> np.ndarray:
    """``[H, W]`` gray levels as a bool hole mask: ``hole="white"`` makes levels ``>= threshold`` holes,
    ``hole="black"`` levels ``< threshold``."""
    return gray >= threshold if hole == "white" else gray < threshold


def read_mask_levels(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask image file as ``[H, W]`` uint8 gray levels (any mode), before binarising; a missing, unreadable
    or corrupt file raises :class:`ImageReadError` naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            return _gray_uint8(img)
    except MemoryError:
        raise
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, EOFError, ...
        reason = str(e) or type(e).__name__
        raise ImageReadError.for_file(path, f"{reason} ({type(e).__name__})") from e


def _hole_ratio(path: Path, hole: str, threshold: int) -> float:
    mask = read_mask_file(path, hole, threshold)
    return float(np.count_nonzero(mask)) / mask.size


# ------------------------------------------------------------------------------------------ geometry


def _fit(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop a bool mask to the aspect ratio ``width / height``, then nearest-resize it to that size."""
    h0, w0 = mask.shape
    if w0 * height > h0 * width:  # too wide: keep the central columns
        cw = min(w0, max(1, round(h0 * width / height)))
        left = (w0 - cw) // 2
        mask = mask[:, left : left + cw]
    elif w0 * height < h0 * width:  # too tall: keep the central rows
        ch = min(h0, max(1, round(w0 * height / width)))
        top = (h0 - ch) // 2
        mask = mask[top : top + ch, :]
    if mask.shape != (height, width):  # nearest neighbour: the source pixel under each output pixel's centre
        h0, w0 = mask.shape
        ys = np.minimum(((np.arange(height) + 0.5) * (h0 / height)).astype(np.int64), h0 - 1)
        xs = np.minimum(((np.arange(width) + 0.5) * (w0 / width)).astype(np.int64), w0 - 1)
        mask = mask[ys[:, None], xs[None, :]]
    return mask


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool mask with a ``(2 * radius + 1)`` square (separable: rows, then columns)."""
    if radius <= 0:
        return mask
    rows = mask.copy()
    for d in range(1, radius + 1):
        rows[d:, :] |= mask[:-d, :]
        rows[:-d, :] |= mask[d:, :]
    out = rows.copy()
    for d in range(1, radius + 1):
        out[:, d:] |= rows[:, :-d]
        out[:, :-d] |= rows[:, d:]
    return out


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


# ----------------------------------------------------------------------------------------- generators


class NvidiaMask(MaskGenerator):
    """Hole masks read from a folder of mask image files (the NVIDIA irregular-mask set, or any other).

    Args:
        root: folder searched (recursively unless ``recursive=False``) for image files; hidden files and
            folders are skipped.  The files are sorted by relative path.
        hole: ``"white"``: pixels ``>= threshold`` are holes (the NVIDIA files: 255 = hole);
            ``"black"``: pixels ``< threshold`` are holes.
        ratio: ``None`` (all files) or ``[lo, hi]``: keep the files whose hole ratio ``r``, measured at the
            file's native resolution, satisfies ``lo <= r < hi`` (``hi == 1`` includes 1).
        threshold: gray level (1..255) at which the files are binarised; re-binarises JPEG-noisy or
            antialiased masks.
        hflip, vflip: training only: flip horizontally / vertically with probability 0.5.
        rotate: training only: rotate by ``k * 90`` degrees, ``k`` uniform in {0, 1, 2, 3}.
        dilate: training only: grow the hole by a radius drawn uniformly from ``{0, ..., dilate}`` pixels
            (square structuring element, at output resolution).
        seed: seed of the evaluation pairing (see below); independent of the training seed.
        recursive: search subfolders of ``root``.
        packed: keep all masks bit-packed in one memory-mapped ``.npy`` in the cache folder (built once;
            12,000 NVIDIA masks take 393 MB) so a sample costs an unpack, not a PNG decode. Only when all
            files have one size; ``False`` reads the files every time.

    Every mask (training or evaluation) is centre-cropped to the requested aspect ratio when it differs
    (as ISNet's data pipeline does), resized with nearest neighbour and re-binarised.

    Evaluation pairing: image ``index`` gets ``files[perm[index % n]]`` with
    ``perm = np.random.default_rng(seed).permutation(n)``, without augmentation or dilation, and ``rng``
    unused.  It depends on the folder, ``ratio`` and ``seed`` only, so two runs or two models score the
    same holes; ``n`` consecutive indices use every file once.

    The hole ratio of every file is computed once and cached (``mask-ratios-<hole>-<threshold>.json`` in
    the folder's ``.inpaint-cache/``, or the user cache when the folder is read-only); adding, removing
    or rewriting a file rebuilds it.  If the median hole ratio of the folder is above 0.5 a
    :class:`MaskPolarityWarning` suggests the other ``hole`` value (the NVIDIA test set holds masks of up
    to 60 % hole, so single masks are never judged).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        hole: str = "white",
        ratio: Sequence[float] | None = None,
        threshold: int = 128,
        hflip: bool = True,
        vflip: bool = False,
        rotate: bool = True,
        dilate: int = 0,
        seed: int = 0,
        recursive: bool = True,
        packed: bool = True,
    ) -> None:
        if hole not in HOLE_VALUES:
            raise ValueError(
                f"mask.hole must be one of {', '.join(HOLE_VALUES)} (the colour of the holes in the mask "
                f"files), got {hole!r}"
            )
        self.hole = str(hole)
        self.threshold = _check_int("mask.threshold", threshold, 1)
        if self.threshold > 255:
            raise ValueError(f"mask.threshold must be a gray level in 1..255, got {threshold!r}")
        self.hflip = _check_bool("mask.hflip", hflip)
        self.vflip = _check_bool("mask.vflip", vflip)
        self.rotate = _check_bool("mask.rotate", rotate)
        self.dilate = _check_int("mask.dilate", dilate, 0)
        self.seed = _check_int("mask.seed", seed, 0)
        self.recursive = _check_bool("mask.recursive", recursive)
        self.packed = _check_bool("mask.packed", packed)
        self.ratio: tuple[float, float] | None = None if ratio is None else _check_range("mask.ratio", ratio)

        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):
            raise ValueError(f"mask.root must be a folder of mask images, got {root!r}. {NVIDIA_SOURCE}")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(
                f"mask folder '{self.root}' does not exist: set mask.root=<path> to a folder of mask "
                f"images. {NVIDIA_SOURCE}"
            )
        if not self.root.is_dir():
            raise ValueError(
                f"mask.root='{self.root}' is not a folder; set mask.root=<folder of mask images>"
            )

        all_files = self._list_files()
        rel = [p.relative_to(self.root).as_posix() for p in all_files]
        key = hashlib.md5(json.dumps([rel, fingerprint(*all_files)]).encode()).hexdigest()
        all_ratios = self._index(all_files, key)
        self._check_polarity(all_ratios)

        if self.ratio is None:
            keep = list(range(len(all_files)))
        else:
            lo, hi = self.ratio
            keep = [i for i, r in enumerate(all_ratios) if lo <= r < hi or (hi == 1.0 and r == 1.0)]
            if not keep:
                raise ValueError(
                    f"mask.ratio=[{lo}, {hi}] keeps none of the {len(all_files)} masks in '{self.root}' "
                    f"(a mask is kept when lo <= hole ratio < hi); their hole ratios range from "
                    f"{min(all_ratios):.4f} to {max(all_ratios):.4f}"
                )
        self.files: list[Path] = [all_files[i] for i in keep]
        self.ratios: list[float] = [all_ratios[i] for i in keep]
        self._rows = np.asarray(keep, dtype=np.int64)  # row of each kept file in the packed array
        self._bits_path = self._pack(all_files, key) if self.packed else None
        self._bits: np.ndarray | None = None
        self._bits_pid = -1
        self._perm = np.random.default_rng(self.seed).permutation(len(self.files))
        if self.ratio is not None:
            log.info(
                "mask.ratio=[%s, %s] keeps %d of the %d masks in '%s'",
                self.ratio[0],
                self.ratio[1],
                len(self.files),
                len(all_files),
                self.root,
            )

    # ------------------------------------------------------------------------------ construction

    def _list_files(self) -> list[Path]:
        images, others = scan_files(self.root, self.recursive)
        if not images:
            search = "recursive" if self.recursive else "non-recursive"
            msg = (
                f"mask.root='{self.root}' holds no mask image files ({search} search for "
                f"{', '.join(IMAGE_EXTENSIONS)}, case-insensitive)"
            )
            if others:
                examples = ", ".join(f"'{p.relative_to(self.root).as_posix()}'" for p in others[:5])
                msg += f"; it contains {len(others)} other file(s), e.g. {examples}"
            subdirs = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if not self.recursive and subdirs:
                msg += "; it has subfolders, which are only searched with mask.recursive=true"
            raise ValueError(msg)
        return images

    def _index(self, files: list[Path], key: str) -> list[float]:
        """Native-resolution hole ratio of every file, from the cache or computed (then cached)."""

        def build() -> list[float]:
            log.info("indexing the hole ratios of %d mask files in '%s' ...", len(files), self.root)
            workers = max(1, min(8, os.cpu_count() or 1, len(files)))
            with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes without holding the GIL
                ratios = list(pool.map(lambda p: _hole_ratio(p, self.hole, self.threshold), files))
            return ratios

        ratios = cached_json(self.root, f"mask-ratios-{self.hole}-{self.threshold}", key, build)
        if not isinstance(ratios, list) or len(ratios) != len(files):  # a foreign or damaged cache file
            ratios = build()
        log.info("indexed %d mask files in '%s' (mask.hole=%s)", len(files), self.root, self.hole)
        return [float(r) for r in ratios]

    def _pack(self, files: list[Path], key: str) -> Path | None:
        """All masks binarised and bit-packed in one ``.npy`` in the cache folder (built once), or None when
        the files differ in size. Reading a mask is then an unpack from a memory map (tens of microseconds,
        the pages shared by every loader worker) instead of a PNG decode (about a millisecond at 512x512)."""
        folder = cache_dir(self.root)
        path = folder / f"mask-bits-{self.hole}-{self.threshold}-{key[:16]}.npy"
        if path.is_file():
            return path
        sizes = set()
        for p in files:
            try:
                with Image.open(p) as img:
                    sizes.add(img.size)
            except Exception as e:
                raise ImageReadError.for_file(p, f"{e} ({type(e).__name__})") from e
            if len(sizes) > 1:
                log.info(
                    "mask files in '%s' differ in size: reading them one by one (no packed cache)", self.root
                )
                return None
        (w, h) = sizes.pop()
        for old in folder.glob(f"mask-bits-{self.hole}-{self.threshold}-*.npy"):
            old.unlink(missing_ok=True)  # built from files that have since changed
        log.info(
            "packing %d masks of %dx%d into '%s' (%.0f MB)",
            len(files),
            h,
            w,
            path,
            len(files) * h * ((w + 7) // 8) / 1e6,
        )
        tmp = folder / f".{path.stem}-{os.getpid()}.tmp"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), h, (w + 7) // 8))

        def put(i: int) -> None:
            arr[i] = np.packbits(read_mask_file(files[i], self.hole, self.threshold), axis=-1)

        workers = max(1, min(8, os.cpu_count() or 1, len(files)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(put, range(len(files))))
        arr.flush()
        arr = None  # close the memory map before the rename
        os.replace(tmp, path)
        return path

    def _read(self, i: int) -> np.ndarray:
        """Kept mask ``i`` as a bool ``[H, W]`` array at native resolution (from the packed cache if any)."""
        if self._bits_path is None:
            return read_mask_file(self.files[i], self.hole, self.threshold)
        if self._bits is None or self._bits_pid != os.getpid():
            self._bits = np.load(self._bits_path, mmap_mode="r")
            self._bits_pid = os.getpid()
            with Image.open(self.files[0]) as img:
                self._width = img.size[0]
        return np.unpackbits(self._bits[self._rows[i]], axis=-1, count=self._width).astype(bool)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_bits"] = None  # a memory map is reopened by each process, never pickled as data
        return state

    def _check_polarity(self, ratios: list[float]) -> None:
        median = float(np.median(ratios))
        if median <= 0.5:
            return
        other = "black" if self.hole == "white" else "white"
        msg = (
            f"the masks in '{self.root}' have a median hole ratio of {median:.3f} (> 0.5) with "
            f"mask.hole={self.hole}: most of their pixels would be holes. If the holes in these files are "
            f"{other}, set mask.hole={other}"
        )
        log.warning(msg)
        warnings.warn(msg, MaskPolarityWarning, stacklevel=3)

    # ----------------------------------------------------------------------------------- sampling

    def __len__(self) -> int:
        return len(self.files)

    def eval_file(self, index: int) -> Path:
        """The mask file paired with evaluation sample ``index``."""
        return self.files[self._eval_row(index)]

    def _eval_row(self, index: int) -> int:
        index = _check_int("index", index, 0)
        return int(self._perm[index % len(self.files)])

    def __call__(
        self, height: int, width: int, rng: np.random.Generator | None, index: int | None = None
    ) -> np.ndarray:
        height = _check_int("height", height, 1)
        width = _check_int("width", width, 1)
        if index is not None:
            return _fit(self._read(self._eval_row(index)), height, width).astype(np.float32)

        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        mask = self._read(int(rng.integers(len(self.files))))
        if self.hflip and rng.random() < 0.5:
            mask = mask[:, ::-1]
        if self.vflip and rng.random() < 0.5:
            mask = mask[::-1, :]
        if self.rotate:
            mask = np.rot90(mask, int(rng.integers(4)))
        mask = _fit(mask, height, width)
        if self.dilate > 0:
            mask = _dilate(np.ascontiguousarray(mask), int(rng.integers(self.dilate + 1)))
        return np.ascontiguousarray(mask, dtype=np.float32)

    def __repr__(self) -> str:
        return f"NvidiaMask(root='{self.root}', n={len(self.files)}, hole={self.hole!r}, ratio={self.ratio})"


class FixedMask(MaskGenerator):
    """One mask for a whole dataset: ``generator``'s mask drawn once per image size with ``seed``.

    The first call for a given ``(height, width)`` computes
    ``generator(height, width, np.random.default_rng(seed))``; every call returns a copy of that mask,
    ignoring ``rng`` and ``index``.  ``ratio`` is the wrapped generator's ``ratio`` (``None`` if it has
    none).  The mGANprior thesis evaluates each dataset with one fixed block mask per coverage level
    (12 %, 25 %, 40 % of the pixels hidden).
    """

    def __init__(self, generator: MaskGenerator, seed: int = 0) -> None:
        if not callable(generator):
            raise ValueError(f"generator must be a callable mask generator, got {generator!r}")
        self.generator = generator
        self.seed = _check_int("seed", seed, 0)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def ratio(self) -> Any:
        return getattr(self.generator, "ratio", None)

    def __call__(
        self, height: int, width: int, rng: np.random.Generator | None = None, index: int | None = None
    ) -> np.ndarray:
        size = (_check_int("height", height, 1), _check_int("width", width, 1))
        if size not in self._cache:
            mask = call_mask(self.generator, size[0], size[1], np.random.default_rng(self.seed))
            self._cache[size] = np.asarray(mask, dtype=np.float32)
        return self._cache[size].copy()
