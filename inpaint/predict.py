"""``python -m inpaint.predict``: inpaint a person's own images with a trained checkpoint.

  python -m inpaint.predict ckpt_path=RUN/checkpoints/best.ckpt input=photo.jpg mask=holes.png output=out
  python -m inpaint.predict ckpt_path=... input=photos/ mask=masks/ output=out dilate=3 mask_hole=black
  python -m inpaint.predict model=biharmonic input=photos/ mask=masks/ output=out
  python -m inpaint.predict model=biharmonic input=cutouts/ mask=alpha output=out   # transparent = hole

Images of any size: each is padded (reflect) to the model's size multiple, inpainted and cropped back.
The device is CUDA when available (``device=auto``), else the CPU. Alpha channels are ignored (with a
warning) unless ``mask=alpha`` makes them the mask; 16-bit images are written back as 8-bit PNGs (warned).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from inpaint.checkpoint_io import CHECKPOINT_CLASS_KEY, read_checkpoint
from inpaint.checkpoints import check_state_dict, resolve_checkpoint
from inpaint.cli import echo, guarded, instantiate, plain
from inpaint.config_dir import CONF_DIR, PREDICT_CONF_DIR
from inpaint.data.io import IMAGE_EXTENSIONS, list_images, read_image
from inpaint.data.mask_files import HOLE_VALUES, binarize_mask, read_mask_levels
from inpaint.errors import CheckpointMismatchError
from inpaint.models.base import InpaintModule

log = logging.getLogger("inpaint.predict")


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
    return net


def check_output_dir(out_dir: Path) -> None:
    """``output=`` must be a folder this process can write (created when missing): one line otherwise."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output={out_dir} is an existing file: give a folder (created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".inpaint-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output={out_dir} cannot be written ({e.strerror or e}): give a folder you can write to"
                         ) from None


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


def pair_masks(images: list[Path], input_root: Path, mask_arg: Path) -> list[Path]:
    """The mask file of each image: the one mask file, or the file in the mask folder with the image's
    relative path and stem (any image extension; falls back to the bare stem at the folder's top)."""
    if mask_arg.is_file():
        return [mask_arg] * len(images)
    if not mask_arg.is_dir():
        raise FileNotFoundError(f"mask={mask_arg} does not exist (give a mask image or a folder of masks)")
    by_rel: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    for m in list_images(mask_arg):
        rel = m.relative_to(mask_arg).with_suffix("").as_posix()
        by_rel[rel] = m
        by_stem.setdefault(m.stem, m)
    out, missing = [], []
    for img in images:
        rel = img.relative_to(input_root).with_suffix("").as_posix() if input_root.is_dir() else img.stem
        m = by_rel.get(rel) or by_stem.get(img.stem)
        (out.append(m) if m else missing.append(img))
    if missing:
        raise FileNotFoundError(
            f"no mask in {mask_arg} for {len(missing)} image(s), e.g. {missing[0]}: name each mask like its "
            f"image (same relative path and stem, any of {', '.join(IMAGE_EXTENSIONS)})"
        )
    return out


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


