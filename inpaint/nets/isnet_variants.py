"""Ablation generators of ISNet (spec ``isnet.md`` 2.7): the Base model, Base + FF, and the UNet-like baseline.

Built by name with :func:`inpaint.nets.isnet.build_generator`; made of the blocks of
:mod:`inpaint.nets.isnet_blocks` (this module imports nothing else of the framework). Like the full ISNet they
take the masked RGB image in [0, 1] (holes 0, no mask channel), return ``(tanh(y) + 1) / 2`` of the same size,
draw every conv weight from N(0, ``init_std``) with zero biases, and check the input size first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.nets.isnet_blocks import (
    HIGH_RES_WIDTH,
    NUM_PHASES,
    Phase,
    ResBlock,
    Stem,
    check_blocks,
    check_size,
    init_weights,
    leaky,
    run_phases,
    sn_conv,
)


class ISNetBase(nn.Module):
    """"Base model" of Table 7 (the authors' ``RFFNet_base``), 16,516,995 parameters with ``blocks=4``.

    ISNet's stem and channel plan with LeakyReLU(0.2) instead of every tanh; the low-res -> high-res path is
    LeakyReLU + parameter-free bilinear upsampling x 2**(p-1) keeping the c_l channels (so the high-res
    aggregation sees 96 / 160 / 288 channels in phases 2 / 3 / 4); no Final Fusion: the head is a plain 1x1
    conv 32 -> 3 with bias on the high-res branch (the low-res output of phase 4 is computed but unused).
    """

    size_multiple = 16

    def __init__(self, blocks: int = 4, init_std: float = 1e-3) -> None:
        super().__init__()
        check_blocks(blocks)
        self.blocks = blocks
        self.stem = Stem(act=leaky)
        self.phases = nn.ModuleList(
            Phase(p, blocks, act=leaky, upsample="act_bilinear") for p in range(1, NUM_PHASES + 1)
        )
        self.head = nn.Conv2d(HIGH_RES_WIDTH, 3, 1)
        init_weights(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        h, l = run_phases(self, x)  # noqa: E741
        return (torch.tanh(self.head(h)) + 1) / 2


class ISNetBaseFF(nn.Module):
    """"Base + FF" of Table 7 (the authors' ``RFFNet_fusion``), 14,610,083 parameters with ``blocks=4``.

    The Base model without the LeakyReLU before the bilinear low -> high upsampling, a phase-4 low-res output of
    256 channels (the aggregation conv is 1024 -> 256), and a Final Fusion: bilinear x16 of the low-res branch
    (256@256), concatenation after the high-res branch (288 channels), 7x7 conv 288 -> 32 [SN] with bias,
    LeakyReLU(0.2), 3x3 conv 32 -> 3 with bias and without SN.
    """

    size_multiple = 16
    low_res_width = 256  # phase-4 low-res output channels (512 in ISNet)

    def __init__(self, blocks: int = 4, init_std: float = 1e-3) -> None:
        super().__init__()
        check_blocks(blocks)
        self.blocks = blocks
        self.stem = Stem(act=leaky)
        self.phases = nn.ModuleList(
            Phase(p, blocks, act=leaky, upsample="bilinear", lo_out=self.low_res_width if p == NUM_PHASES else None)
            for p in range(1, NUM_PHASES + 1)
        )
        self.fusion_conv = sn_conv(HIGH_RES_WIDTH + self.low_res_width, HIGH_RES_WIDTH, 7, padding=3, bias=True)
        self.fusion_act = leaky()
        self.head = nn.Conv2d(HIGH_RES_WIDTH, 3, 3, padding=1)
        init_weights(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        h, l = run_phases(self, x)  # noqa: E741
        u = F.interpolate(l, scale_factor=2**NUM_PHASES, mode="bilinear", align_corners=False)
        y = self.head(self.fusion_act(self.fusion_conv(torch.cat([h, u], dim=1))))
        return (torch.tanh(y) + 1) / 2


def _norm_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.InstanceNorm2d(channels, affine=False, track_running_stats=False), nn.ReLU())


class UNetLikeGenerator(nn.Module):
    """UNet-like baseline of Table 7 (the authors' ``UnetGeneratorSame``), 24,403,715 parameters with
    ``blocks=4``.

    EdgeConnect's inpainting generator with one more level: reflection-pad 3 + 7x7 conv 3 -> 64, three 4x4
    stride-2 convs 64 -> 128 -> 256 -> 512 (each conv + InstanceNorm without affine + ReLU); ``blocks`` ISNet
    ResBlocks(512, dilation 2) without SN (so with biases) and with tanh; three 4x4 stride-2 transposed convs
    512 -> 256 -> 128 -> 64 (+ IN + ReLU); reflection-pad 3 + 7x7 conv 64 -> 3; ``(tanh + 1) / 2``. Every conv
    has a bias; no skip connections (the parameter count confirms plain decoder widths). H and W must be
    multiples of 8.
    """

    size_multiple = 8

    def __init__(self, blocks: int = 4, init_std: float = 1e-3) -> None:
        super().__init__()
        check_blocks(blocks)
        self.blocks = blocks
        widths = (64, 128, 256, 512)
        self.encoder = nn.Sequential(
            _norm_relu(nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, widths[0], 7)), widths[0]),
            *(_norm_relu(nn.Conv2d(a, b, 4, stride=2, padding=1), b) for a, b in zip(widths[:-1], widths[1:], strict=True)),
        )
        self.middle = nn.Sequential(*(ResBlock(widths[-1], dilation=2, sn=False) for _ in range(blocks)))
        rev = widths[::-1]
        self.decoder = nn.Sequential(
            *(_norm_relu(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), b) for a, b in zip(rev[:-1], rev[1:], strict=True)),
            nn.ReflectionPad2d(3),
            nn.Conv2d(widths[0], 3, 7),
        )
        init_weights(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        check_size(x.shape[-2], x.shape[-1], self.size_multiple, type(self).__name__)
        return (torch.tanh(self.decoder(self.middle(self.encoder(x)))) + 1) / 2
