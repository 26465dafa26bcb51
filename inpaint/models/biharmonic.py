"""Biharmonic inpainting (scikit-image), a non-learned baseline evaluated like any checkpoint.

It solves the biharmonic equation inside each hole with the known pixels as boundary conditions: a
smooth fill with no learned prior, the floor every learned model must beat on the same masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic
from torch import Tensor

from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.models.base import InpaintModule


class BiharmonicModule(InpaintModule):
    """``forward`` runs ``skimage.restoration.inpaint_biharmonic`` per image on the CPU."""

    trainable = False

    def __init__(self, buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS) -> None:
        super().__init__(buckets=buckets, nan_check_every=0)
        self.save_hyperparameters()

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        img = image.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
        holes = mask.detach().cpu()[:, 0].numpy() > 0.5
        no_known = [i for i in range(holes.shape[0]) if holes[i].all()]
        if no_known:
            raise ValueError(
                f"biharmonic inpainting needs known pixels around each hole, but the mask of image "
                f"{no_known[0]} of the batch (of {holes.shape[0]}) is hole everywhere ({len(no_known)} such "
                "image(s)): give a mask that keeps part of the image"
            )
        out = np.empty_like(img)
        for i in range(img.shape[0]):
            out[i] = inpaint_biharmonic(img[i], holes[i], channel_axis=-1) if holes[i].any() else img[i]
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(image.device, image.dtype)

    def training_step(self, batch, batch_idx):
        raise RuntimeError("model=biharmonic has nothing to train: evaluate it with task=test")

    def configure_optimizers(self):
        return None
