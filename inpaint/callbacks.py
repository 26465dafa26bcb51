"""Callbacks: PNG grids of fixed validation samples at every validation."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from inpaint.loggers import log_image

GRID_COLUMNS = ("masked input", "mask", "prediction", "composite", "ground truth")


def make_grid(image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor, composite: torch.Tensor,
              pad: int = 2) -> np.ndarray:
    """One row per sample, columns :data:`GRID_COLUMNS`; holes drawn white in the masked input and mask.

    All tensors are on the CPU in [0,1]; returns an ``HxWx3`` uint8 array."""
    mask3 = mask.expand_as(image)
    masked = image * (1 - mask3) + mask3
    cols = [masked, mask3, prediction.clamp(0, 1), composite.clamp(0, 1), image]
    b, _, h, w = image.shape
    n = len(cols)
    grid = torch.ones(3, b * (h + pad) + pad, n * (w + pad) + pad)
    for i in range(b):
        for j, col in enumerate(cols):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = col[i]
    return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


class ImageGrids(L.Callback):
    """At the end of each validation, inpaint the first ``num_samples`` validation samples (their masks
    are fixed by the seed, so every grid shows the same holes) and save ``<dirpath>/step=NNNNNN.png``;
    image-capable loggers (W&B, TensorBoard) receive it as ``val/grid``."""

    def __init__(self, dirpath: str, num_samples: int = 8) -> None:
        self.dirpath = Path(dirpath)
        self.num_samples = int(num_samples)
        self._batch: dict[str, torch.Tensor] | None = None
        self.last_path: Path | None = None

    def _samples(self, trainer: L.Trainer) -> dict[str, torch.Tensor] | None:
        if self._batch is None:
            dataset = getattr(trainer.datamodule, "val_dataset", None)
            if dataset is None or self.num_samples <= 0:
                return None
            items = [dataset[i] for i in range(min(self.num_samples, len(dataset)))]
            self._batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "mask")}
        return self._batch

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        batch = self._samples(trainer)
        if batch is None:
            return
        image, mask = (t.to(pl_module.device) for t in (batch["image"], batch["mask"]))
        with torch.no_grad():
            prediction = pl_module(image, mask).float()
            composite = pl_module.inpaint(image, mask).float()
        grid = make_grid(*(t.detach().float().cpu() for t in (image, mask, prediction, composite)))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step={trainer.global_step:06d}.png"
        Image.fromarray(grid).save(path)
        self.last_path = path
        log_image(trainer.loggers, "val/grid", grid, step=trainer.global_step)
