"""The FID Inception network: InceptionV3 of the TensorFlow graph of 2015-12-05, as FID measures it.

The TTUR reference FID runs Google's frozen ``classify_image_graph_def.pb`` (``inception-2015-12-05.tgz``)
and reads its 2048-d ``pool_3`` output. pytorch-fid and torch-fidelity ship the same network converted to
PyTorch in torchvision's ``Inception3`` layout, and :class:`FIDInceptionV3` is that layout written out here
(torchvision is never imported), so their weight file loads into it key for key:

* ``BasicConv2d`` = conv without bias, BatchNorm with ``eps=0.001``, ReLU;
* the stem ``Conv2d_1a_3x3 ... Conv2d_4a_3x3`` with two 3x3/2 max pools, then ``Mixed_5b ... Mixed_7c``;
* where the TF graph differs from torchvision's blocks: the average pools of the A, C and first E blocks
  leave the zero padding out of the average (``count_include_pad=False``), and the pool branch of the
  last block (``Mixed_7c``) is a 3x3/1 *max* pool;
* ``fc`` (2048 -> 1008, the graph's classes) is kept so the file loads strictly; FID never uses it.

The state dict holds exactly 472 tensors (94 conv blocks x 5 + ``fc.weight``/``fc.bias``), 23,885,392
floats. BatchNorm here is a fixed affine map (:class:`FrozenBatchNorm2d`): it has no
``num_batches_tracked`` counter, and such entries in a file are ignored when loading.

:meth:`FIDInceptionV3.forward` follows torch-fidelity's TF-exact pipeline: a float image in [0, 1] is
first quantised to the 8-bit levels a saved PNG would hold, resized to 299x299 with TensorFlow 1's legacy
bilinear resize (:func:`tf1_resize_bilinear`; pytorch-fid's ``F.interpolate`` puts pixel centres
elsewhere, which changes FIDs of 256/512 px images), mapped to [-1, 1] by ``(x - 128) / 128`` and run to
the global average pool after ``Mixed_7c`` ("pool3").

Weights: ``"fid_inception"`` is the registry entry of pytorch-fid's converted file
(``pt_inception-2015-12-05-6726825d.pth``); torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``
has the same keys and can be given as a path. ``"random"`` is only for tests and smoke runs: features of an
untrained network give numbers that are not FIDs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint import weights as weights_mod
from inpaint.nets.state_check import state_dict_problems

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_DIM",
    "INPUT_SIZE",
    "NUM_CLASSES",
    "BasicConv2d",
    "FIDInceptionV3",
    "FrozenBatchNorm2d",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "inception_state_dict_shapes",
    "quantize_8bit",
    "tf1_resize_bilinear",
]

#: length of the pool3 feature vector
FEATURE_DIM = 2048
#: the side the graph resizes every image to
INPUT_SIZE = 299
#: classes of the 2015-12-05 graph's softmax (1000 ImageNet classes plus 8 unused)
NUM_CLASSES = 1008
#: registry entry of pytorch-fid's converted weights
REGISTRY_NAME = "fid_inception"
_BN_EPS = 0.001


# ------------------------------------------------------------------------------------------- preprocessing
def quantize_8bit(x: Tensor) -> Tensor:
    """``round(clamp(x, 0, 1) * 255)``: the 8-bit level (as a float in 0..255) that a saved PNG would hold."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0)


