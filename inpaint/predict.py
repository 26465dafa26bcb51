"""``python -m inpaint.predict``: inpaint a person's own images with a trained checkpoint.

  python -m inpaint.predict ckpt_path=RUN/checkpoints/best.ckpt input=photo.jpg mask=holes.png output=out
  python -m inpaint.predict ckpt_path=... input=photos/ mask=masks/ output=out dilate=3 mask_hole=black
  python -m inpaint.predict model=biharmonic input=photos/ mask=masks/ output=out
  python -m inpaint.predict model=biharmonic input=cutouts/ mask=alpha output=out   # transparent = hole

Images of any size: ``strategy=crop`` (the default) fills each hole in a window around it at the model's training
scale and pastes the fill back, ``strategy=resize`` fills the whole image shrunk to that scale, ``strategy=full``
at full resolution (see :mod:`inpaint.fill`); the model's input is padded (reflect) to its size multiple.
The device is CUDA when available (``device=auto``), else the CPU. Alpha channels are ignored (with a
warning) unless ``mask=alpha`` makes them the mask; 16-bit images are written back as 8-bit PNGs (warned).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from PIL import Image
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from inpaint.cli import echo, guarded, plain
from inpaint.config_dir import PREDICT_CONF_DIR
from inpaint.data.io import IMAGE_EXTENSIONS, list_images
from inpaint.fill import (  # noqa: F401  (mask_level, read_mask, inpaint_file, ...: this module's public names too)
    ALPHA_MASK,
    STRATEGIES,
    check_strategy,
    dilate_mask,
    fill_image,
    inpaint_file,
    load_model,
    mask_level,
    model_scale,
    pad_to_multiple,
    pick_device,
    read_input,
    read_mask,
)

log = logging.getLogger("inpaint.predict")


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



def predict(cfg: DictConfig) -> list[Path]:
    """Run the whole job; returns the written composite paths."""
    device = pick_device(cfg.device)
    check_output_dir(Path(cfg.output))  # before the model loads: a wrong folder costs nothing
    model = load_model(cfg.get("ckpt_path"), cfg.get("model"), cfg.get("weights"), plain(cfg.get("model_options")))
    model = model.to(device).eval()
    # a model refuses a procedure or option it does not have, by name
    model.configure_inference(procedure=cfg.get("procedure"), **plain(cfg.get("inference")))
    model.inference_seed = int(cfg.get("seed", 0))
    check_strategy(cfg.strategy)  # before any image is read
    scale = model_scale(model)
    log.info("strategy=%s at the model's scale %s", cfg.strategy,
             f"{scale[1]}x{scale[0]} (WxH)" if scale else "unknown (full resolution)")
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
                result = fill_image(model, image, mask, device, cfg.strategy, cfg.pad_mode, index=number)
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
