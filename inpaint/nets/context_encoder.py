"""Context-encoder networks ("Beyond CNNs", Jan & Noor 2024; Pathak et al. 2016): plain ``nn.Module``s.

Follows ``specs/cifar-models-and-scnn.md`` Part A (A3 CE-AE, A4.1 generators, A4.2 overlap weights,
A4.3 discriminator). Everything works in the model range [-1, 1] (tanh outputs); the hole of the input is
expected to be 0 already. No training logic here.

Geometry. Two setups are supported, each with a centred square hole:

* 32x32 images, 8x8 hole (rows/cols 12..19), the prediction window grown by ``overlap`` (4: 16x16, rows 8..23);
* 128x128 images, 64x64 hole (Pathak's setting), window 64 + 2*overlap (72 with Pathak's ``overlapPred=4``).

The depth follows the size: the encoder has ``log2(size / 4)`` down-sampling stages (3 at 32 px, 5 at 128 px) so
that it always ends on a 4x4 map; the decoder starts from ``out / 2**n`` (the largest ``n`` that leaves an
integer side >= 4: 4x4 for outputs 8, 16, 64; 9x9 for 72) and doubles ``n`` times.

Stage widths start at ``width`` (64) and double per stage, capped at 512 (VGG's cap; **CHOICE**): 64/128/256 at
32 px (the spec's A3 table), 64/128/256/512/512 at 128 px (Pathak's 128-px encoder is 64/64/128/256/512 with a
4000-wide bottleneck: a departure, written down here and in the model's docstring).

Backbones (``backbone=``; every width below 32 px is a **CHOICE**, spec A4.1 gives only the idea):

* ``vgg`` (default; A3 and G-VGG): per stage Conv3x3-BN-ReLU twice, then MaxPool 2x2 (``variant=pool``) or a
  Conv3x3 stride-2-BN-ReLU of the same width (``variant=strided``). Convs before BN have no bias.
* ``pathak`` (G-Pathak32): per stage Conv4x4 stride 2, LeakyReLU 0.2, BN on all but the first, no biases; its
  bottleneck is the conv form (Conv4x4 valid, BN, LeakyReLU 0.2). ``variant`` has no effect.
* ``resnet``: stem Conv3x3-BN-ReLU at ``width``; per stage ``blocks`` CIFAR BasicBlocks (two Conv3x3-BN, identity
  or 1x1-conv-BN shortcut), the first stage at stride 1 and the others starting with stride 2, then one more
  stride-2 BasicBlock at the last width to reach 4x4. ``variant`` has no effect (ResNet downsamples by stride).
* ``inception``: stem Conv3x3-BN-ReLU at ``width``; per stage ``blocks`` Inception-v1-style blocks of output width
  ``C`` = the stage width, four branches: 1x1 (C/4); 1x1 (C/4) -> 3x3 (C/2); 1x1 (C/8) -> 3x3 -> 3x3 (C/8, the
  5x5 branch as two 3x3, the paper uses 3x3 filters only); MaxPool3x3 s1 -> 1x1 (C/8); each conv BN + ReLU, the
  branches concatenated; then the stage's downsampling as in ``vgg`` (pool or strided).

Parameter counts (32 px, width 64, B = 512, blocks 2; exact, tests/test_context_encoder_nets.py):

encoder vgg pool (spec: "convs about 1.14 M") / strided      1,146,304 / 1,921,344
encoder pathak (3 stride-2 convs)                              659,200
encoder resnet                                               4,021,824
encoder inception pool / strided                               344,768 / 1,119,808
bottleneck B=256 / 512 / 1024 / 2048 (spec FC1 2.10 M, 8.4 M) 1,049,088 / 2,098,176 / 4,196,352 / 8,392,704
decoder fc 8x8 / 16x16 (spec FC2 0.10 M; B -> 768)              98,496 / 393,984
decoder deconv (G-VGG) 8x8 / 16x16                           2,781,059 / 2,947,523
decoder pathak 8x8 / 16x16                                   2,109,952 / 2,628,352
generator vgg+fc, overlap 0 / 4 (CE-AE / CE-AE-ov)           3,342,976 / 3,638,464
generator vgg+deconv, overlap 0 / 4 (G-VGG)                  6,025,539 / 6,192,003
generator pathak, overlap 0 / 4 (G-Pathak32)                 4,867,328 / 5,385,728
generator resnet+fc overlap 0 / resnet+deconv overlap 4      6,218,496 / 9,067,523
generator inception+fc overlap 0 / +deconv overlap 4         2,541,440 / 5,390,467
discriminator image 32 px / patch 16 px / image 128 px       6,273,025 / 372,225 / 8,633,345

At 128 px (overlap 4, window 72) the generators are larger: vgg+fc 21,581,440, vgg+deconv 38,450,051 (its first
Linear maps B to 512x9x9), pathak 35,011,072.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

BACKBONES = ("vgg", "pathak", "resnet", "inception")
VARIANTS = ("pool", "strided")
DECODERS = ("fc", "deconv", "pathak")
DROPOUTS = ("bottleneck", "everywhere", "none")
D_INPUTS = ("image", "patch")
#: image side -> centre hole side
SUPPORTED_SIZES = {32: 8, 128: 64}
MAX_WIDTH = 512
SUPPORTED_HINT = (
    "context encoders support data.image_size=32 with mask=cifar_center (8x8 centre hole), or "
    "data.image_size=128 with a 64-px centre hole (mask=center mask.size=64 +mask.overlap=4)"
)


# ------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Geometry:
    """Where the hole and the prediction window of a context encoder lie in a square image."""

    image_size: int
    hole: int
    overlap: int

    @property
    def window(self) -> int:
        """Side of the predicted square: the hole plus ``overlap`` px on each side."""
        return self.hole + 2 * self.overlap

    @property
    def hole_slice(self) -> slice:
        top = (self.image_size - self.hole) // 2
        return slice(top, top + self.hole)

    @property
    def window_slice(self) -> slice:
        s = self.hole_slice
        return slice(s.start - self.overlap, s.stop + self.overlap)

    @property
    def hole_in_window(self) -> slice:
        """The hole's rows/cols inside the window."""
        return slice(self.overlap, self.overlap + self.hole)


