"""Building blocks shared by the ISNet generators (spec ``isnet.md`` sections 2.2, 2.3, 2.5 and 2.7).

Notation of the docstrings: ``c@r`` = c channels at r x r for a 256 x 256 input. Used by the full generator
(:mod:`inpaint.nets.isnet`) and the ablation generators (:mod:`inpaint.nets.isnet_variants`); imports nothing
from either. Spectral norm uses the classic hook API (``torch.nn.utils.spectral_norm``), so state dicts carry
``weight_orig`` / ``weight_u`` / ``weight_v`` like the authors' checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

BLOCK_CHOICES = (1, 2, 3, 4)
HIGH_RES_WIDTH = 32  # channels of the high-res branch in every phase
NUM_PHASES = 4

Activation = Callable[[], nn.Module]


# --------------------------------------------------------------------------------------------- helpers
def check_blocks(blocks: int) -> None:
    """Raise a ValueError unless ``blocks`` is one of :data:`BLOCK_CHOICES` (called by every generator)."""
    if isinstance(blocks, bool) or blocks not in BLOCK_CHOICES:
        raise ValueError(f"blocks={blocks!r} is not valid; expected one of {BLOCK_CHOICES}")


def check_size(h: int, w: int, multiple: int, name: str) -> None:
    """Raise a ValueError if ``h`` or ``w`` is not a multiple of ``multiple`` (called by every generator)."""
    if h % multiple == 0 and w % multiple == 0:
        return
    fit = [max(multiple, round(s / multiple) * multiple) for s in (h, w)]
    hint = fit[0] if fit[0] == fit[1] else fit
    raise ValueError(
        f"{name} needs H and W divisible by {multiple}, got {h}x{w}: crop or pad the input "
        f"(data.image_size={hint})"
    )


def init_weights(module: nn.Module, std: float = 1e-3, power_iterations: int = 30) -> None:
    """Spec 2.5: the weight of every module whose class name contains ``Conv`` ~ N(0, std), biases 0.

    For spectrally normalised convs the raw weight ``weight_orig`` is drawn (the normalised ``weight`` is
    recomputed from it on every forward). Their power-iteration vectors are then converged
    (:func:`converge_spectral_norms`): the authors start from random vectors refined once per training
    forward, so a fresh network's sigma is a poor estimate at first -- in eval mode it is never refined,
    weights come out far from unit norm and the outputs saturate at 0 / 1. Trained networks are unaffected
    (they carry converged vectors)."""
    with torch.no_grad():
        for m in module.modules():
            if "Conv" not in type(m).__name__:
                continue
            weight = m.weight_orig if hasattr(m, "weight_orig") else getattr(m, "weight", None)
            if isinstance(weight, Tensor):
                weight.normal_(0.0, std)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    converge_spectral_norms(module, power_iterations)


def run_phases(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The shared trunk of the two-branch generators: size check, ``net.stem``, then ``net.phases``;
    returns the high- and low-resolution outputs of the last phase."""
    check_size(x.shape[-2], x.shape[-1], net.size_multiple, type(net).__name__)
    h, l = net.phases[0](net.stem(x))  # noqa: E741
    for phase in net.phases[1:]:
        h, l = phase(h, l)  # noqa: E741
    return h, l


def converge_spectral_norms(module: nn.Module, iterations: int = 30) -> None:
    """Run ``iterations`` power iterations on every spectral-norm hook in ``module`` (no data needed), so
    ``weight_u`` / ``weight_v`` estimate each weight's largest singular vectors."""
    from torch.nn.utils.spectral_norm import SpectralNorm

    with torch.no_grad():
        for m in module.modules():
            for hook in m._forward_pre_hooks.values():
                if isinstance(hook, SpectralNorm):
                    saved = hook.n_power_iterations
                    hook.n_power_iterations = iterations
                    try:
                        setattr(m, hook.name, hook.compute_weight(m, do_power_iteration=True))
                    finally:
                        hook.n_power_iterations = saved