def inpaint_file(model: InpaintModule, image: np.ndarray, mask: np.ndarray, device: torch.device,
                 dilate: int = 0, pad_mode: str = "reflect", index: int = 0) -> np.ndarray:
    """Inpaint one ``HxWx3`` uint8 image with a ``HxW`` hole mask (1 = hole); returns uint8 ``HxWx3``.
    ``index`` is the image's identity for a stochastic procedure (with the model's ``inference_seed``)."""
    img = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255.0).to(device)
    msk = torch.from_numpy(dilate_mask(mask, dilate))[None, None].float().to(device)
    multiple = max(1, model.needs().size_multiple)
    img_p, (h, w) = pad_to_multiple(img, multiple, pad_mode)
    msk_p, _ = pad_to_multiple(msk, multiple, "replicate" if pad_mode == "reflect" else pad_mode)
    # in the model's inference context (gradient-free unless its procedure needs autograd)
    out = model.timed_inpaint(img_p, msk_p, torch.tensor([index], device=device))[0]
    out = out[..., :h, :w]  # known pixels come back exactly as given
    return (out[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def predict(cfg: DictConfig) -> list[Path]:
    """Run the whole job; returns the written composite paths."""
    device = pick_device(cfg.device)
    check_output_dir(Path(cfg.output))  # before the model loads: a wrong folder costs nothing
    model = load_model(cfg.get("ckpt_path"), cfg.get("model"), cfg.get("weights"), plain(cfg.get("model_options")))
    model = model.to(device).eval()
    # a model refuses a procedure or option it does not have, by name
    model.configure_inference(procedure=cfg.get("procedure"), **plain(cfg.get("inference")))
    model.inference_seed = int(cfg.get("seed", 0))
    in_path, out_dir = Path(cfg.input), Path(cfg.output)
    if not in_path.exists():
        raise FileNotFoundError(f"input={in_path} does not exist (give an image file or a folder of images)")
    images = [in_path] if in_path.is_file() else list_images(in_path)
    masks = [None] * len(images) if str(cfg.mask) == ALPHA_MASK else pair_masks(images, in_path, Path(cfg.mask))
    written = []
    with logging_redirect_tqdm():  # log lines go above the progress bar, not through it
        bar = tqdm(total=len(images), desc=f"inpaint ({model.procedure})", unit="image", disable=len(images) < 2,
                   dynamic_ncols=True)
        for number, (img_path, mask_path) in enumerate(zip(images, masks, strict=True)):
            image, mask = read_input(img_path, mask_path, cfg.mask_hole, cfg.mask_threshold)
            if mask.shape != image.shape[:2]:
                if not cfg.resize_mask:
                    raise ValueError(
                        f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {img_path} is "
                        f"{image.shape[1]}x{image.shape[0]}: give a mask of the image's size, or resize_mask=true"
                    )
                mask = np.array(Image.fromarray(mask).resize(image.shape[1::-1], Image.NEAREST))  # a writable copy
            mask = dilate_mask(mask, int(cfg.dilate))  # what is filled: logged and drawn as such
            start = time.perf_counter()
            try:
                result = inpaint_file(model, image, mask, device, 0, cfg.pad_mode, index=number)
            except ValueError as e:  # a model refusing this input: say which file it was
                raise ValueError(f"image {img_path} with mask {mask_path or ALPHA_MASK}: {e}") from e
            rel = img_path.relative_to(in_path) if in_path.is_dir() else Path(img_path.name)
            dest = (out_dir / rel).with_suffix(".png")
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(result).save(dest)
            if cfg.save_masked:
                masked = (image * (1 - mask[..., None])).astype(np.uint8)
                Image.fromarray(masked).save(dest.with_name(dest.stem + "_masked.png"))
            log.info("%s + %s -> %s (hole %.1f %%, %.2f s)", img_path, mask_path or ALPHA_MASK, dest,
                     100 * float(mask.mean()), time.perf_counter() - start)
            written.append(dest)
            bar.update()
        bar.close()
    echo(f"inpainted {len(written)} image(s) on {device} -> {out_dir.resolve()}", "inpaint.predict")
    return written


# its own config root: `mask=` and `model=` here are plain values, not the training config groups
_hydra_main = hydra.main(version_base="1.3", config_path=str(PREDICT_CONF_DIR), config_name="predict")(
    guarded(predict, "inpaint.predict")
)


def main() -> None:
    """``python -m inpaint.predict [overrides]``. ``output=`` is checked first: Hydra makes it the job's
    directory (for ``.hydra/`` and ``predict.log``) before the job runs."""
    from inpaint.cli import USER_ERRORS, report_user_error
    from inpaint.overrides import parse_overrides

    output = parse_overrides([a for a in sys.argv[1:] if not a.startswith("-")]).get("output")
    if output:
        try:
            check_output_dir(Path(output))
        except USER_ERRORS as e:
            sys.exit(report_user_error(e, "inpaint.predict"))
    _hydra_main()


if __name__ == "__main__":
    main()