def geometry(image_size: int, overlap: int = 0, hole: int | None = None) -> Geometry:
    """The :class:`Geometry` of a supported setup; a ValueError naming the supported ones otherwise."""
    expected = SUPPORTED_SIZES.get(int(image_size))
    if expected is None or (hole is not None and int(hole) != expected):
        got = f"image size {image_size}" + ("" if hole is None else f" with a {hole}-px hole")
        raise ValueError(f"{got}: {SUPPORTED_HINT}")
    if isinstance(overlap, bool) or int(overlap) != overlap or not 0 <= int(overlap) <= expected // 2:
        raise ValueError(f"overlap={overlap!r}: use an integer in 0..{expected // 2} px (4 = the paper's 16x16 window)")
    return Geometry(int(image_size), expected, int(overlap))


def hole_slice(image_size: int) -> slice:
    return geometry(image_size).hole_slice


def window_slice(image_size: int, overlap: int) -> slice:
    return geometry(image_size, overlap).window_slice


def overlap_weight_map(window: int, hole: int, overlap_weight: float = 20.0) -> Tensor:
    """float32 ``[window, window]``: 1 on the centred ``hole`` x ``hole`` square, ``overlap_weight`` on the ring
    around it (spec A4.2; the paper penalises the overlap "more than 20 times")."""
    if window < hole or (window - hole) % 2:
        raise ValueError(f"window {window} must be the hole {hole} plus an equal ring on each side")
    ring = (window - hole) // 2
    weights = torch.full((window, window), float(overlap_weight))
    weights[ring : ring + hole, ring : ring + hole] = 1.0
    return weights


def stage_widths(width: int, stages: int) -> list[int]:
    """Width of each encoder stage: ``width`` doubled per stage, capped at 512."""
    return [min(width * 2**i, MAX_WIDTH) for i in range(stages)]


def _down_stages(image_size: int) -> int:
    n = int(round(math.log2(image_size / 4)))
    if n < 1 or 4 * 2**n != image_size:
        raise ValueError(f"image size {image_size}: {SUPPORTED_HINT}")
    return n


def decoder_plan(out: int) -> tuple[int, int]:
    """``(start side, doublings)`` of a decoder that ends on ``out`` px: the most doublings that leave an
    integer start side >= 4."""
    n = 0
    while out % 2 ** (n + 1) == 0 and out // 2 ** (n + 1) >= 4:
        n += 1
    if n == 0:
        raise ValueError(f"a decoder cannot end on {out} px (needs an even side >= 8)")
    return out // 2**n, n