def sn_conv(c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1,
            bias: bool = False, sn: bool = True) -> nn.Module:
    """A Conv2d, spectrally normalised unless ``sn=False`` (without a bias by default)."""
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation, bias=bias)
    return spectral_norm(conv) if sn else conv


def tanh() -> nn.Module:
    return nn.Tanh()


def leaky() -> nn.Module:
    return nn.LeakyReLU(0.2)


# ------------------------------------------------------------------------------------ building blocks
class Stem(nn.Module):
    """``Bott(3->32)`` (spec 2.2): ``act(conv2(act(conv1(x))) + shortcut(x))``.

    ``conv1`` 3x3 3->64 and ``conv2`` 3x3 64->32 are [SN][nb]; ``shortcut`` is a plain 1x1 conv without bias.
    The shortcut is registered first, like the authors' ``downsample`` (the checkpoint loader maps by order).
    """

    def __init__(self, c_in: int = 3, c_out: int = HIGH_RES_WIDTH, act: Activation = tanh) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.conv1 = sn_conv(c_in, 2 * c_out, 3, padding=1)
        self.act1 = act()
        self.conv2 = sn_conv(2 * c_out, c_out, 3, padding=1)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.act1(self.conv1(x))) + self.shortcut(x))


class ResBlock(nn.Module):
    """``RB(c, d)`` (spec 2.2): ``act(x + conv2(pad1(act(conv1_dil_d(pad_d(x))))))``, no normalisation.

    Both convs are 3x3 [SN][nb] in ISNet; ``sn=False`` gives plain convs with biases (UNet-like baseline).
    """

    def __init__(self, channels: int, dilation: int = 1, act: Activation = tanh, sn: bool = True) -> None:
        super().__init__()
        self.pad1 = nn.ZeroPad2d(dilation)
        self.conv1 = sn_conv(channels, channels, 3, dilation=dilation, bias=not sn, sn=sn)
        self.act1 = act()
        self.pad2 = nn.ZeroPad2d(1)
        self.conv2 = sn_conv(channels, channels, 3, bias=not sn, sn=sn)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.pad2(self.act1(self.conv1(self.pad1(x)))))
        return self.act(x + y)


def down(c_in: int, c_out: int, act: Activation = tanh) -> nn.Sequential:
    """``DN``: 3x3 stride-2 conv [SN][nb] + activation (halves the resolution)."""
    return nn.Sequential(sn_conv(c_in, c_out, 3, stride=2, padding=1), act())


def down_chain(steps: int, act: Activation = tanh) -> nn.Sequential:
    """``steps`` DN units from the high-res branch: 32 -> 64 -> ... -> 32 * 2**steps channels."""
    widths = [HIGH_RES_WIDTH * 2**i for i in range(steps + 1)]
    return nn.Sequential(*(down(a, b, act) for a, b in zip(widths[:-1], widths[1:], strict=True)))


class SubPixel(nn.Sequential):
    """``SP(c)`` (spec 2.2): 3x3 conv c -> 2c [SN][nb], PixelShuffle(2), tanh: c@r -> c/2@2r."""

    def __init__(self, channels: int) -> None:
        super().__init__(sn_conv(channels, 2 * channels, 3, padding=1), nn.PixelShuffle(2), nn.Tanh())


