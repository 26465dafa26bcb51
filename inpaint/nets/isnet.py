"""ISNet generator (Interactive Separation Network), its PatchGAN discriminator, and ``build_generator``.

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
  :mod:`inpaint.nets.isnet_variants`; :func:`build_generator` builds any of the four by name.
* :class:`PatchDiscriminator`: EdgeConnect's 70x70 PatchGAN; returns raw logits (see its docstring).
* The building blocks all of them share are in :mod:`inpaint.nets.isnet_blocks`. Imports go one way:
  ``isnet`` -> ``isnet_variants`` -> ``isnet_blocks``. The loader of the authors' released generator file
  is :func:`inpaint.models.isnet_weights.load_official_generator` (nets import nothing from
  ``inpaint.models``, ``inpaint.checkpoints`` or lightning).

All generators take the masked RGB image (holes already 0, no mask channel) in [0, 1] and return an image in
[0, 1] of the same size; H and W must be multiples of ``size_multiple`` (16 for the ISNet family).
Spectral norm uses the classic hook API (``torch.nn.utils.spectral_norm``), so state dicts carry
``weight_orig`` / ``weight_u`` / ``weight_v`` like the authors' checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inpaint.nets.isnet_blocks import (
    BLOCK_CHOICES,
    HIGH_RES_WIDTH,
    NUM_PHASES,
    Phase,
    Stem,
    check_blocks,
    init_weights,
    run_phases,
    sn_conv,
    subpixel_chain,
)
from inpaint.nets.isnet_variants import ISNetBase, ISNetBaseFF, UNetLikeGenerator

GENERATOR_VARIANTS = ("isnet", "base", "base_ff", "unet")


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
        check_blocks(blocks)
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


def build_generator(variant: str = "isnet", blocks: int = 4, init_std: float = 1e-3) -> nn.Module:
    """The generator named by ``model.generator.variant`` (one of :data:`GENERATOR_VARIANTS`).

    ``blocks`` (1..4) is the number of residual blocks per branch per phase; for ``unet`` the number of middle
    residual blocks (the paper's baseline uses 4)."""
    classes = {"isnet": ISNetGenerator, "base": ISNetBase, "base_ff": ISNetBaseFF, "unet": UNetLikeGenerator}
    if variant not in classes:
        raise ValueError(f"model.generator.variant={variant!r} is not valid; expected one of {GENERATOR_VARIANTS}")
    if isinstance(blocks, bool) or blocks not in BLOCK_CHOICES:
        raise ValueError(f"model.generator.blocks={blocks!r} is not valid; expected one of {BLOCK_CHOICES}")
    return classes[variant](blocks=blocks, init_std=init_std)


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
