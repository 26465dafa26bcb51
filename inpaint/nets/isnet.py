"""ISNet generator (Interactive Separation Network), its PatchGAN discriminator, and a loader for the
authors' released generator weights.

Follows ``specs/isnet.md`` sections 2 (generator), 2.7 (variants) and 3 (discriminator); the section numbers
below refer to that spec. Notation of the docstrings: ``c@r`` = c channels at r x r for a 256 x 256 input.

* :class:`ISNetGenerator` (the authors' ``RFFNet``): a 3->32 bottleneck stem, four two-branch phases
  (high-res branch 32@256 with dilation-1 ResBlocks; low-res branch 64@128, 128@64, 256@32, 512@16 with
  dilation-2 ResBlocks; strided-conv chains high->low, sub-pixel chains low->high, concatenation and a 3x3
  aggregation conv per branch), then the Final Fusion (four sub-pixel units bring the low-res branch back to
  32@256, concatenation with the high-res branch, 7x7 conv, tanh, 3x3 conv) and ``(tanh(y) + 1) / 2``.
  Every activation is tanh, every conv is spectrally normalised except the stem's 1x1 shortcut, and only the
  two final convs have a bias.
* The ablation generators of spec 2.7 (``base``, ``base_ff``, ``unet``) live in
  :mod:`inpaint.nets.isnet_variants` and are re-exported here.
* :class:`PatchDiscriminator`: EdgeConnect's 70x70 PatchGAN; returns raw logits (see its docstring).
* :func:`load_official_generator`: maps the authors' ``InpaintingModel_gen.pth`` onto our modules by order.

All generators take the masked RGB image (holes already 0, no mask channel) in [0, 1] and return an image in
[0, 1] of the same size; H and W must be multiples of ``size_multiple`` (16 for the ISNet family).
Spectral norm uses the classic hook API (``torch.nn.utils.spectral_norm``), so state dicts carry
``weight_orig`` / ``weight_u`` / ``weight_v`` like the authors' checkpoints.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

log = logging.getLogger(__name__)

GENERATOR_VARIANTS = ("isnet", "base", "base_ff", "unet")
BLOCK_CHOICES = (1, 2, 3, 4)
HIGH_RES_WIDTH = 32  # channels of the high-res branch in every phase
NUM_PHASES = 4

Activation = Callable[[], nn.Module]


# --------------------------------------------------------------------------------------------- helpers
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


# ------------------------------------------------------------------------------------------ generator
class ISNetGenerator(nn.Module):
    """Full ISNet generator (spec 2.1-2.6; the authors' ``RFFNet``). 24,774,307 parameters with ``blocks=4``.

    Args:
        blocks: residual blocks per branch per phase (1..4; the paper's default 4).
        init_std: std of the N(0, std) init of every conv weight (spec 2.5).

    ``forward(x)``: ``x`` the masked RGB image ``[B, 3, H, W]`` in [0, 1] with holes 0, H and W multiples of 16;
    returns ``(tanh(y) + 1) / 2`` of the same shape.
    """

    size_multiple = 16

    def __init__(self, blocks: int = 4, init_std: float = 1e-3) -> None:
        super().__init__()
        _check_blocks(blocks)
        self.blocks = blocks
        self.stem = Stem()
        self.phases = nn.ModuleList(Phase(p, blocks) for p in range(1, NUM_PHASES + 1))
        c_low = self.phases[-1].out_channels[1]  # 512
        # Final Fusion (spec 2.4): SP(512) SP(256) SP(128) SP(64) -> 32@256, concat, 7x7 + tanh, 3x3
        self.fusion_up = subpixel_chain(c_low, NUM_PHASES)
        self.fusion_conv = sn_conv(2 * HIGH_RES_WIDTH, HIGH_RES_WIDTH, 7, padding=3, bias=True)
        self.fusion_act = nn.Tanh()
        self.head = sn_conv(HIGH_RES_WIDTH, 3, 3, padding=1, bias=True)
        init_weights(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        h, l = run_phases(self, x)  # noqa: E741
        z = torch.cat([h, self.fusion_up(l)], dim=1)
        y = self.head(self.fusion_act(self.fusion_conv(z)))
        return (torch.tanh(y) + 1) / 2


def _check_blocks(blocks: int) -> None:
    if isinstance(blocks, bool) or blocks not in BLOCK_CHOICES:
        raise ValueError(f"blocks={blocks!r} is not valid; expected one of {BLOCK_CHOICES}")


def build_generator(variant: str = "isnet", blocks: int = 4, init_std: float = 1e-3) -> nn.Module:
    """The generator named by ``model.generator.variant`` (one of :data:`GENERATOR_VARIANTS`).

    ``blocks`` (1..4) is the number of residual blocks per branch per phase; for ``unet`` the number of middle
    residual blocks (the paper's baseline uses 4)."""
    from inpaint.nets import isnet_variants as v

    classes = {"isnet": ISNetGenerator, "base": v.ISNetBase, "base_ff": v.ISNetBaseFF, "unet": v.UNetLikeGenerator}
    if variant not in classes:
        raise ValueError(f"model.generator.variant={variant!r} is not valid; expected one of {GENERATOR_VARIANTS}")
    if isinstance(blocks, bool) or blocks not in BLOCK_CHOICES:
        raise ValueError(f"model.generator.blocks={blocks!r} is not valid; expected one of {BLOCK_CHOICES}")
    return classes[variant](blocks=blocks, init_std=init_std)


def __getattr__(name: str):  # lazy re-export of the ablation generators (they import the blocks above)
    if name in ("ISNetBase", "ISNetBaseFF", "UNetLikeGenerator"):
        from inpaint.nets import isnet_variants

        return getattr(isnet_variants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -------------------------------------------------------------------------------------- discriminator
class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN of spec 3 (EdgeConnect's), 2,763,776 parameters.

    Five 4x4 convs [SN][nb]: 3->64->128->256 with stride 2, then 256->512 and 512->1 with stride 1 (padding 1
    throughout), LeakyReLU(0.2) after conv1-4. For a 256 input: 64@128, 128@64, 256@32, 512@31, 1@30.

    ``forward(x)`` returns ``(f5, [f1, f2, f3, f4, f5])`` with ``f5`` the **raw logits**: the authors'
    ``use_sigmoid`` (a sigmoid on the output unless the GAN loss is hinge) is handled in the loss, which
    applies BCE-with-logits (nsgan) or the sigmoid (lsgan) itself. The features feed feature matching.
    """

    def __init__(self, in_channels: int = 3, init_std: float = 1e-3) -> None:
        super().__init__()
        widths = (in_channels, 64, 128, 256, 512, 1)
        strides = (2, 2, 2, 1, 1)
        self.convs = nn.ModuleList(
            sn_conv(a, b, 4, stride=s, padding=1) for a, b, s in zip(widths[:-1], widths[1:], strides, strict=True)
        )
        self.act = nn.LeakyReLU(0.2)
        init_weights(self, init_std)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        feats = []
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = self.act(x)
            feats.append(x)
        return x, feats


# ----------------------------------------------------------------------------- authors' checkpoints
_SN_SUFFIXES = ({"weight_orig", "weight_u", "weight_v"}, {"weight_orig", "weight_u", "weight"})
_SHAPE_SUFFIXES = ("weight_orig", "weight", "bias")


def _groups(state: dict[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
    """Keys grouped by module prefix (the key without its last component), in first-appearance order."""
    groups: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
    for key, value in state.items():
        prefix, _, suffix = key.rpartition(".")
        groups.setdefault(prefix, {})[suffix] = value
    return list(groups.items())


def _kind(suffixes: set[str]) -> tuple:
    """What a group must agree on: SN or not (either SN format), with or without bias, any other suffixes."""
    rest = set(suffixes) - {"bias"}
    if any(rest == s for s in _SN_SUFFIXES):
        rest = {"<spectral-norm weight>"}
    return tuple(sorted(rest)), "bias" in suffixes


def _shapes(tensors: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {s: tuple(t.shape) for s, t in tensors.items() if s in _SHAPE_SUFFIXES}


def _fits(theirs: dict[str, Tensor], ours: dict[str, Tensor]) -> bool:
    t_shapes, o_shapes = _shapes(theirs), _shapes(ours)
    return (
        _kind(set(theirs)) == _kind(set(ours))
        and t_shapes.get("weight_orig", t_shapes.get("weight")) == o_shapes.get("weight_orig", o_shapes.get("weight"))
        and t_shapes.get("bias") == o_shapes.get("bias")
    )


def _describe(tensors: dict[str, Tensor]) -> str:
    return ", ".join(f"{s} {list(t.shape)}" for s, t in tensors.items() if s in _SHAPE_SUFFIXES) or str(sorted(tensors))


def _first_mismatch(theirs: list, ours: list) -> str | None:
    """None if the two group lists fit pair by pair, else a description of the first pair that does not."""
    for (t_prefix, t), (o_prefix, o) in zip(theirs, ours, strict=False):
        if not _fits(t, o):
            return f"their '{t_prefix}' {_describe(t)} does not fit our '{o_prefix}' {_describe(o)}"
    if len(theirs) != len(ours):
        extra, side = (theirs, "the checkpoint") if len(theirs) > len(ours) else (ours, "our generator")
        name = extra[min(len(theirs), len(ours))][0]
        return (
            f"the checkpoint has {len(theirs)} weighted modules, our generator {len(ours)}; the first module without a "
            f"partner is '{name}' in {side}"
        )
    return None


def _group_count(variant: str, blocks: int) -> int:
    """Conv groups of a generator (a cheap filter before building candidates; checked by the tests)."""
    return {"isnet": 14 * blocks + 36, "base": 14 * blocks + 25, "base_ff": 14 * blocks + 26,
            "unet": 2 * blocks + 8}[variant]


def _fitting_config(theirs: list) -> str | None:
    """The ``model.generator.variant`` / ``blocks`` whose layout fits the checkpoint, if any (built on meta)."""
    for variant in GENERATOR_VARIANTS:
        for blocks in BLOCK_CHOICES:
            if _group_count(variant, blocks) != len(theirs):
                continue
            with torch.device("meta"):
                candidate = build_generator(variant, blocks)
            if _first_mismatch(theirs, _groups(candidate.state_dict())) is None:
                return f"model.generator.variant={variant} model.generator.blocks={blocks}"
    return None


def sn_v_from_old_format(weight_orig: Tensor, weight: Tensor, u: Tensor) -> Tensor:
    """``weight_v`` of a spectral-norm conv saved by PyTorch < 1.1 (``weight_orig``, ``weight``, ``weight_u``).

    The formula of torch's spectral-norm load hook: with ``W`` the weight as an (out, rest) matrix (SN dim 0)
    and ``sigma = weight_orig / weight``, ``v = x * sigma / (u . W x)`` for the minimum-norm solution ``x`` of
    ``W x = u``; the eval-mode weight ``W / (u . W v)`` is then the stored ``weight``. The hook computes
    ``x = (W^T W)^+ W^T u`` in float32, inverting a (rest x rest) matrix: minutes for ISNet's 9216-wide convs,
    and off the true v in direction (only its scale is right) since ``W^T W`` is rank deficient. A float64
    least-squares solve on ``W`` itself takes well under a second and recovers the v of the last power
    iteration.
    """
    w = weight_orig.detach().double().flatten(1)
    wn = weight.detach().double().flatten(1)
    sigma = (w * w).sum() / (w * wn).sum()  # least-squares fit of weight_orig = sigma * weight
    u64 = u.detach().double()
    x = torch.linalg.lstsq(w, u64.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    v = x * (sigma / torch.dot(u64, w @ x))
    return v.to(weight_orig.dtype)


def _to_current_sn_format(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """A group with ``weight_orig`` + ``weight`` + ``weight_u`` (old format) -> ``weight_orig`` / ``_u`` / ``_v``."""
    if not {"weight_orig", "weight", "weight_u"} <= set(tensors) or "weight_v" in tensors:
        return tensors
    out = {k: t for k, t in tensors.items() if k != "weight"}
    out["weight_v"] = sn_v_from_old_format(tensors["weight_orig"], tensors["weight"], tensors["weight_u"])
    return out


def load_official_generator(generator: nn.Module, path: str | Path) -> dict:
    """Load the authors' ``InpaintingModel_gen.pth`` (GuardSkill/Large-Scale-Feature-Inpainting) into
    ``generator``, mapping their modules onto ours **by order**.

    Accepts ``{"iteration": n, "generator": state_dict}`` (their format), ``{"state_dict": ...}`` or a bare state
    dict; a leading ``module.`` (DataParallel) is stripped. Their keys and ours are grouped by module prefix in
    order of appearance and zipped; each pair must agree on spectral norm / bias and on the weight and bias
    shapes. Spectral-norm convs in the old format (``weight_orig`` + ``weight`` + ``weight_u``, PyTorch < 1.1)
    get their ``weight_v`` from :func:`sn_v_from_old_format` (what torch's spectral-norm load hook computes, but
    fast enough for ISNet's widest convs), so the loaded net computes the same normalised weights.

    Returns ``{"loaded": number of tensors, "iteration": their iteration or None}``. Raises
    :class:`inpaint.checkpoints.CheckpointMismatchError` (a ValueError) naming the file if it is missing,
    unreadable, holds no state dict or does not fit (then naming the first mismatching pair and, when one
    fits, the ``model.generator.variant`` / ``model.generator.blocks`` to use).
    """
    from inpaint.checkpoints import CheckpointMismatchError  # lazy: inpaint.checkpoints imports lightning

    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"authors' generator checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, foreign pickle
        raise CheckpointMismatchError(f"cannot read the authors' generator checkpoint {path}: {e}") from e
    state = ckpt
    if isinstance(ckpt, dict):
        for entry in ("generator", "state_dict"):
            if isinstance(ckpt.get(entry), dict):
                state = ckpt[entry]
                break
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointMismatchError(
            f"{path} holds no generator state dict (expected a dict of tensors, or one under 'generator' or "
            "'state_dict')"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    theirs, ours = _groups(state), _groups(generator.state_dict())
    problem = _first_mismatch(theirs, ours)
    if problem is not None:
        fit = _fitting_config(theirs)
        hint = f"it fits {fit}" if fit else "it fits none of the generator variants / block counts"
        raise CheckpointMismatchError(
            f"{path} does not fit {type(generator).__name__} ({len(theirs)} weighted modules in the file, "
            f"{len(ours)} in ours): {problem}; {hint}"
        )
    renamed = {
        f"{o_prefix}.{suffix}": tensor
        for (_, t), (o_prefix, _) in zip(theirs, ours, strict=True)
        for suffix, tensor in _to_current_sn_format(t).items()
    }
    try:
        generator.load_state_dict(renamed, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"{path} does not load into {type(generator).__name__}: {e}") from e
    report = {"loaded": len(renamed), "iteration": ckpt.get("iteration") if isinstance(ckpt, dict) else None}
    log.info("loaded the authors' generator %s: %d tensors, iteration %s", path, report["loaded"],
             report["iteration"])
    return report
