"""Hole-mask generators for inpainting.

Convention: a mask is a ``float32`` numpy array of shape ``[H, W]`` with values in ``{0, 1}``,
where **1 marks a hole (missing pixel) and 0 a known pixel**.

Every generator is a callable ``gen(height, width, rng) -> mask`` that draws *all* of its
randomness from ``rng`` (a :class:`numpy.random.Generator`), never from global numpy / torch /
``random`` state.  A mask is therefore a pure function of the generator's configuration and the
state of ``rng``; e.g. ``gen(h, w, np.random.default_rng([seed, index]))`` gives reproducible
evaluation masks.

Ratio guarantee: :class:`BlockMask` and :class:`FreeFormMask` return masks whose hole ratio lies
*exactly* inside ``[ratio[0], ratio[1]]`` (no tolerance).  They draw a target count of hole pixels,
add shapes until the target is reached and, if the last shape overshoots the upper bound, erase its
overshoot pixels deterministically (rectangles are cut in raster order, strokes are cut along their
path so they end early).  If the shape budget runs out first, the hole grows by deterministic
dilation rings until it reaches the target.  A ratio range that contains no whole number of pixels
for the requested image size raises :class:`ValueError` at call time.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "BlockMask",
    "CenterMask",
    "FreeFormMask",
    "MaskGenerator",
    "MixedMask",
    "call_mask",
    "mask_ratio",
]


# --------------------------------------------------------------------------------------------- helpers


def mask_ratio(mask: np.ndarray) -> float:
    """Fraction of hole pixels (value 1) in ``mask``."""
    arr = np.asarray(mask)
    if arr.size == 0:
        raise ValueError(f"mask_ratio: mask must be non-empty, got shape {arr.shape}")
    return float(np.count_nonzero(arr)) / arr.size


def _is_real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_fraction(name: str, value: Any, *, low_open: bool = False) -> float:
    """Validate a float in ``[0, 1]`` (or ``(0, 1]`` when ``low_open``)."""
    rng_txt = "(0, 1]" if low_open else "[0, 1]"
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a number in {rng_txt}, got {value!r}")
    v = float(value)
    if v > 1.0 or v < 0.0 or (low_open and v == 0.0):
        raise ValueError(f"{name} must be in {rng_txt}, got {value!r}")
    return v


def _check_range(name: str, value: Any, *, low_open: bool = False) -> tuple[float, float]:
    """Validate a ``(lo, hi)`` pair of fractions with ``lo <= hi``; accepts any sequence (e.g. ListConfig)."""
    rng_txt = "(0, 1]" if low_open else "[0, 1]"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair with values in {rng_txt}, got {value!r}")
    lo = _check_fraction(f"{name}[0]", value[0], low_open=low_open)
    hi = _check_fraction(f"{name}[1]", value[1], low_open=low_open)
    if lo > hi:
        raise ValueError(f"{name} must satisfy low <= high (values in {rng_txt}), got {value!r}")
    return lo, hi


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_call(height: Any, width: Any, rng: Any) -> tuple[int, int]:
    h = _check_int("height", height, 1)
    w = _check_int("width", width, 1)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return h, w


def _count_bounds(ratio: tuple[float, float], height: int, width: int) -> tuple[int, int]:
    """Smallest / largest pixel counts ``c`` with ``lo <= c / N <= hi`` (exact in float arithmetic)."""
    n = height * width
    lo, hi = ratio
    c_lo = math.ceil(lo * n)
    while c_lo > 0 and (c_lo - 1) / n >= lo:
        c_lo -= 1
    while c_lo <= n and c_lo / n < lo:
        c_lo += 1
    c_hi = math.floor(hi * n)
    while c_hi < n and (c_hi + 1) / n <= hi:
        c_hi += 1
    while c_hi >= 0 and c_hi / n > hi:
        c_hi -= 1
    if c_lo > c_hi:
        raise ValueError(
            f"ratio={ratio} admits no whole number of hole pixels for a {height}x{width} image "
            f"({n} pixels); widen the ratio range"
        )
    return c_lo, c_hi


def _draw_target(
    ratio: tuple[float, float], height: int, width: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Draw a target hole-pixel count uniformly from ``ratio``; returns ``(target, upper_bound)``."""
    c_lo, c_hi = _count_bounds(ratio, height, width)
    target = round(rng.uniform(ratio[0], ratio[1]) * height * width)
    return min(max(target, c_lo), c_hi), c_hi