def _tf1_axis(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices (lo, hi) and weights of ``hi`` for one axis, as TF1 computes them (in float32)."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lo = torch.floor(src)
    frac = src - lo
    lo_i = lo.long().clamp_(0, in_size - 1)
    hi_i = (lo_i + 1).clamp_(max=in_size - 1)
    return lo_i.to(device), hi_i.to(device), frac.to(device)


def tf1_resize_bilinear(x: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinear resize exactly as TensorFlow 1's ``tf.image.resize_bilinear(align_corners=False)``.

    Output pixel ``d`` reads source coordinate ``s = d * (in / out)`` (no half-pixel offset; computed in
    float32 like TF), interpolating between ``lo = floor(s)`` and ``hi = min(lo + 1, in - 1)`` with weight
    ``s - lo`` on ``hi``; rows first, then columns, as TF does. Equal sizes are the identity.

    Args:
        x: ``[B, C, H, W]`` floating-point tensor.
        size: output side, or ``(height, width)``.
    """
    if x.dim() != 4 or not torch.is_floating_point(x):
        raise ValueError(f"tf1_resize_bilinear expects a floating [B, C, H, W] tensor, got {x.dtype} {tuple(x.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x
    y_lo, y_hi, y_frac = _tf1_axis(in_h, out_h, x.device)
    x_lo, x_hi, x_frac = _tf1_axis(in_w, out_w, x.device)
    x_frac = x_frac.to(x.dtype).view(1, 1, 1, out_w)
    y_frac = y_frac.to(x.dtype).view(1, 1, out_h, 1)
    rows_lo = x.index_select(2, y_lo)
    rows_hi = x.index_select(2, y_hi)
    top_l, top_r = rows_lo.index_select(3, x_lo), rows_lo.index_select(3, x_hi)
    bot_l, bot_r = rows_hi.index_select(3, x_lo), rows_hi.index_select(3, x_hi)
    top = top_l + (top_r - top_l) * x_frac
    bottom = bot_l + (bot_r - bot_l) * x_frac
    return top + (bottom - top) * y_frac


# ------------------------------------------------------------------------------------------- blocks
class FrozenBatchNorm2d(nn.Module):
    """Inference-only BatchNorm: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``.

    Same tensors, names and default values as ``nn.BatchNorm2d`` (weight 1, bias 0, mean 0, var 1), minus
    the ``num_batches_tracked`` counter a frozen network has no use for.
    """

    def __init__(self, channels: int, eps: float = _BN_EPS) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU, keys ``conv.weight`` and ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = FrozenBatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    # TF's SAME-padded average pool divides by the number of real pixels under the window
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 block (``Mixed_5b/5c/5d``): 64 + 64 + 96 + ``pool_features`` output channels."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``): 384 + 96 + ``c_in`` output channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs (``Mixed_6b..6e``): 4 x 192 output channels."""

    def __init__(self, c_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = conv(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``): 320 + 192 + ``c_in`` output channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 convs (``Mixed_7b``, ``Mixed_7c``): 320 + 768 + 768 + 192 channels.

    ``pool="avg"`` (``Mixed_7b``) averages over real pixels only; ``pool="max"`` (``Mixed_7c``) is the max
    pool of the TF graph, which pytorch-fid and torch-fidelity reproduce.
    """

    def __init__(self, c_in: int, pool: str = "avg") -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = _max_pool_same(x) if self.pool == "max" else _avg_pool_tf(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


# ------------------------------------------------------------------------------------------- network
def _add_layers(net: nn.Module) -> None:
    """Create the torchvision-named submodules on ``net``, in state-dict order."""
    net.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
    net.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
    net.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
    net.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
    net.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
    net.Mixed_5b = InceptionA(192, pool_features=32)
    net.Mixed_5c = InceptionA(256, pool_features=64)
    net.Mixed_5d = InceptionA(288, pool_features=64)
    net.Mixed_6a = InceptionB(288)
    net.Mixed_6b = InceptionC(768, channels_7x7=128)
    net.Mixed_6c = InceptionC(768, channels_7x7=160)
    net.Mixed_6d = InceptionC(768, channels_7x7=160)
    net.Mixed_6e = InceptionC(768, channels_7x7=192)
    net.Mixed_7a = InceptionD(768)
    net.Mixed_7b = InceptionE(1280, pool="avg")
    net.Mixed_7c = InceptionE(2048, pool="max")
    net.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)


class FIDInceptionV3(nn.Module):
    """Frozen FID InceptionV3: images in [0, 1] -> 2048-d pool3 features.

    Args:
        weights: ``"fid_inception"``: pytorch-fid's converted TF weights through :mod:`inpaint.weights`
            (downloaded once into the torch hub cache, or an error naming the file, where to put it and
            ``offline_hint``); ``"random"``: PyTorch's default init, with a warning (the numbers are then
            not FIDs); anything else: the path of a ``.pth`` state dict with the same keys (e.g.
            torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``).
        offline_hint: the config switch quoted when the weights are unavailable.

    Loading is strict: ``*.num_batches_tracked`` entries are ignored, any other missing or unexpected
    key or wrong shape is refused with the keys named. The module is frozen (no parameter requires grad)
    and stays in eval mode whatever ``train()`` says.
    """

    # created by _add_layers, in this (state-dict) order
    Conv2d_1a_3x3: BasicConv2d
    Conv2d_2a_3x3: BasicConv2d
    Conv2d_2b_3x3: BasicConv2d
    Conv2d_3b_1x1: BasicConv2d
    Conv2d_4a_3x3: BasicConv2d
    Mixed_5b: InceptionA
    Mixed_5c: InceptionA
    Mixed_5d: InceptionA
    Mixed_6a: InceptionB
    Mixed_6b: InceptionC
    Mixed_6c: InceptionC
    Mixed_6d: InceptionC
    Mixed_6e: InceptionC
    Mixed_7a: InceptionD
    Mixed_7b: InceptionE
    Mixed_7c: InceptionE
    fc: nn.Linear

    def __init__(self, weights: str = REGISTRY_NAME, offline_hint: str = "eval.metrics without fid/kid/ids") -> None:
        super().__init__()
        _add_layers(self)

        self.weights = os.fspath(weights)
        self.random_weights = self.weights == "random"
        if self.random_weights:
            log.warning(
                "FIDInceptionV3(weights='random'): an UNTRAINED Inception network; FID/KID/IDS computed on "
                "its features are NOT FIDs and cannot be compared with any published number (for tests and "
                "smoke runs only)"
            )
        else:
            state = weights_mod.load_state_dict(self.weights, offline_hint=offline_hint)
            self._load(state, self.weights)
        self.requires_grad_(False)
        super().train(False)

    def _load(self, state: dict[str, Tensor], source: str) -> None:
        state = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
        problems = state_dict_problems(state, {k: v.shape for k, v in self.state_dict().items()})
        if problems:
            raise ValueError(
                f"weights '{source}' are not an FID InceptionV3 state dict (pytorch-fid / torch-fidelity layout): "
                + "; ".join(problems)
            )
        self.load_state_dict(state, strict=True)

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Always eval: the extractor is a fixed function (``mode`` is ignored)."""
        return super().train(False)

    def trunk(self, x: Tensor) -> Tensor:
        """The network alone: ``x`` ``[B, 3, H, W]`` already resized and in [-1, 1] -> ``[B, 2048]``.

        Any ``H, W >= 75`` runs (FID always feeds 299x299; smaller sizes are for tests).
        """
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
            x = layer(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def preprocess(self, x: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] (float) or 0..255 (uint8) -> the 299x299 network input in [-1, 1]:
        8-bit quantisation, TF1 bilinear resize, ``(x - 128) / 128``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FIDInceptionV3 expects RGB images [B, 3, H, W], got shape {tuple(x.shape)}")
        dtype = self.Conv2d_1a_3x3.conv.weight.dtype
        if x.dtype == torch.uint8:
            levels = x.to(dtype)
        elif torch.is_floating_point(x):
            levels = quantize_8bit(x.to(dtype))
        else:
            raise ValueError(f"FIDInceptionV3 expects float images in [0, 1] or uint8, got {x.dtype}")
        levels = tf1_resize_bilinear(levels, INPUT_SIZE)
        return (levels - 128.0) / 128.0

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, 3, H, W]`` RGB in [0, 1] (or uint8 0..255) -> pool3 features ``[B, 2048]`` float32."""
        return self.trunk(self.preprocess(x)).float()

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}"


def inception_state_dict_shapes() -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of :class:`FIDInceptionV3`'s state dict, in order, without allocating weights."""
    net = nn.Module()
    with torch.device("meta"):
        _add_layers(net)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}