def pathak_init(module: nn.Module) -> nn.Module:
    """Pathak's init, applied to every submodule: conv / transposed-conv weights N(0, 0.02) (biases 0),
    BatchNorm gamma N(1, 0.02), beta 0 (pathak22/context-encoder train.lua:58-67). Linear layers keep
    PyTorch's default init (Pathak's nets have none). Returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(map(str, choices))}")


def _drop(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, kernel: int = 3, drop: float = 0.0) -> list[nn.Module]:
    pad = (kernel - 1) // 2
    return [nn.Conv2d(c_in, c_out, kernel, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True), *_drop(drop)]


# ------------------------------------------------------------------------------------------ encoders
class BasicBlock(nn.Module):
    """CIFAR ResNet basic block: Conv3x3-BN-ReLU-Conv3x3-BN plus shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, drop: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.out = nn.Sequential(nn.ReLU(True), *_drop(drop))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class InceptionBlock(nn.Module):
    """Inception-v1-style block (3x3 filters only) with ``c_out`` = C/4 + C/2 + C/8 + C/8 output channels."""

    def __init__(self, c_in: int, c_out: int, drop: float = 0.0) -> None:
        super().__init__()
        if c_out % 8:
            raise ValueError(f"an inception block needs a width divisible by 8, got {c_out}")
        q, h, e = c_out // 4, c_out // 2, c_out // 8
        self.b1 = nn.Sequential(*_conv_bn_relu(c_in, q, kernel=1))
        self.b3 = nn.Sequential(*_conv_bn_relu(c_in, q, kernel=1), *_conv_bn_relu(q, h))
        self.b5 = nn.Sequential(*_conv_bn_relu(c_in, e, kernel=1), *_conv_bn_relu(e, e), *_conv_bn_relu(e, e))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn_relu(c_in, e, kernel=1))
        self.drop = nn.Sequential(*_drop(drop))

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1))


class Encoder(nn.Module):
    """Masked image ``[N,3,S,S]`` -> feature map ``[N, C, 4, 4]`` (``out_channels`` = C). See the module docstring
    for the backbones.

    Args:
        image_size: 32 or 128 (3 or 5 down-sampling stages).
        backbone: ``vgg`` | ``pathak`` | ``resnet`` | ``inception``.
        variant: ``pool`` (MaxPool 2x2) | ``strided`` (Conv3x3 stride 2): the downsampling of vgg/inception.
        width: first stage width (64; the paper: "32 or 64"), doubled per stage up to 512.
        blocks: residual / inception blocks per stage (resnet, inception).
        dropout: probability after every activation (the literal "dropout for every activation"); 0 = none.
    """

    def __init__(
        self,
        image_size: int = 32,
        backbone: str = "vgg",
        variant: str = "pool",
        width: int = 64,
        blocks: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_choice("backbone", backbone, BACKBONES)
        _check_choice("variant", variant, VARIANTS)
        if blocks < 1 or width < 1:
            raise ValueError(f"width={width} and blocks={blocks} must be >= 1")
        widths = stage_widths(width, _down_stages(image_size))
        layers: list[nn.Module] = []
        c = 3
        if backbone == "pathak":
            for i, w in enumerate(widths):
                layers += [nn.Conv2d(c, w, 4, 2, 1, bias=False)]
                layers += [nn.BatchNorm2d(w)] if i else []
                layers += [nn.LeakyReLU(0.2, True), *_drop(dropout)]
                c = w
        elif backbone == "resnet":
            layers += _conv_bn_relu(c, widths[0], drop=dropout)
            c = widths[0]
            for i, w in enumerate(widths):
                for b in range(blocks):
                    layers.append(BasicBlock(c, w, 2 if (i and not b) else 1, dropout))
                    c = w
            layers.append(BasicBlock(c, c, 2, dropout))
        else:
            if backbone == "inception":
                layers += _conv_bn_relu(c, widths[0], drop=dropout)
                c = widths[0]
            for w in widths:
                if backbone == "vgg":
                    layers += _conv_bn_relu(c, w, drop=dropout) + _conv_bn_relu(w, w, drop=dropout)
                else:
                    for _ in range(blocks):
                        layers.append(InceptionBlock(c, w, dropout))
                        c = w
                c = w
                layers += [nn.MaxPool2d(2)] if variant == "pool" else _conv_bn_relu(w, w, stride=2, drop=dropout)
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Bottleneck(nn.Module):
    """``[N, C, 4, 4]`` -> ``[N, B]``: FC1 of spec A3 (Linear 4096->B, BN1d, ReLU, dropout) or its conv form
    (Conv4x4 valid, BN, activation; Pathak's, with LeakyReLU 0.2). Both hold the same number of weights.

    Args:
        activation: ``relu`` | ``lrelu`` (LeakyReLU 0.2).
    """

    def __init__(
        self, in_channels: int, size: int = 512, form: str = "fc", activation: str = "relu", dropout: float = 0.5
    ) -> None:
        super().__init__()
        _check_choice("bottleneck form", form, ("fc", "conv"))
        _check_choice("bottleneck activation", activation, ("relu", "lrelu"))
        if size < 1:
            raise ValueError(f"bottleneck={size}: use a positive width (the paper sweeps 256, 512, 1024, 2048)")
        act = nn.ReLU(True) if activation == "relu" else nn.LeakyReLU(0.2, True)
        if form == "fc":
            layers = [nn.Flatten(), nn.Linear(in_channels * 16, size, bias=False), nn.BatchNorm1d(size)]
        else:
            layers = [nn.Conv2d(in_channels, size, 4, bias=False), nn.BatchNorm2d(size), nn.Flatten()]
        self.net = nn.Sequential(*layers, act, *_drop(dropout))
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# ------------------------------------------------------------------------------------------ decoders
class FCDecoder(nn.Module):
    """FC2 of spec A3: Linear B -> 3*out*out, reshape, tanh (out = 8: 192 outputs; 16 with the overlap: 768)."""

    def __init__(self, bottleneck: int, out: int) -> None:
        super().__init__()
        self.out = out
        self.fc = nn.Linear(bottleneck, 3 * out * out)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.fc(z).view(-1, 3, self.out, self.out))


