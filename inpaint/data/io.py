"""Image file I/O: robust loading to RGB uint8, listing image folders, resizing.

Every image that enters the framework goes through :func:`to_rgb_uint8`, so all
sources agree on one convention: an ``H x W x 3`` C-contiguous ``uint8`` array
in RGB order. Alpha channels are ignored (colour channels are kept as stored,
nothing is composited), 16-bit data is scaled to 8 bits and float data is
expected in ``[0, 1]``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from inpaint.errors import ImageReadError  # re-exported: defined with the other user errors

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFile",
    "ImageReadError",
    "is_image_file",
    "list_images",
    "load_image",
    "read_image",
    "resize_short",
    "resize_to_cover",
    "to_rgb_uint8",
]

log = logging.getLogger("inpaint.data")

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

# PIL modes whose pixels np.asarray() already gives in a form _array_to_rgb understands.
_DIRECT_MODES = {"1", "L", "LA", "RGB", "RGBA", "RGBX", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# PIL modes in another colour space (or premultiplied alpha) that PIL converts itself.
_CONVERT_MODES = {
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "RGBa": "RGBA",
    "La": "LA",
    "PA": "RGBA",
}
# Tolerance for float images slightly outside [0, 1] (rounding noise); clipped.
_FLOAT_TOL = 1e-3


def _ext_list() -> str:
    return ", ".join(IMAGE_EXTENSIONS)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------- conversion


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    """PIL image -> numpy array in a mode that :func:`_array_to_rgb` handles."""
    mode = img.mode
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode == "I":
        # 32-bit integer mode; PIL uses it for 16-bit data (e.g. some 16-bit PNG/TIFF).
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
    elif mode in _CONVERT_MODES:
        try:
            img = img.convert(_CONVERT_MODES[mode])
        except (ValueError, OSError) as e:
            raise ImageReadError.for_file(name, f"cannot convert PIL mode '{mode}' to RGB ({e})") from e
    elif mode not in _DIRECT_MODES:
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageReadError.for_file(
                name, f"unsupported PIL image mode '{mode}' (size {img.size}); cannot convert to RGB ({e})"
            ) from e
    return np.asarray(img)


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Numpy ``HxW`` / ``HxWxC`` (C in 1..4) array of any supported dtype -> RGB uint8."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError.for_file(
            name, f"unsupported array shape {arr.shape}; expected HxW, HxWx1, HxWx2, HxWx3 or HxWx4"
        )
    # Drop alpha (channel 1 of gray+alpha, channel 3 of RGBA); replicate grayscale.
    arr = arr[:, :, :1] if arr.shape[2] <= 2 else arr[:, :, :3]

    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "b":
        out = arr.astype(np.uint8) * np.uint8(255)
    elif kind == "u" and size == 1:
        out = arr
    elif kind == "u" and size == 2:
        # 16-bit -> 8-bit with rounding: k*257 -> k, 65535 -> 255.
        out = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif kind == "f":
        a = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(a)):
            raise ImageReadError.for_file(name, "float image contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -_FLOAT_TOL or hi > 1.0 + _FLOAT_TOL:
            raise ImageReadError.for_file(
                name, f"float image values must be in [0, 1], got range [{lo:g}, {hi:g}]"
            )
        out = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageReadError.for_file(
            name,
            f"unsupported dtype {arr.dtype} (shape {arr.shape}); expected bool, uint8, uint16 or float in [0, 1]",
        )
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    # Always hand back a fresh, writable, contiguous array (np.asarray(PIL) may be read-only).
    return np.array(out, dtype=np.uint8, order="C", copy=True)


def to_rgb_uint8(img: Image.Image | np.ndarray, name: str = "<array>") -> np.ndarray:
    """Convert a PIL image (any mode) or numpy array to an ``HxWx3`` uint8 RGB array.

    - ``L`` / ``HxW`` / ``HxWx1``: replicated to 3 channels; ``1`` / bool: 0 or 255.
    - ``LA``, ``RGBA``, ``RGBX``, ``PA``, ``P`` with transparency, ``HxWx2``, ``HxWx4``:
      alpha is ignored and the colour channels are kept as stored (no compositing);
      palette images are expanded through their palette (via RGBA or RGB).
    - 16-bit (``I;16``, ``I;16B``, ``I``, uint16): divided by 257 with rounding
      (65535 -> 255); ``I`` values are clipped to ``[0, 65535]`` first.
    - float (``F``, float arrays): must lie in ``[0, 1]``; multiplied by 255 and rounded.
    - ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted by PIL.

    Anything else raises :class:`ImageReadError` naming ``name`` and the mode/shape.
    """
    if isinstance(img, Image.Image):
        arr = _pil_to_array(img, name)
    elif isinstance(img, np.ndarray):
        arr = img
    else:
        raise ImageReadError.for_file(name, f"expected a PIL image or numpy array, got {type(img).__name__}")
    return _array_to_rgb(arr, name)


@dataclass(frozen=True)
class ImageFile:
    """An image file as read by :func:`read_image`: its pixels and what the RGB uint8 array drops."""

    #: ``HxWx3`` uint8 RGB, exactly what :func:`load_image` returns
    rgb: np.ndarray
    #: ``HxW`` uint8 alpha (0 = transparent, 255 = opaque; 16-bit alpha scaled), or None without alpha
    alpha: np.ndarray | None
    #: bits per channel stored in the file (16 for 16-bit PNG/TIFF, else 8)
    bit_depth: int


def _stored_bit_depth(img: Image.Image) -> int:
    """16 when the file stores 16-bit samples (PIL decodes 16-bit RGB to 8-bit mode RGB, so the tile's raw
    mode, e.g. ``RGB;16B``, is the only trace of it; read before ``load()`` clears the tiles), else 8."""
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        return 16
    for tile in getattr(img, "tile", None) or ():
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if args and isinstance(args[0], str) and ";16" in args[0]:
            return 16
    return 8


def read_image(path: str | os.PathLike[str]) -> ImageFile:
    """Read an image file fully: its RGB uint8 pixels, its alpha channel (if any) and its bit depth.

    The file is decoded completely (truncated or corrupt files fail here, not
    later), EXIF orientation is applied and the pixels go through
    :func:`to_rgb_uint8`. Multi-frame files give their first frame. Any failure
    raises :class:`ImageReadError` naming the path and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError.for_file(path, "file does not exist")
    if path.is_dir():
        raise ImageReadError.for_file(path, "is a directory, not an image file")
    try:
        with Image.open(path) as img:
            bit_depth = _stored_bit_depth(img)
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception as e:  # malformed EXIF should not lose a good image
                log.warning("ignoring unreadable EXIF orientation of '%s': %s", path, e)
                oriented = img
            arr = _pil_to_array(oriented, str(path))
            alpha = None
            if arr.ndim == 3 and arr.shape[2] in (2, 4) and oriented.mode != "RGBX":  # RGBX: padding, no alpha
                alpha = _array_to_rgb(arr[:, :, -1], str(path))[:, :, 0]
            return ImageFile(_array_to_rgb(arr, str(path)), alpha, bit_depth)
    except ImageReadError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError, EOFError, ...
        reason = str(e) or type(e).__name__
        raise ImageReadError.for_file(path, f"{reason} ({type(e).__name__})") from e


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file fully and return it as ``HxWx3`` uint8 RGB (see :func:`read_image`)."""
    return read_image(path).rgb


# --------------------------------------------------------------------------- listing


def scan_files(root: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """Return (image files, other files) under ``root``; hidden files/dirs are skipped."""
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for fname in filenames:
            if fname.startswith("."):  # e.g. macOS '._x.jpg' AppleDouble files
                continue
            p = Path(dirpath, fname)
            (images if is_image_file(fname) else others).append(p)

    def key(p: Path) -> str:
        return p.relative_to(root).as_posix()

    return sorted(images, key=key), sorted(others, key=key)


def _resolve_file_list(root: Path, file_list: str | os.PathLike[str]) -> Path:
    path = Path(file_list).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    where = (
        f"'{path}'" if path.is_absolute() else f"'{path}' (relative to the working directory or to '{root}')"
    )
    raise FileNotFoundError(
        f"file list {where} does not exist; expected a text file with one image path "
        f"(relative to data root '{root}') per line"
    )


def _entry_path(root: Path, line: str) -> Path:
    """Image path of one file-list line: the first column, relative to ``root``."""
    whole = root / line.lstrip("/")
    if len(line.split()) > 1 and whole.is_file():  # a path containing whitespace
        return whole
    token = line.split()[0]
    candidate = root / token.lstrip("/")  # Places2 lists write '/a/abbey/00000001.jpg'
    if not candidate.exists() and Path(token).is_absolute() and Path(token).exists():
        return Path(token)
    return candidate


def _read_file_list(root: Path, list_path: Path) -> list[Path]:
    paths: list[Path] = []
    missing: list[tuple[int, Path]] = []
    with open(list_path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            p = _entry_path(root, line)
            if p.is_file():
                paths.append(p)
            else:
                missing.append((lineno, p))
    if missing:
        shown = "; ".join(f"line {n}: '{p}'" for n, p in missing[:5])
        more = f"; ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"file list '{list_path}': {len(missing)} of {len(missing) + len(paths)} entries do not exist "
            f"under data root '{root}': {shown}{more}"
        )
    if not paths:
        raise ValueError(f"file list '{list_path}' contains no entries (only blank lines or '#' comments)")
    return paths


def list_images(
    root: str | os.PathLike[str],
    file_list: str | os.PathLike[str] | None = None,
    recursive: bool = True,
) -> list[Path]:
    """List the image files of a dataset.

    Without ``file_list``: every file under ``root`` (recursively unless
    ``recursive=False``) whose extension is in :data:`IMAGE_EXTENSIONS`
    (case-insensitive), sorted by relative path; hidden files and folders are
    skipped. With ``file_list``: the paths listed in that text file, in file
    order, resolved relative to ``root``. One path per line; blank lines and
    lines starting with ``#`` are ignored, as are extra whitespace-separated
    columns (e.g. the labels of Places2 lists); a leading ``/`` is treated as
    relative to ``root``. A relative ``file_list`` is looked up in the working
    directory, then in ``root``.

    Raises ``FileNotFoundError`` for a missing root, list file or listed entry
    (with line numbers) and ``ValueError`` if ``root`` is not a folder or holds
    no images.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"data root '{root}' does not exist; set data.root=... to a folder of images ({_ext_list()})"
        )
    if not root.is_dir():
        raise ValueError(
            f"data root '{root}' is not a directory; set data.root=... to a folder of images ({_ext_list()})"
        )
    if file_list is not None:
        return _read_file_list(root, _resolve_file_list(root, file_list))

    images, others = scan_files(root, recursive)
    if not images:
        search = "recursive" if recursive else "non-recursive"
        msg = f"no images found in data root '{root}' ({search} search for {_ext_list()}, case-insensitive)"
        if others:
            examples = ", ".join(f"'{p.relative_to(root).as_posix()}'" for p in others[:5])
            msg += f"; it contains {len(others)} other file(s), e.g. {examples}"
        if not recursive and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
            msg += "; it has subfolders, which are only searched with recursive=True"
        raise ValueError(msg)
    return images


# --------------------------------------------------------------------------- resizing


def resize_to_cover(img: np.ndarray, min_h: int, min_w: int) -> np.ndarray:
    """Upscale ``img`` (bicubic, aspect ratio kept) so that ``H >= min_h`` and ``W >= min_w``.

    Images already large enough are returned unchanged (the same object).
    """
    if min_h <= 0 or min_w <= 0:
        raise ValueError(f"resize_to_cover: min_h and min_w must be positive, got {min_h}, {min_w}")
    h, w = img.shape[:2]
    if h >= min_h and w >= min_w:
        return img
    scale = max(min_h / h, min_w / w)
    new_h = max(min_h, math.ceil(h * scale - 1e-6))
    new_w = max(min_w, math.ceil(w * scale - 1e-6))
    return _resize(img, new_h, new_w)


def resize_short(img: np.ndarray, short: int | None) -> np.ndarray:
    """Resize (bicubic, aspect kept) so the short side is ``short``; ``None``/0 or already that size: unchanged."""
    if not short:
        return img
    h, w = img.shape[:2]
    if min(h, w) == short:
        return img
    scale = short / min(h, w)
    return _resize(img, max(1, round(h * scale)), max(1, round(w * scale)))


def _resize(img: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    pil = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC)).copy()
