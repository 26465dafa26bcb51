"""Filling one image with one model: what ``inpaint.predict`` and the web app (``inpaint.app``) share, so a fill
in the app equals ``predict`` with the same checkpoint, procedure, options, seed and strategy.

* :func:`load_model`: a model from a checkpoint (with the image size it was trained on), or by config name.
* :func:`read_input`, :func:`read_mask`: an image and its hole mask from files, as the training masks are read.
* :func:`fill_image`: fill a ``HxWx3`` uint8 image of any size by one of :data:`STRATEGIES`, returning uint8
  whose known pixels are the input's, byte for byte.

Large photos. A model trained on 32 or 256 px crops sees a 4000x3000 photo's hole at the wrong scale: a
hole of 400 px is 12 times wider than anything it was trained on, and its receptive field covers a sliver of
the context. Like IOPaint's "HD strategies", three ways are offered (``strategy=``):

``crop`` (the default)
    each hole (nearby holes grouped) gets a window around it with the model's aspect, at least the model's
    training size and at least :data:`CROP_CONTEXT` times the hole's extent, so the hole covers at most half
    of each side, as the training holes do; the window is shrunk to the model's scale (never enlarged),
    filled, the fill enlarged back (bicubic) and pasted into the hole only. Everything outside the holes stays
    at full resolution, and the cost follows the holes, not the photo. The default because it keeps the hole
    at the scale and the hole-to-context ratio the model learned, which is what a fill's quality depends on.
``resize``
    the whole image is shrunk so that it just covers the model's training size (its shorter side becomes the
    model's), filled, and the fill enlarged back and pasted into the holes: the global context, at the
    cost of detail (a 32-px model fills a photo's hole with 32-px detail).
``full``
    the model runs on the image as it is (padded to its size multiple): right when the photo is at the
    model's scale already; on a large photo slow, memory-hungry and out of the model's training scale.

A model whose scale is unknown (``model=biharmonic``; a checkpoint without the size and without its run's
card) never resizes: ``crop`` then takes windows of :data:`CROP_CONTEXT` times each hole at full resolution
(biharmonic reads only a thin ring around the hole, so this only saves time) and ``resize`` is ``full``. A
model built for one size (a context encoder) is given windows of exactly that size.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from scipy import ndimage

from inpaint.checkpoint_io import CHECKPOINT_CLASS_KEY, IMAGE_SIZE_KEY, read_checkpoint
from inpaint.checkpoints import check_state_dict, resolve_checkpoint
from inpaint.cli import instantiate
from inpaint.config_dir import CONF_DIR
from inpaint.data.io import read_image
from inpaint.data.mask_files import HOLE_VALUES, binarize_mask, read_mask_levels
from inpaint.errors import CheckpointMismatchError
from inpaint.models.base import InpaintModule

log = logging.getLogger("inpaint.predict")

#: how an image is filled (``strategy=``): see the module docstring; the first is the default
STRATEGIES = ("crop", "resize", "full")
#: ``crop``: a window spans at least this many times its hole's height and width
CROP_CONTEXT = 2.0


def load_model(
    ckpt_path: str | None = None, model: str | None = None, weights: str | None = None, options: dict | None = None
) -> InpaintModule:
    """A model from an inpaint checkpoint (class and hyperparameters are stored in it), a non-learned model
    by its config name (``model=biharmonic``), or a model by its config name with the original authors'
    released weights (``model=isnet weights=InpaintingModel_gen.pth``). ``options`` (``+model_options.KEY=``)
    override keys of the model config given by name, e.g. mGANprior's prior."""
    if bool(ckpt_path) == bool(model):
        raise ValueError("give exactly one of ckpt_path=PATH (a trained model) or model=NAME (e.g. model=biharmonic)")
    if model:
        path = CONF_DIR / "model" / f"{model}.yaml"
        if not path.is_file():
            choices = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
            raise ValueError(f"model={model}: no such model config; choices: {choices}")
        node = OmegaConf.load(path)
        if options:
            node = OmegaConf.merge(node, options)
        if weights:
            if "official_weights" not in node:
                raise ValueError(f"weights= loads the original authors' released weights; model={model} has no such loader")
            node.official_weights = str(weights)
        net = instantiate(node)  # our own errors (a bad weights= file) come out unwrapped: one line
        if net.trainable and not weights:
            raise ValueError(f"model={model} must be trained first: pass ckpt_path=PATH/TO/best.ckpt")
        return net
    if weights:
        raise ValueError("weights= goes with model=NAME (the authors' released weights), not with ckpt_path=")
    if options:
        raise ValueError("model_options= go with model=NAME; a checkpoint carries its own model config")
    ckpt_path = resolve_checkpoint(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    target = ckpt.get(CHECKPOINT_CLASS_KEY)
    if target is None:
        raise CheckpointMismatchError(f"checkpoint {ckpt_path} was not written by inpaint.run (no model class in it)")
    module_name, _, cls_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    net = cls.from_hyperparameters(ckpt.get("hyper_parameters", {}))
    check_state_dict(ckpt.get("state_dict"), net, ckpt_path)
    net.load_state_dict(ckpt["state_dict"])
    net.trained_image_size = trained_size(ckpt, ckpt_path)
    return net


def trained_size(ckpt: dict, ckpt_path: str | Path) -> tuple[int, int] | None:
    """The (height, width) a checkpoint's model was trained on: stored in it by ``inpaint.run``
    (:data:`~inpaint.checkpoint_io.IMAGE_SIZE_KEY`), else read from the results card of the run it sits in
    (``RUN/checkpoints/X.ckpt`` -> ``RUN/card.json``, for checkpoints written before the key existed); None when
    neither says."""
    size = ckpt.get(IMAGE_SIZE_KEY)
    if size is None:
        path = Path(ckpt_path).resolve()
        for card in (path.parent / "card.json", path.parent.parent / "card.json"):
            if card.is_file():
                try:
                    size = (json.loads(card.read_text()).get("protocol") or {}).get("image_size")
                except (OSError, ValueError):
                    size = None
                if size is not None:
                    break
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    return int(h), int(w)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: ``mask=alpha``: each image's own alpha channel is its mask (transparent = hole)
ALPHA_MASK = "alpha"


def mask_level(threshold: float) -> int:
    """``mask_threshold`` (a fraction of full white in (0, 1]) as the gray level 1..255 at which the data
    package's mask reader binarises: 0.5 -> 128, 1.0 -> 255."""
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(
            f"mask_threshold={threshold}: give a fraction of full white in (0, 1] (0.5 = gray level 128 of "
            "255); for a gray level N use mask_threshold=N/255"
        )
    return min(255, max(1, math.ceil(t * 255 - 1e-9)))


def read_mask(path: Path, hole: str = "white", threshold: float = 0.5) -> np.ndarray:
    """A mask file as float32 ``[H,W]`` with 1 = hole, whatever its mode (L, RGB, RGBA, 1-bit, 16-bit), read
    by the same reader as the training masks (:func:`inpaint.data.mask_files.read_mask_file`). Warns about gray
    levels between black and white (they are split at the threshold, so part of a soft hole may stay known)."""
    if hole not in HOLE_VALUES:
        raise ValueError(f"mask_hole={hole!r}: use 'white' (bright pixels are holes) or 'black'")
    level = mask_level(threshold)
    gray = read_mask_levels(path)
    between = int(np.count_nonzero((gray > 0) & (gray < 255)))
    if between:
        log.warning(
            "mask %s has %d pixel(s) of intermediate gray (neither black nor white): they are holes at gray level "
            "%s %d (mask_threshold=%g, mask_hole=%s); dilate= widens the holes, mask_threshold= moves the split",
            path, between, ">=" if hole == "white" else "<", level, threshold, hole)
    return binarize_mask(gray, hole, level).astype(np.float32)


def read_input(img_path: Path, mask_path: Path | None, hole: str, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The RGB uint8 image and its float32 hole mask; ``mask_path=None`` takes the mask from the image's alpha
    (alpha below ``threshold`` of opaque = hole). Warns about what the RGB output drops (alpha, 16 bits) and
    about a mask that leaves no known pixel."""
    src = read_image(img_path)
    if mask_path is None:
        if src.alpha is None:
            raise ValueError(
                f"mask={ALPHA_MASK}: image {img_path} has no alpha channel to take the holes from; save it with "
                "transparency (RGBA or LA PNG) or give a mask file or folder as mask=PATH"
            )
        mask = (src.alpha < mask_level(threshold)).astype(np.float32)
    else:
        if src.alpha is not None:
            log.warning(
                "image %s has an alpha channel: it is ignored (the colours are inpainted as stored); pass "
                "mask=%s to make its transparent pixels the holes", img_path, ALPHA_MASK,
            )
        mask = read_mask(mask_path, hole, threshold)
    if src.bit_depth > 8:
        log.warning("image %s is %d-bit: it is scaled to 8 bits, and the output is an 8-bit PNG", img_path,
                    src.bit_depth)
    if mask.size and mask.max() <= 0.0:
        log.warning("mask %s has no hole pixel: image %s is returned unchanged (mask_hole=%s; is the mask "
                    "inverted?)", mask_path or f"{ALPHA_MASK} (fully opaque)", img_path, hole)
    if mask.size and mask.min() >= 1.0:
        log.warning(
            "mask %s leaves no known pixel of image %s (all of it is hole): the model has nothing to fill from",
            mask_path or f"{ALPHA_MASK} (fully transparent)", img_path,
        )
    return src.rgb, mask


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``[B,C,H,W]`` at the bottom/right to a multiple of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"  # reflect needs the pad to be smaller than the image
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def dilate_mask(mask: np.ndarray, dilate: int) -> np.ndarray:
    """The ``HxW`` hole mask grown by ``dilate`` pixels (a square max filter); ``dilate=0``: as is."""
    if dilate <= 0:
        return mask
    grown = F.max_pool2d(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None],
                         kernel_size=2 * dilate + 1, stride=1, padding=dilate)
    return grown[0, 0].numpy()


def model_scale(model: InpaintModule) -> tuple[int, int] | None:
    """The (height, width) the model works at: the size it was trained on (:func:`load_model` sets
    ``trained_image_size``), else the one size it is built for; None: unknown (any size, e.g. biharmonic)."""
    size = getattr(model, "trained_image_size", None)
    if size:
        return int(size[0]), int(size[1])
    sizes = model.needs().image_sizes
    return (int(sizes[0]), int(sizes[0])) if sizes else None


def _as_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255.0).to(device)


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def _run_model(model: InpaintModule, img: torch.Tensor, msk: torch.Tensor, pad_mode: str, index: int) -> torch.Tensor:
    """The composite ``[1,3,h,w]`` of the model's active procedure, the input padded to its size multiple."""
    multiple = max(1, model.needs().size_multiple)
    img_p, (h, w) = pad_to_multiple(img, multiple, pad_mode)
    msk_p, _ = pad_to_multiple(msk, multiple, "replicate" if pad_mode == "reflect" else pad_mode)
    # in the model's inference context (gradient-free unless its procedure needs autograd)
    out = model.timed_inpaint(img_p, msk_p, torch.tensor([index], device=img.device))[0]
    return out[..., :h, :w]


def inpaint_file(model: InpaintModule, image: np.ndarray, mask: np.ndarray, device: torch.device,
                 dilate: int = 0, pad_mode: str = "reflect", index: int = 0) -> np.ndarray:
    """Inpaint one ``HxWx3`` uint8 image with a ``HxW`` hole mask (1 = hole) at full resolution (the ``full``
    strategy); returns uint8 ``HxWx3``. ``index`` is the image's identity for a stochastic procedure (with the
    model's ``inference_seed``)."""
    hole = dilate_mask(mask, dilate) > 0.5
    return _fill_window(model, image, hole, device, hole.shape, pad_mode, index)


def check_strategy(strategy: str) -> None:
    """Refuse a strategy that is not one of :data:`STRATEGIES`, naming them."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy}: choose one of {', '.join(STRATEGIES)} (README: Large photos)")


def _work_size(h: int, w: int, scale: tuple[int, int] | None, exact: bool) -> tuple[int, int]:
    """The size a window of ``h x w`` is filled at: the model's one size (``exact``), else shrunk uniformly until
    it just covers the model's scale (never enlarged); as is when the scale is unknown."""
    if scale is None:
        return h, w
    if exact:
        return scale
    f = max(scale[0] / h, scale[1] / w)
    if f >= 1.0:
        return h, w
    return max(1, round(h * f)), max(1, round(w * f))


def _fill_window(model: InpaintModule, image: np.ndarray, hole: np.ndarray, device: torch.device,
                 size: tuple[int, int], pad_mode: str, index: int) -> np.ndarray:
    """``image`` (uint8 ``hxwx3``) with its ``hole`` pixels filled by the model working at ``size``: the window
    shrunk (antialiased; a pixel of the small mask is a hole when any pixel under it is), filled, the fill
    enlarged back (bicubic). Only hole pixels change."""
    h, w = hole.shape
    img = _as_tensor(image, device)
    msk = torch.from_numpy(hole.astype(np.float32))[None, None].to(device)
    if tuple(size) == (h, w):
        filled = _run_model(model, img, msk, pad_mode, index)
    else:
        small = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        small_hole = (F.interpolate(msk, size=size, mode="area") > 0).float()
        filled = _run_model(model, small, small_hole, pad_mode, index)
        filled = F.interpolate(filled, size=(h, w), mode="bicubic", align_corners=False)
    out = image.copy()
    out[hole] = _as_uint8(filled)[hole]
    return out


def _crop_windows(hole: np.ndarray, scale: tuple[int, int] | None) -> list[tuple[int, int, int, int]]:
    """``crop``'s windows ``(top, left, height, width)``: one per group of holes (holes closer than an eighth
    of the model's side, or 4 px at an unknown scale, share a window), each with the model's aspect, at least
    its size and :data:`CROP_CONTEXT` times the group's extent, centred on it and moved inside the image."""
    H, W = hole.shape
    gap = max(1, min(scale) // 8) if scale else 4
    groups, _ = ndimage.label(ndimage.binary_dilation(hole, iterations=gap), structure=np.ones((3, 3)))
    windows = []
    for sl in ndimage.find_objects(groups):
        ys, xs = np.nonzero(hole[sl])  # the group's true extent (without the grouping dilation)
        if ys.size == 0:
            continue
        y0, y1 = sl[0].start + int(ys.min()), sl[0].start + int(ys.max()) + 1
        x0, x1 = sl[1].start + int(xs.min()), sl[1].start + int(xs.max()) + 1
        bh, bw = y1 - y0, x1 - x0
        if scale:
            r = max(1.0, CROP_CONTEXT * bh / scale[0], CROP_CONTEXT * bw / scale[1])
            wh, ww = math.ceil(scale[0] * r), math.ceil(scale[1] * r)
        else:
            wh, ww = max(bh + 16, math.ceil(CROP_CONTEXT * bh)), max(bw + 16, math.ceil(CROP_CONTEXT * bw))
        wh, ww = min(wh, H), min(ww, W)
        top = min(max(0, min((y0 + y1 - wh) // 2, H - wh)), y0)
        left = min(max(0, min((x0 + x1 - ww) // 2, W - ww)), x0)
        top, left = max(top, y1 - wh), max(left, x1 - ww)  # the group lies inside its window
        windows.append((top, left, wh, ww))
    return windows


def fill_image(model: InpaintModule, image: np.ndarray, mask: np.ndarray, device: torch.device,
               strategy: str = "crop", pad_mode: str = "reflect", index: int = 0) -> np.ndarray:
    """Fill the holes (``mask`` ``HxW``, 1 = hole) of a ``HxWx3`` uint8 image of any size with the model's active
    procedure, by ``strategy`` (:data:`STRATEGIES`, see the module docstring); returns uint8 ``HxWx3`` whose
    known pixels are the input's. ``index``: the image's identity for a stochastic procedure."""
    check_strategy(strategy)
    hole = np.asarray(mask) > 0.5
    if not hole.any():
        return image.copy()
    scale = model_scale(model)
    exact = model.needs().image_sizes is not None
    H, W = hole.shape
    windows = _crop_windows(hole, scale) if strategy == "crop" else [(0, 0, H, W)]
    out, remaining = image.copy(), hole.copy()
    for top, left, wh, ww in windows:
        win = (slice(top, top + wh), slice(left, left + ww))
        if not remaining[win].any():
            continue
        size = (wh, ww) if strategy == "full" else _work_size(wh, ww, scale, exact)
        # holes filled by an earlier window are context now; the rest of the window's holes are filled here
        out[win] = _fill_window(model, out[win], remaining[win], device, size, pad_mode, index)
        remaining[win] = False
    return out
