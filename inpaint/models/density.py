"""Density models that inpaint pixel by pixel ("Beyond CNNs", Jan & Noor 2024; PixelRNN, van den Oord et al. 2016).

One LightningModule, :class:`DensityModule`, hosts the four autoregressive nets of spec A5-A8 (``model.net.arch``):

* ``pixelcnn``: the paper's window Pixel CNN (a 5x5 causal window of 24 neighbours, R -> G -> B heads),
  :class:`~inpaint.nets.pixelcnn.WindowPixelCNN`;
* ``row_lstm`` / ``diag_bilstm``: PixelRNN's Row LSTM and Diagonal BiLSTM (the paper says it implemented them but
  reports no numbers), :mod:`inpaint.nets.pixelrnn`;
* ``flat_row_lstm``: the paper's row-flattened LSTM over the sub-pixels as 256-way one-hot inputs,
  :class:`~inpaint.nets.flat_lstm.RowFlattenedLSTM`.

Training (spec A5): the models are unconditional densities of whole images. Teacher forcing on the full, unmasked
image; the loss is the mean cross-entropy over every sub-pixel (``train/loss`` in nats, ``train/bpd`` in bits per
dimension). The batch's mask plays no part in training. Validation and test also report the negative
log-likelihood of the ground truth in bits per dimension, over the whole image (``nll_bpd``) and over the hole only
(``nll_bpd_hole``).

Inpainting (the paper's greedy procedure): only the hole sub-pixels are generated, in raster order and R, G, B
within a pixel, each conditioned on everything before it (known pixels and the values already generated); known
pixels are never changed. The inference procedures are the decoding modes: ``argmax`` (the paper's, the default),
``sample`` (``temperature``; each image draws from its own generator seeded by the run seed and its index, so its
fill does not depend on its batch) and ``mean`` (the expected level, rounded to 8 bits; usually a lower L2). Every
net fills with its fast procedure, which recomputes only what a sub-pixel depends on and is tested equal to one
full forward per generated sub-pixel (:func:`inpaint.nets.autoregressive.naive_fill`).

Departures from the paper, each a config option: the sizes of every net (the paper gives them only for the
row-flattened LSTM, hidden 64); Adam at 1e-3 with the schedules of the ``experiment=*_cifar`` configs (the paper
gives none); no hue/saturation/contrast/blur augmentation (flips only). The paper's L2 numbers do not fit its
formula (spec A2): compare ``mse_hole`` / ``maem_hole`` between models run here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inpaint.evaluation.evaluator import EvalTerms
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.models.base import InpaintModule, Procedure, compose
from inpaint.nets.autoregressive import DECODE_MODES, Decoder, DensityNet, quantize, to_levels
from inpaint.nets.flat_lstm import RowFlattenedLSTM
from inpaint.nets.pixelcnn import WindowPixelCNN
from inpaint.nets.pixelrnn import DiagonalBiLSTMNet, RowLSTMNet

#: ``model.net.arch`` -> the net class; the other keys of ``model.net`` are its constructor arguments
ARCHITECTURES: dict[str, type[DensityNet]] = {
    "pixelcnn": WindowPixelCNN,
    "row_lstm": RowLSTMNet,
    "diag_bilstm": DiagonalBiLSTMNet,
    "flat_row_lstm": RowFlattenedLSTM,
}


def build_density_net(net: Mapping[str, Any]) -> DensityNet:
    options = dict(net)
    arch = options.pop("arch", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"model.net.arch={arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](**options)
    except TypeError as e:  # an option the net does not take: name it with the config path
        raise ValueError(f"model.net (arch={arch}): {e}") from e


def cross_entropy_map(logits: Tensor, x: Tensor) -> Tensor:
    """Per-sub-pixel negative log-likelihood (nats) ``[B,3,H,W]`` of the levels of ``x`` under ``logits``
    ``[B,3,256,H,W]``."""
    return F.cross_entropy(logits.float().transpose(1, 2), to_levels(x), reduction="none")


@dataclass(frozen=True)
class DecodeOptions:
    """The density models' inference option: ``temperature`` of the ``sample`` decoding
    (``softmax(logits / temperature)``; 1 = the model's own distribution)."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ValueError(
                f"temperature={self.temperature}: give a positive number (1 = the model's own distribution)"
            )