def subpixel_chain(c_in: int, steps: int) -> nn.Sequential:
    """``steps`` sub-pixel units: c_in@r -> c_in / 2**steps @ r * 2**steps."""
    return nn.Sequential(*(SubPixel(c_in // 2**i) for i in range(steps)))


def aggregate(c_in: int, c_out: int, act: Activation = tanh) -> nn.Sequential:
    """``AG(a->b)``: 3x3 conv [SN][nb] + activation."""
    return nn.Sequential(sn_conv(c_in, c_out, 3, padding=1), act())


class BilinearUp(nn.Module):
    """Parameter-free upsampling of the ablation models (optionally after an activation), spec 2.7."""

    def __init__(self, scale: int, act: Activation | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.act = act() if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.act(x), scale_factor=self.scale, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class Phase(nn.Module):
    """One phase p = 1..4 of spec 2.3 (the authors' ``TwoBranchModule``): inpainting, interaction, aggregation.

    ``h`` is the high-res branch (32 channels, full resolution), ``l`` the low-res branch (``c_l = 32 * 2**(p-1)``
    channels at 1 / 2**(p-1) resolution; absent in phase 1). Returns ``(h, l)`` with ``l`` of ``lo_out``
    channels (default ``32 * 2**p``) at 1 / 2**p resolution.

    Registration order = the authors' module order (the checkpoint loader maps by order): high-res ResBlocks,
    low-res ResBlocks, then the interaction convs as ``fuse_layers[i][j]`` (output branch i, input branch j):
    ``lo_to_hi`` [0][1], ``hi_to_lo`` [1][0], ``lo_down`` [1][1]; then ``hi_agg`` and ``lo_agg``.

    ``upsample="subpixel"`` (ISNet): ``lo_to_hi`` is p - 1 sub-pixel units (c_l -> 32). ``"bilinear"`` /
    ``"act_bilinear"`` (ablations): a parameter-free bilinear x 2**(p-1) that keeps the c_l channels (the latter
    applies the activation first).
    """

    def __init__(self, p: int, blocks: int, act: Activation = tanh, upsample: str = "subpixel",
                 lo_out: int | None = None) -> None:
        super().__init__()
        if p not in range(1, NUM_PHASES + 1):
            raise ValueError(f"phase index p={p!r} is not valid; expected 1..{NUM_PHASES}")
        self.p = p
        c_h = HIGH_RES_WIDTH
        c_l = HIGH_RES_WIDTH * 2 ** (p - 1)
        c_down = HIGH_RES_WIDTH * 2**p
        lo_out = c_down if lo_out is None else lo_out
        self.out_channels = (c_h, lo_out)

        self.hi_blocks = nn.Sequential(*(ResBlock(c_h, 1, act) for _ in range(blocks)))
        if p >= 2:
            self.lo_blocks = nn.Sequential(*(ResBlock(c_l, 2, act) for _ in range(blocks)))
            if upsample == "subpixel":
                self.lo_to_hi = subpixel_chain(c_l, p - 1)
                hi_in = 2 * c_h
            elif upsample in ("bilinear", "act_bilinear"):
                self.lo_to_hi = BilinearUp(2 ** (p - 1), act if upsample == "act_bilinear" else None)
                hi_in = c_h + c_l
            else:
                raise ValueError(f"upsample={upsample!r} is not valid; expected subpixel, bilinear or act_bilinear")
        else:
            self.lo_blocks = self.lo_to_hi = None
            hi_in = c_h
        self.hi_to_lo = down_chain(p, act)
        self.lo_down = down(c_l, c_down, act) if p >= 2 else None
        self.hi_agg = aggregate(hi_in, c_h, act)
        self.lo_agg = aggregate(c_down * (2 if p >= 2 else 1), lo_out, act)

    def forward(self, h: Tensor, l: Tensor | None = None) -> tuple[Tensor, Tensor]:  # noqa: E741
        h = self.hi_blocks(h)
        hd = self.hi_to_lo(h)
        if self.p == 1:
            return self.hi_agg(h), self.lo_agg(hd)
        if l is None:
            raise ValueError(f"phase {self.p} needs the low-res branch")
        l = self.lo_blocks(l)  # noqa: E741
        h_in = torch.cat([h, self.lo_to_hi(l)], dim=1)  # high-res-derived tensor first (spec 2.3)
        l_in = torch.cat([hd, self.lo_down(l)], dim=1)
        return self.hi_agg(h_in), self.lo_agg(l_in)