def _grow_to(mask: np.ndarray, target: int) -> None:
    """Deterministically grow the boolean hole ``mask`` in place (4-neighbour dilation rings) to ``target`` pixels."""
    count = int(np.count_nonzero(mask))
    if count >= target:
        return
    if count == 0:
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = True
        count = 1
    while count < target:  # each ring adds >= 1 pixel while the mask is not full, so this terminates
        grown = mask.copy()
        grown[1:, :] |= mask[:-1, :]
        grown[:-1, :] |= mask[1:, :]
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        ring = grown & ~mask
        ys, xs = np.nonzero(ring)
        keep = min(target - count, ys.size)
        mask[ys[:keep], xs[:keep]] = True
        count += keep


def call_mask(
    gen: Any, height: int, width: int, rng: np.random.Generator, index: int | None = None
) -> np.ndarray:
    """``gen(height, width, rng)``, passing ``index`` on to :class:`MaskGenerator` subclasses (a plain
    callable ``(h, w, rng) -> mask`` works too)."""
    if isinstance(gen, MaskGenerator):
        return gen(height, width, rng, index=index)
    return gen(height, width, rng)


# ------------------------------------------------------------------------------------------ generators


class MaskGenerator(abc.ABC):
    """Base class: ``gen(height, width, rng)`` returns a float32 ``[H, W]`` mask, 1 = hole."""

    @abc.abstractmethod
    def __call__(
        self, height: int, width: int, rng: np.random.Generator, index: int | None = None
    ) -> np.ndarray:
        """Generate one mask using only ``rng`` for randomness.

        ``index`` is the evaluation sample's index (``None`` for training samples). Generators that pair
        evaluation images with a fixed set of masks (mask files) use it; the others ignore it."""

    def center_hole(self, height: int, width: int) -> int | None:
        """The side (px) of the one centred square hole this generator always draws on a ``height x width``
        image, or None when it draws other holes (a model that fills only a centre hole reads this)."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class CenterMask(MaskGenerator):
    """Centred square hole.

    Args:
        size: side length; an ``int`` is in pixels (>= 1), a ``float`` in ``(0, 1]`` is a fraction of
            ``min(H, W)`` (rounded, at least 1 px).  A pixel side larger than the image raises ValueError.
        overlap: width in pixels (int >= 0) of the ring around the hole that :meth:`region` adds.

    The hole occupies rows ``top .. top + side - 1`` with ``top = (H - side) // 2`` (columns likewise),
    e.g. ``CenterMask(8)`` on a 32x32 image covers rows/cols 12..19.

    :meth:`region` is the hole grown by ``overlap`` pixels on each side.  The context-encoder papers
    (Pathak et al.; "Beyond CNNs") predict a window larger than the hole: on CIFAR's 32x32 images the
    8x8 centre hole (rows/cols 12..19) is reconstructed inside a 16x16 window (rows/cols 8..23,
    ``overlap=4``) and the 4-px ring of known pixels gets its own loss weight.  Models that need that
    window read it from the batch (key ``"region"``, added by the DataModule for generators that have a
    ``region`` method).
    """

    def __init__(self, size: int | float = 0.25, overlap: int = 0) -> None:
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            self.size: int | float = _check_int("size", size, 1)
        elif _is_real(size):
            self.size = _check_fraction("size", size, low_open=True)
        else:
            raise ValueError(
                f"size must be an int >= 1 (pixels) or a float in (0, 1] (fraction), got {size!r}"
            )
        self.overlap = _check_int("overlap", overlap, 0)

    def side(self, height: int, width: int) -> int:
        """Hole side in pixels for an image of the given size."""
        if isinstance(self.size, int):
            side = self.size
        else:
            side = max(1, round(self.size * min(height, width)))
        if side > min(height, width):
            raise ValueError(f"size={self.size!r} ({side} px) exceeds the {height}x{width} image")
        return side

    def center_hole(self, height: int, width: int) -> int:
        return self.side(height, width)

    def __call__(
        self, height: int, width: int, rng: np.random.Generator, index: int | None = None
    ) -> np.ndarray:
        height, width = _check_call(height, width, rng)
        return self._square(height, width, 0)

    def region(self, height: int, width: int) -> np.ndarray:
        """float32 ``[H, W]``: 1 on the hole grown by ``overlap`` px on each side (clipped to the image)."""
        height = _check_int("height", height, 1)
        width = _check_int("width", width, 1)
        return self._square(height, width, self.overlap)

    def _square(self, height: int, width: int, grow: int) -> np.ndarray:
        side = self.side(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        mask = np.zeros((height, width), dtype=np.float32)
        mask[max(0, top - grow) : top + side + grow, max(0, left - grow) : left + side + grow] = 1.0
        return mask


class BlockMask(MaskGenerator):
    """Union of random axis-aligned rectangles with hole ratio inside ``ratio``.

    Args:
        ratio: ``(low, high)`` hole-ratio range in ``[0, 1]``; the target is drawn uniformly from it.
        min_size, max_size: each rectangle side is a fraction of the image side drawn from
            ``[min_size, max_size]`` (``0 < min_size <= max_size <= 1``).
        max_blocks: maximum number of rectangles before the deterministic dilation fallback.
    """

    def __init__(
        self,
        ratio: Sequence[float] = (0.1, 0.5),
        min_size: float = 0.1,
        max_size: float = 0.5,
        max_blocks: int = 50,
    ) -> None:
        self.ratio = _check_range("ratio", ratio)
        self.min_size = _check_fraction("min_size", min_size, low_open=True)
        self.max_size = _check_fraction("max_size", max_size, low_open=True)
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size must be <= max_size (both in (0, 1]), got min_size={min_size!r}, max_size={max_size!r}"
            )
        self.max_blocks = _check_int("max_blocks", max_blocks, 1)

    def __call__(
        self, height: int, width: int, rng: np.random.Generator, index: int | None = None
    ) -> np.ndarray:
        height, width = _check_call(height, width, rng)
        target, upper = _draw_target(self.ratio, height, width, rng)
        mask = np.zeros((height, width), dtype=bool)
        count = 0
        for _ in range(self.max_blocks):
            if count >= target:
                break
            fh, fw = rng.uniform(self.min_size, self.max_size, size=2)
            bh = min(height, max(1, round(fh * height)))
            bw = min(width, max(1, round(fw * width)))
            top = int(rng.integers(0, height - bh + 1))
            left = int(rng.integers(0, width - bw + 1))
            block = mask[top : top + bh, left : left + bw]  # view
            added = block.size - int(np.count_nonzero(block))
            if count + added > upper:
                # Overshoot: keep only the first new pixels in raster order (cuts the block's bottom rows).
                ys, xs = np.nonzero(~block)
                keep = target - count
                block[ys[:keep], xs[:keep]] = True
                count = target
            else:
                block[...] = True
                count += added
        _grow_to(mask, target)
        return mask.astype(np.float32)


class FreeFormMask(MaskGenerator):
    """Irregular brush strokes (random-walk polylines with round joints and caps).

    Args:
        ratio: ``(low, high)`` hole-ratio range in ``[0, 1]``; the target is drawn uniformly from it.
        max_vertices: maximum vertices per stroke (>= 2); each stroke has ``2..max_vertices`` vertices.
        width: ``(low, high)`` brush-width range as fractions of ``min(H, W)`` in ``(0, 1]``
            (at least 1 px after rounding).
        max_strokes: maximum number of strokes before the deterministic dilation fallback.

    Segment lengths are drawn in ``[0.05, 0.25] * min(H, W)`` and successive directions turn by at
    most ``max_turn`` radians.  The last stroke is truncated along its path if it would push the
    hole ratio above ``ratio[1]``, so the result is always exactly inside ``ratio``.
    """

    min_length: float = 0.05
    max_length: float = 0.25
    max_turn: float = 2.0 * math.pi / 5.0

    def __init__(
        self,
        ratio: Sequence[float] = (0.1, 0.5),
        max_vertices: int = 8,
        width: Sequence[float] = (0.03, 0.1),
        max_strokes: int = 50,
    ) -> None:
        self.ratio = _check_range("ratio", ratio)
        self.max_vertices = _check_int("max_vertices", max_vertices, 2)
        self.width = _check_range("width", width, low_open=True)
        self.max_strokes = _check_int("max_strokes", max_strokes, 1)

    def _stroke(self, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Random-walk vertices ``[n, 2]`` as ``(x, y)`` and the brush width in pixels."""
        short = min(height, width)
        n = int(rng.integers(2, self.max_vertices + 1))
        u = rng.random(2 * n + 2).tolist()  # one draw per stroke: start x/y, brush, heading, turns, lengths
        w_lo, w_hi = self.width
        brush = max(1, round((w_lo + (w_hi - w_lo) * u[2]) * short))
        x, y = u[0] * width, u[1] * height
        angle = 2.0 * math.pi * u[3]
        x_max, y_max = width - 1.0, height - 1.0
        pts = [(x, y)]
        for i in range(n - 1):  # walk, clipping at the border so every vertex stays inside the image
            if i > 0:
                angle += self.max_turn * (2.0 * u[4 + i] - 1.0)
            step = (self.min_length + (self.max_length - self.min_length) * u[3 + n + i]) * short
            x = min(max(x + step * math.cos(angle), 0.0), x_max)
            y = min(max(y + step * math.sin(angle), 0.0), y_max)
            pts.append((x, y))
        return np.asarray(pts), brush

    @staticmethod
    def _paint(draw: ImageDraw.ImageDraw, pts: np.ndarray, brush: int) -> None:
        draw.line([tuple(p) for p in pts.tolist()], fill=1, width=brush)
        if brush > 2:
            r = brush / 2.0
            for x, y in pts.tolist():
                draw.ellipse((x - r, y - r, x + r, y + r), fill=1)

    @staticmethod
    def _path_order(ys: np.ndarray, xs: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Order pixels by arc length of their nearest point on the polyline ``pts``."""
        p = np.stack([xs, ys], axis=1).astype(np.float64)[:, None, :]  # [P, 1, 2]
        a, d = pts[:-1][None], (pts[1:] - pts[:-1])[None]  # [1, S, 2]
        seg_len2 = (d**2).sum(-1)  # [1, S]
        t = np.clip(((p - a) * d).sum(-1) / np.maximum(seg_len2, 1e-12), 0.0, 1.0)  # [P, S]
        dist2 = ((a + t[..., None] * d - p) ** 2).sum(-1)
        seg = dist2.argmin(axis=1)
        seg_len = np.sqrt(seg_len2[0])
        offsets = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])
        arc = offsets[seg] + t[np.arange(seg.size), seg] * seg_len[seg]
        return np.argsort(arc, kind="stable")

    def __call__(
        self, height: int, width: int, rng: np.random.Generator, index: int | None = None
    ) -> np.ndarray:
        height, width = _check_call(height, width, rng)
        target, upper = _draw_target(self.ratio, height, width, rng)
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        count = 0
        for _ in range(self.max_strokes):
            if count >= target:
                break
            pts, brush = self._stroke(height, width, rng)
            # Only the stroke's bounding box can change: count new pixels there (cheap on large images).
            pad = brush // 2 + 2
            x0, y0 = (max(0, int(v) - pad) for v in pts.min(axis=0))
            x1, y1 = min(width, int(pts[:, 0].max()) + pad + 1), min(height, int(pts[:, 1].max()) + pad + 1)
            box = (x0, y0, x1, y1)
            before = canvas.crop(box)
            self._paint(draw, pts, brush)
            after = canvas.crop(box)
            added = after.histogram()[1] - before.histogram()[1]
            if count + added > upper:
                # Overshoot: keep only the new pixels of this stroke nearest its start (along its path).
                mask = np.array(canvas, dtype=bool)
                ys, xs = np.nonzero(np.asarray(after, dtype=bool) & ~np.asarray(before, dtype=bool))
                ys, xs = ys + y0, xs + x0
                drop = self._path_order(ys, xs, pts)[target - count :]
                mask[ys[drop], xs[drop]] = False
                return mask.astype(np.float32)
            count += added
        mask = np.array(canvas, dtype=bool)
        _grow_to(mask, target)
        return mask.astype(np.float32)


class MixedMask(MaskGenerator):
    """Pick one generator per call with probabilities proportional to ``weights``.

    Args:
        generators: non-empty sequence of generators, or a mapping ``name -> generator``.
        weights: non-negative weights (same length as ``generators``, not all zero; a mapping
            ``name -> weight`` is also accepted when ``generators`` is a mapping).  ``None`` = uniform.
    """

    def __init__(
        self,
        generators: Sequence[MaskGenerator] | Mapping[str, MaskGenerator],
        weights: Sequence[float] | Mapping[str, float] | None = None,
    ) -> None:
        if isinstance(generators, Mapping):
            self.names: list[str] = [str(k) for k in generators]
            gens = list(generators.values())
            if isinstance(weights, Mapping):
                unknown = set(map(str, weights)) ^ set(self.names)
                if unknown:
                    raise ValueError(
                        f"weights keys must match generators keys {self.names}, got {list(weights)}"
                    )
                weights = [weights[k] for k in generators]
        elif isinstance(generators, Sequence) and not isinstance(generators, (str, bytes)):
            gens = list(generators)
            self.names = [type(g).__name__ for g in gens]
        else:
            raise ValueError(
                f"generators must be a sequence or mapping of mask generators, got {generators!r}"
            )
        if not gens:
            raise ValueError("generators must contain at least one mask generator, got an empty collection")
        for name, g in zip(self.names, gens, strict=True):
            if not callable(g):
                raise ValueError(f"generators[{name!r}] must be a callable mask generator, got {g!r}")
        self.generators = gens
        if weights is None:
            w = np.ones(len(gens))
        else:
            if isinstance(weights, (str, bytes, Mapping)) or not isinstance(weights, Sequence):
                raise ValueError(f"weights must be a sequence of non-negative numbers, got {weights!r}")
            if len(weights) != len(gens):
                raise ValueError(
                    f"weights must have the same length as generators ({len(gens)}), got {len(weights)}: {weights!r}"
                )
            if not all(_is_real(x) and math.isfinite(float(x)) and float(x) >= 0.0 for x in weights):
                raise ValueError(f"weights must be finite numbers >= 0, got {list(weights)!r}")
            w = np.asarray([float(x) for x in weights])
            if w.sum() <= 0.0:
                raise ValueError(f"weights must not all be zero (need sum > 0), got {list(weights)!r}")
        self.weights: list[float] = (w / w.sum()).tolist()
        self._p = w / w.sum()

    def __call__(
        self, height: int, width: int, rng: np.random.Generator, index: int | None = None
    ) -> np.ndarray:
        _check_call(height, width, rng)
        idx = int(rng.choice(len(self.generators), p=self._p))
        return call_mask(self.generators[idx], height, width, rng, index)
