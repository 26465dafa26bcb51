"""SC-NN: the hybrid spiking-convolutional inpainting net (Sanaullah et al., NLDL 2024).

Follows ``specs/cifar-models-and-scnn.md`` Part B. Departures from (or readings of) the paper:

* Widths 64-64s-128-128-64-3 and the spiking layer in 2nd position: not given in the paper (spec B2).
* The SNNConv2d integrates its (once-computed) conv current for T = 8 steps and reads out the spike
  rate; the paper's text reads as a single step (T = 1, readout ``last``, available in the config) under
  which Table 1's leak and time constant would have no effect (spec B3).
* Spikes are trained through an arctan surrogate gradient; the paper does not say how it trained
  through the threshold (spec B6 #4).
* Noise: additive N(0, 0.1^2) on the input current at every step, training only (spec B6 #1-2).
* Membrane capacitance and post-synaptic current of Table 1 are not used (spec B3 table).
* The loss is MSE over the full image as in the paper (``loss_region: hole`` restricts it to the hole).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inpaint.evaluation.evaluator import EvalTerms
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.models.base import InpaintModule
from inpaint.nets.scnn import SCNN


class SCNNModule(InpaintModule):
    """SC-NN as a LightningModule: MSE to the clean image, one forward pass at inference; the optimizer (the
    paper's Adam 1e-3) is injected from ``model.optimizer``."""

    #: trainer=cpu trains in bf16 autocast (1.5x per step, experiments/results/cpu_speed.md; the LIF dynamics stay
    #: fp32); tests/test_cpu_precision.py holds its loss and gradients to fp32's
    cpu_precision = "bf16-mixed"

    compile_targets = ("net",)

    def __init__(
        self,
        loss_region: str = "full",
        net: dict | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(buckets=buckets, nan_check_every=nan_check_every, optimizer=optimizer, scheduler=scheduler)
        if loss_region not in ("full", "hole"):
            raise ValueError(f"model.loss_region must be 'full' or 'hole', got {loss_region!r}")
        self.save_hyperparameters()
        self.loss_region = loss_region
        net = dict(net or {})
        self.in_channels = int(net.get("in_channels", 3))
        self.net = SCNN(**net)
        #: the raw (uncomposed) output of the last forward call outside training, for ``val/mse_full``
        self.last_prediction: Tensor | None = None

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        x = self.masked_input(image, mask)
        if self.in_channels == 4:
            x = torch.cat([x, mask], dim=1)
        out = self.net(x)
        if not self.training:
            self.last_prediction = out.detach()
        return out

    def loss(self, prediction: Tensor, image: Tensor, mask: Tensor) -> Tensor:
        if self.loss_region == "full":
            return F.mse_loss(prediction, image)
        err = (prediction - image).pow(2) * mask
        return err.sum() / (mask.sum() * image.shape[1]).clamp_min(1.0)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        image, mask = batch["image"], batch["mask"]
        prediction = self(image, mask)
        loss = self.loss(prediction.float(), image, mask)
        self.check_finite(loss, "MSE loss")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/spike_rate", self.net.last_spike_rate)
        return loss

    def evaluation_terms(self, batch: dict, composite: Tensor, stage: str) -> EvalTerms:
        """The paper's full-image MSE of the raw prediction (``<stage>/mse_full``; the composite is scored like
        every model's) and the spike rate of the LIF layer (``<stage>/spike_rate``), per-image means."""
        n = batch["image"].shape[0]
        return EvalTerms(scalars={"mse_full": (F.mse_loss(self.last_prediction.float(), batch["image"].float()), n),
                                  "spike_rate": (self.net.last_spike_rate, n)})