class DensityModule(InpaintModule):
    """An autoregressive density net trained by teacher forcing and inpainting by sequential decoding.

    Args:
        net: ``arch`` (``pixelcnn`` | ``row_lstm`` | ``diag_bilstm`` | ``flat_row_lstm``) and the net's arguments.
        optimizer, scheduler: injected (``model.optimizer``: Adam 1e-3 in the configs; the paper gives no rate).
        decode: the default inference procedure: ``argmax`` | ``sample`` | ``mean``.
        temperature: of ``sample`` (``softmax(logits / temperature)``); 1 = the model's distribution.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        decode: str = "argmax",
        temperature: float = 1.0,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(buckets=buckets, nan_check_every=nan_check_every, optimizer=optimizer, scheduler=scheduler)
        self.save_hyperparameters()
        self.net = build_density_net(net)
        self.arch = str(dict(net)["arch"])
        if decode not in DECODE_MODES:
            raise ValueError(f"model.decode={decode!r}: choose one of {', '.join(DECODE_MODES)}")
        self.decode = str(decode)
        self.inference_opts = DecodeOptions(temperature=float(temperature))

    compile_targets = ("net",)
    #: the best checkpoint is the one with the lowest validation NLL (bits per sub-pixel)
    checkpoint_monitor = ("val/nll_bpd", "min")

    InferenceOptions = DecodeOptions

    @property
    def temperature(self) -> float:
        return self.inference_opts.temperature

    # ----------------------------------------------------------------------------------- inference procedures
    def procedures(self) -> list[Procedure]:
        """The three decodings of the hole sub-pixels (``model.decode`` is the default)."""
        return [Procedure(mode, partial(self.fill, decode=mode)) for mode in DECODE_MODES]

    def default_procedure(self) -> str:
        return self.decode

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """The image filled by the active decoding (known pixels as quantized to 8 bits)."""
        return self.fill(image, mask, None, decode=self.procedure)

    @torch.no_grad()
    def fill(self, image: Tensor, mask: Tensor, index: Tensor | None = None, decode: str = "argmax") -> Tensor:
        """Generate the hole sub-pixels (mask > 0.5) one by one with ``decode`` and paste them into ``image``."""
        if image.ndim != 4 or image.shape[1] != 3 or mask.shape != (image.shape[0], 1, *image.shape[2:]):
            raise ValueError(
                f"{type(self).__name__} inpaints RGB images [B,3,H,W] with a mask [B,1,H,W]; got image "
                f"{tuple(image.shape)} and mask {tuple(mask.shape)}"
            )
        hole = mask[:, 0] > 0.5
        noise = None
        if decode == "sample":
            if index is None:
                index = torch.arange(image.shape[0])
            # one uniform number per sub-pixel of each image, from that image's own generator
            gens = self.sample_generators(index.cpu())
            noise = torch.stack([torch.rand(image.shape[1:], generator=g, dtype=torch.float64) for g in gens])
            noise = noise.to(image.device)
        decoder = Decoder(decode, self.temperature, noise, size=tuple(image.shape[-2:]))
        training = self.net.training
        self.net.eval()  # decoding is deterministic: no dropout, whatever mode the caller left the module in
        try:
            filled = self.net.fill(quantize(image), hole, decoder)
        finally:
            self.net.train(training)
        return compose(filled.to(image.dtype), image, (hole[:, None]).to(image.dtype))

    # ----------------------------------------------------------------------------------- training
    def nll_map(self, image: Tensor) -> Tensor:
        """Teacher-forced negative log-likelihood (nats) of every sub-pixel of ``image``, ``[B,3,H,W]``."""
        x = quantize(image)
        return cross_entropy_map(self.net(x), x)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.nll_map(batch["image"]).mean()
        self.check_finite(loss, "cross-entropy")
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bpd", loss.detach() / math.log(2.0))
        return loss

    def evaluation_terms(self, batch: dict, composite: Tensor, stage: str) -> EvalTerms:
        """The test-set negative log-likelihood in bits per sub-pixel, over the whole image (``nll_bpd``) and over
        the hole's sub-pixels (``nll_bpd_hole``), averaged over sub-pixels."""
        nll = self.nll_map(batch["image"]) / math.log(2.0)  # bits per sub-pixel
        hole = (batch["mask"] > 0.5).expand_as(nll)
        scalars = {"nll_bpd": (nll.mean(), nll.numel())}
        n_hole = int(hole.sum())
        if n_hole:
            scalars["nll_bpd_hole"] = (nll[hole].mean(), n_hole)
        return EvalTerms(scalars=scalars)

