"""LPIPS v0.1 (Zhang et al. 2018, the ``lpips`` package / PerceptualSimilarity) without torchvision.

``d(x, y)`` for RGB images in [0, 1]: both are mapped to [-1, 1] (``2x - 1``) and through the fixed
``ScalingLayer`` ``(x - shift) / scale`` (the ImageNet mean/std re-expressed for [-1, 1]), run through an
ImageNet backbone, and at each of its five taps the activations are unit-normalised over channels
(``f / (sqrt(sum_c f^2) + 1e-10)``), differenced, squared, weighted per channel by the learned 1x1 "lin"
conv (no bias), averaged over space; the five numbers are summed. Nothing is resized.

Backbones (the ``net`` argument):

* ``"vgg"``: :class:`inpaint.nets.vgg.VGGFeatures` of depth 16 with the taps ``relu1_2, relu2_2, relu3_3,
  relu4_3, relu5_3`` (torchvision's ``vgg16-397923af.pth``, registry entry ``vgg16``);
* ``"alex"``: :class:`AlexNetFeatures`, torchvision's ``alexnet().features`` layout with the taps after
  the five ReLUs (``alexnet-owt-7be5be79.pth``, registry entry ``alexnet``).

The lin weights of v0.1 are the package's own small files (registry entries ``lpips_vgg_v0.1`` and
``lpips_alex_v0.1``): legacy (pre-zip) torch pickles of an ``OrderedDict`` with keys
``lin{k}.model.1.weight`` ``[1, C_k, 1, 1]`` whose storages are tagged ``cuda:0``. PyTorch's
``weights_only`` unpickler reads that legacy format, and ``map_location="cpu"`` (what
:func:`inpaint.weights.load_state_dict` passes) puts them on the CPU, so no CUDA is needed. The lin modules
here are named like the package's (``lin{k}.model`` = ``Dropout``, ``Conv2d``), so the keys match.

Everything is frozen and stays in eval mode (the lin layers' dropout is therefore inactive, as in the
package at test time). Gradients still flow to the inputs.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import Tensor, nn

from inpaint import weights as weights_mod
from inpaint.nets.state_check import state_dict_problems
from inpaint.nets.vgg import VGGFeatures

log = logging.getLogger(__name__)

__all__ = [
    "ALEX_CHANNELS",
    "ALEX_TAPS",
    "LPIPS",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "VGG_CHANNELS",
    "VGG_TAPS",
    "AlexNetFeatures",
    "normalize_channels",
]

#: ScalingLayer constants of LPIPS v0.1, per RGB channel: ``(x - shift) / scale`` on inputs in [-1, 1]
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
#: added to the channel norm before dividing
NORM_EPS = 1e-10

#: the VGG16 layers LPIPS reads and their widths
VGG_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
VGG_CHANNELS = (64, 128, 256, 512, 512)
#: indices in torchvision's ``alexnet().features`` after which LPIPS reads (the five ReLUs) and their widths
ALEX_TAPS = (1, 4, 7, 9, 11)
ALEX_CHANNELS = (64, 192, 384, 256, 256)
#: conv entries of ``alexnet().features``: index -> (c_in, c_out, kernel, stride, padding)
_ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1), 8: (384, 256, 3, 1, 1),
               10: (256, 256, 3, 1, 1)}
_ALEX_POOLS = (2, 5)  # MaxPool2d(3, 2); the last pool (index 12) comes after the taps and is not built

_LIN_REGISTRY = {"vgg": "lpips_vgg_v0.1", "alex": "lpips_alex_v0.1"}
_BACKBONE_REGISTRY = {"vgg": "vgg16", "alex": "alexnet"}


def normalize_channels(f: Tensor, eps: float = NORM_EPS) -> Tensor:
    """``f / (sqrt(sum_c f^2) + eps)`` over dim 1 (LPIPS's ``normalize_tensor``)."""
    return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + eps)


