"""SC-NN: 6-layer hybrid spiking-convolutional inpainting network (spec ``cifar-models-and-scnn.md`` B2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from inpaint.nets.lif import SNNConv2d

FINAL_ACTIVATIONS = ("relu", "sigmoid", "none")


class SCNN(nn.Module):
    """Six 3x3 convs (stride 1, padding 1), one of them an :class:`SNNConv2d`, ReLU after each layer.

    Layout with the defaults: ``in -> 64 -> 64(spiking) -> 128 -> 128 -> 64 -> 3``, 335,683 parameters. The ReLU after
    an intermediate spiking layer is omitted (it is the identity on rates in [0, 1]); the last layer always uses
    ``final_activation``. The output is not clamped.

    Args:
        in_channels: 3 (masked image) or 4 (masked image + mask channel).
        widths: output channels of layers 1..5; layer 6 outputs 3 channels.
        snn_position: which layer (1..6) is the spiking one.
        final_activation: ``relu`` (paper), ``sigmoid`` or ``none``.
        lif: keyword arguments for :class:`inpaint.nets.lif.LIF` (time steps, noise, surrogate, ...).
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 64, 128, 128, 64),
        snn_position: int = 2,
        final_activation: str = "relu",
        lif: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        widths = tuple(widths)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels={in_channels!r} is not valid; expected a positive integer (3 or 4)")
        if len(widths) != 5 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths={widths!r} is not valid; expected 5 positive integers")
        if isinstance(snn_position, bool) or snn_position not in range(1, 7):
            raise ValueError(f"snn_position={snn_position!r} is not valid; expected an integer in 1..6")
        if final_activation not in FINAL_ACTIVATIONS:
            raise ValueError(f"final_activation={final_activation!r} is not valid; expected one of {FINAL_ACTIVATIONS}")
        self.snn_position = snn_position
        self.final_activation = final_activation
        channels = (in_channels, *widths, 3)
        layers: list[nn.Module] = []
        for idx in range(6):
            c_in, c_out = channels[idx], channels[idx + 1]
            if idx + 1 == snn_position:
                layers.append(SNNConv2d(c_in, c_out, **dict(lif or {})))
            else:
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            if idx < 5:
                if idx + 1 != snn_position:
                    layers.append(nn.ReLU(inplace=True))
            elif final_activation == "relu":
                layers.append(nn.ReLU(inplace=True))
            elif final_activation == "sigmoid":
                layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    @property
    def spiking_layer(self) -> SNNConv2d:
        """The network's :class:`SNNConv2d`."""
        return next(m for m in self.net if isinstance(m, SNNConv2d))

    @property
    def last_spike_rate(self) -> Tensor | None:
        """Mean spike rate of the spiking layer in the last forward call (detached 0-dim tensor, no host sync)."""
        return self.spiking_layer.last_spike_rate

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_channels, H, W] -> [B, 3, H, W]`` (unclamped)."""
        return self.net(x)
