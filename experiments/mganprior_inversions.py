"""A PNG grid of mGANprior inversions of held-out images, next to biharmonic and the truth.

Rows: the first ``--images`` test images of the configured data (``data=folder`` splits a folder by path hash,
as ``inpaint.run`` does, so these are the images the test runs score). Columns, left to right: masked input
(holes white), mGANprior's raw generator output (nothing pasted back), its composite, the composite with
self-attention, the composite with CBAM, biharmonic, the ground truth. Every model is built from the composed
``conf/`` (``inpaint.run.build_model``: the same model, seed and inference options as ``task=test``) and
filled through its inference API (``inpaint``), so the grid shows what the evaluation scored.

  python experiments/mganprior_inversions.py --out grid.png -- data=folder data.root=data/train \\
      data.image_size=32 data.resize_short=null mask=blocks_25 model.prior.official=null \\
      model.prior.checkpoint=RUN/checkpoints/last.ckpt model.loss.vgg=random +eval.inference.iterations=100

Everything after ``--`` is a Hydra override of ``conf/train.yaml`` (``model=mganprior`` is implied).
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from inpaint.callbacks import masked_input, tile_columns
from inpaint.cli import CONF_DIR
from inpaint.run import build_datamodule, build_model

#: the mGANprior columns: (label, model.attention.type)
ATTENTION = (("mGANprior", "none"), ("+ sa", "sa"), ("+ cbam", "cbam"))
COLUMNS = ("masked input", "mGANprior raw", *(label for label, _ in ATTENTION), "biharmonic", "ground truth")


def test_batch(cfg, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples of the configured test split (image, mask, index)."""
    dataset = build_datamodule(cfg).test_dataset
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "mask")}
    batch["index"] = torch.as_tensor([int(it.get("index", i)) for i, it in enumerate(items)])
    return batch


def fill(overrides: list[str], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The composite of the model the overrides compose, and its raw output when it keeps one."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    model = build_model(cfg).eval()
    start = time.perf_counter()
    with torch.no_grad():
        composite = model.inpaint(batch["image"], batch["mask"], batch["index"])
    print(f"{cfg.model._target_.rpartition('.')[2]} {' '.join(o for o in overrides if 'attention' in o)}: "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return composite, getattr(model, "last_raw", None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PNG written")
    parser.add_argument("--images", type=int, default=6, help="rows: the first N test images")
    parser.add_argument("--scale", type=int, default=3, help="enlarge the grid this many times (nearest)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml (after --)")
    args = parser.parse_args(argv)
    overrides = ["model=mganprior", "model.progress=false", *args.overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    batch = test_batch(cfg, args.images)
    columns = [masked_input(batch["image"], batch["mask"])]
    for i, (_, attention) in enumerate(ATTENTION):
        composite, raw = fill([*overrides, f"model.attention.type={attention}"], batch)
        if i == 0:
            columns.append(raw)
        columns.append(composite)
    data_only = [o for o in args.overrides if not o.lstrip("+~").startswith(("model.", "eval."))]
    columns += [fill(["model=biharmonic", *data_only], batch)[0], batch["image"]]
    grid = Image.fromarray(tile_columns([c.float().cpu() for c in columns]))
    grid = grid.resize((grid.width * args.scale, grid.height * args.scale), Image.NEAREST)
    grid.save(args.out, optimize=True)
    print(f"{args.out}: {len(batch['image'])} rows; columns: {', '.join(COLUMNS)}")


if __name__ == "__main__":
    main()