class AlexNetFeatures(nn.Module):
    """Frozen torchvision ``alexnet().features`` up to its fifth ReLU, returning the five LPIPS taps.

    ``features`` is an ``nn.Sequential`` with torchvision's indices (conv 11x11/4 p2 3->64, ReLU, max pool
    3/2, conv 5x5 p2 64->192, ReLU, max pool 3/2, conv 3x3 p1 192->384, ReLU, conv 384->256, ReLU, conv
    256->256, ReLU), so the keys are ``features.{0,3,6,8,10}.{weight,bias}``. Inputs smaller than about
    31x31 pixels leave nothing for the second pool.

    Args:
        weights: ``"imagenet"``: torchvision's ``alexnet-owt-7be5be79.pth`` through :mod:`inpaint.weights`
            (registry entry ``alexnet``); ``"random"``: PyTorch's default init, with a warning; anything
            else: the path of a ``.pth`` state dict with those keys (``classifier.*`` entries are ignored;
            keys without the ``features.`` prefix are accepted).
        offline_hint: the config switch quoted when the ImageNet weights are unavailable.
    """

    def __init__(self, weights: str = "imagenet", offline_hint: str = "eval.metrics without lpips") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(max(ALEX_TAPS) + 1):
            if i in _ALEX_CONVS:
                c_in, c_out, k, s, p = _ALEX_CONVS[i]
                layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
            elif i in _ALEX_POOLS:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.weights = os.fspath(weights)
        self.random_weights = self.weights == "random"
        if self.random_weights:
            log.warning(
                "AlexNetFeatures(weights='random'): an UNTRAINED AlexNet; LPIPS on it is not comparable with "
                "published numbers (for tests and smoke runs only)"
            )
        else:
            source = "alexnet" if self.weights == "imagenet" else self.weights
            self._load(weights_mod.load_state_dict(source, offline_hint=offline_hint), source)
        self.requires_grad_(False)
        super().train(False)

    def _load(self, state: dict[str, Tensor], source: str) -> None:
        if not any(k.startswith("features.") for k in state):
            state = {f"features.{k}": v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        # the final max pool (index 12) has no tensors, so every features.* key must be one of ours
        problems = state_dict_problems(state, {k: v.shape for k, v in self.state_dict().items()})
        if problems:
            raise ValueError(
                f"weights '{source}' are not a torchvision AlexNet 'features' state dict: {'; '.join(problems)}"
            )
        self.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> AlexNetFeatures:
        """Always eval (``mode`` is ignored)."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` ``[B, 3, H, W]`` (already normalised) -> the five tap activations, shallow to deep."""
        out: list[Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in ALEX_TAPS:
                out.append(x)
        return out

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}"


class _LinLayer(nn.Module):
    """The package's ``NetLinLayer(use_dropout=True)``: ``model`` = ``Dropout``, 1x1 ``Conv2d(C, 1)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Frozen LPIPS v0.1 distance between image batches.

    Args:
        net: ``"vgg"`` (VGG16, what LaMa reports) or ``"alex"`` (AlexNet, the package default, used by MAT).
        backbone: the backbone's weights: ``"imagenet"`` (torchvision's file through the registry),
            ``"random"`` (warned) or a ``.pth`` path with torchvision keys.
        lin: the lin weights: ``"v0.1"`` (the package's file through the registry), ``"random"`` (warned;
            non-negative, as trained lin weights are, so distances stay >= 0) or a ``.pth`` path with keys
            ``lin{k}.model.1.weight``.
        offline_hint: the config switch quoted when a weight file is unavailable.

    ``random_weights`` is True when the backbone or the lin weights are random: the numbers are then not
    LPIPS.
    """

    def __init__(
        self,
        net: str = "vgg",
        backbone: str = "imagenet",
        lin: str = "v0.1",
        offline_hint: str = "eval.metrics without lpips",
    ) -> None:
        super().__init__()
        if net not in _LIN_REGISTRY:
            raise ValueError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")
        self.net_name = net
        self.backbone = os.fspath(backbone)
        self.lin = os.fspath(lin)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.net: nn.Module
        if net == "vgg":
            self.net = VGGFeatures(depth=16, outputs=VGG_TAPS, weights=self.backbone, offline_hint=offline_hint)
            self.channels = VGG_CHANNELS
        else:
            self.net = AlexNetFeatures(weights=self.backbone, offline_hint=offline_hint)
            self.channels = ALEX_CHANNELS
        for k, c in enumerate(self.channels):
            self.add_module(f"lin{k}", _LinLayer(c))

        if self.lin == "random":
            log.warning(
                f"LPIPS(net={net!r}, lin='random'): UNTRAINED linear weights; the distances are not LPIPS "
                "(for tests and smoke runs only)"
            )
            with torch.no_grad():
                for layer in self._lins():
                    layer.weight.abs_()
        else:
            source = _LIN_REGISTRY[net] if self.lin == "v0.1" else self.lin
            self._load_lins(weights_mod.load_state_dict(source, offline_hint=offline_hint), source)
        self.random_weights = self.lin == "random" or self.backbone == "random"
        self.requires_grad_(False)
        super().train(False)

    def _lins(self) -> list[nn.Conv2d]:
        return [getattr(self, f"lin{k}").model[1] for k in range(len(self.channels))]

    def _load_lins(self, state: dict[str, Tensor], source: str) -> None:
        expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(self.channels)}
        problems = state_dict_problems(state, expected)
        if problems:
            raise ValueError(
                f"weights '{source}' are not LPIPS v0.1 lin weights for net '{self.net_name}': {'; '.join(problems)}"
            )
        with torch.no_grad():
            for k, layer in enumerate(self._lins()):
                layer.weight.copy_(state[f"lin{k}.model.1.weight"])

    def train(self, mode: bool = True) -> LPIPS:
        """Always eval (``mode`` is ignored)."""
        return super().train(False)

    def taps(self, x: Tensor) -> list[Tensor]:
        """The five backbone activations of ``x`` in [0, 1] (after ``2x - 1`` and the ScalingLayer)."""
        dtype = self.shift.dtype
        h = ((2.0 * x.to(dtype) - 1.0) - self.shift) / self.scale
        out = self.net(h)
        return list(out.values()) if isinstance(out, dict) else list(out)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x``, ``y`` ``[B, 3, H, W]`` RGB in [0, 1] -> per-image distance ``[B]`` float32."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two RGB batches [B, 3, H, W] of one shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        b = x.shape[0]
        feats = self.taps(torch.cat([x, y], 0))
        total = x.new_zeros(b, dtype=torch.float32)
        for f, lin in zip(feats, self._lins(), strict=True):
            f = normalize_channels(f)
            diff = (f[:b] - f[b:]) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3)).float()
        return total

    def extra_repr(self) -> str:
        return f"net={self.net_name!r}, backbone={self.backbone!r}, lin={self.lin!r}"