class DeconvDecoder(nn.Module):
    """G-VGG decoder of spec A4.1: Linear B -> C*s*s, BN1d, ReLU, reshape; per doubling ConvTranspose4x4 s2 p1
    (C -> C/2), BN, ReLU, Conv3x3, BN, ReLU; then Conv3x3 -> 3 and tanh. C = the encoder's last width."""

    def __init__(self, bottleneck: int, out: int, channels: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.start, n = decoder_plan(out)
        self.channels = channels
        self.fc = nn.Sequential(
            nn.Linear(bottleneck, channels * self.start**2, bias=False),
            nn.BatchNorm1d(channels * self.start**2),
            nn.ReLU(True),
            *_drop(dropout),
        )
        layers: list[nn.Module] = []
        c = channels
        for _ in range(n):
            w = max(c // 2, 1)
            layers += [nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True), *_drop(dropout)]
            layers += _conv_bn_relu(w, w, drop=dropout)
            c = w
        layers += [nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.fc(z).view(-1, self.channels, self.start, self.start))


class PathakDecoder(nn.Module):
    """G-Pathak32 decoder: ConvTranspose s x s valid B -> C (s = the start side, 4), BN, ReLU; per doubling
    ConvTranspose4x4 s2 p1 halving the width, BN, ReLU; the last one to 3 channels with tanh; no biases."""

    def __init__(self, bottleneck: int, out: int, channels: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        start, n = decoder_plan(out)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(bottleneck, channels, start, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            *_drop(dropout),
        ]
        c = channels
        for i in range(n):
            if i == n - 1:
                layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=False), nn.Tanh()]
            else:
                w = max(c // 2, 1)
                layers += [nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True), *_drop(dropout)]
                c = w
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


# ------------------------------------------------------------------------------------------ generator
class ContextEncoderGenerator(nn.Module):
    """Encoder -> bottleneck -> decoder: the masked image (model range, hole 0) ``[N,3,S,S]`` to the prediction
    of the window ``[N,3,w,w]`` in [-1, 1] (w = hole + 2*overlap).

    Args:
        image_size: 32 or 128 (hole 8 or 64).
        overlap: ring width around the hole that is predicted too (0: the hole only; 4: the overlap trick).
        backbone, variant, width, blocks: see :class:`Encoder`.
        bottleneck: B, the bottleneck width (paper sweep 256/512/1024/2048; 512 best).
        dropout: ``bottleneck`` (0.5 after FC1 only; spec CHOICE) | ``everywhere`` (0.5 after every activation:
            the paper's literal "for every activation") | ``none``.
        decoder: ``fc`` (spec A3 FC2 head) | ``deconv`` (G-VGG, A4.1) | ``pathak`` (G-Pathak32); ``None``: ``pathak``
            for the pathak backbone, ``fc`` otherwise.
        init: ``pathak`` applies :func:`pathak_init`; ``pytorch`` keeps PyTorch's defaults.
    """

    def __init__(
        self,
        image_size: int = 32,
        overlap: int = 0,
        backbone: str = "vgg",
        variant: str = "pool",
        width: int = 64,
        bottleneck: int = 512,
        dropout: str = "bottleneck",
        decoder: str | None = None,
        blocks: int = 2,
        init: str = "pytorch",
    ) -> None:
        super().__init__()
        _check_choice("dropout", dropout, DROPOUTS)
        decoder = decoder or ("pathak" if backbone == "pathak" else "fc")
        _check_choice("decoder", decoder, DECODERS)
        _check_choice("init", init, ("pytorch", "pathak"))
        self.geometry = geometry(image_size, overlap)
        every = 0.5 if dropout == "everywhere" else 0.0
        self.encoder = Encoder(image_size, backbone, variant, width, blocks, every)
        c = self.encoder.out_channels
        pathak = backbone == "pathak"
        self.bottleneck = Bottleneck(
            c, bottleneck, "conv" if pathak else "fc", "lrelu" if pathak else "relu", 0.0 if dropout == "none" else 0.5
        )
        out = self.geometry.window
        if decoder == "fc":
            self.decoder: nn.Module = FCDecoder(bottleneck, out)
        elif decoder == "deconv":
            self.decoder = DeconvDecoder(bottleneck, out, c, every)
        else:
            self.decoder = PathakDecoder(bottleneck, out, c, every)
        if init == "pathak":
            pathak_init(self)

    def forward(self, x: Tensor) -> Tensor:
        s = self.geometry.image_size
        if x.shape[-2:] != (s, s):
            raise ValueError(f"input of {tuple(x.shape[-2:])} px for a generator built for {s}x{s}: {SUPPORTED_HINT}")
        return self.decoder(self.bottleneck(self.encoder(x)))


# ------------------------------------------------------------------------------------------ discriminator
class ContextDiscriminator(nn.Module):
    """Discriminator / critic of spec A4.3: stride-2 Conv3x3 p1 layers (widths 64, 128, 256, 512, 512, ...;
    LeakyReLU 0.2; no norm on the first, ``norm`` on the others), then a final conv to one logit per image,
    no sigmoid. Returns ``[N]``.

    * ``d_input=image``: ``max(6, log2(size))`` stride-2 convs (six at 32 px, the paper's "six convolutional layers
      with stride 2"; the last two act on 1x1 maps as TF "SAME" padding would), then Conv1x1 512 -> 1.
    * ``d_input=patch``: the window only; stride-2 convs until the map is at most 2 px, then a valid conv over
      the whole map (16 px: c1..c3 then Conv2x2 valid 256 -> 1).

    Args:
        size: side of the input (the image for ``image``, the window for ``patch``).
        norm: ``batch`` (spec; the WGAN critic keeps BN like Arjovsky's DCGAN critic) | ``none``.
    """

    def __init__(self, size: int = 32, d_input: str = "image", width: int = 64, norm: str = "batch") -> None:
        super().__init__()
        _check_choice("d_input", d_input, D_INPUTS)
        _check_choice("norm", norm, ("batch", "none"))
        if size < 2:
            raise ValueError(f"discriminator input of {size} px is too small")
        if d_input == "image":
            n = max(6, math.ceil(math.log2(size)))
        else:
            n, side = 0, size
            while side > 2:
                side, n = (side + 1) // 2, n + 1
        layers: list[nn.Module] = []
        c, side = 3, size
        for i in range(n):
            w = min(width * 2**i, MAX_WIDTH)
            layers.append(nn.Conv2d(c, w, 3, 2, 1, bias=not (i and norm == "batch")))
            if i and norm == "batch":
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2, True))
            c, side = w, (side + 1) // 2
        layers.append(nn.Conv2d(c, 1, 1 if d_input == "image" else side))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1).mean(1)
