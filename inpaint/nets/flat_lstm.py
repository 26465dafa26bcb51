"""Row-flattened LSTM: the "Beyond CNNs" paper's own density model (spec ``cifar-models-and-scnn.md`` A8).

The model reads the whole image as one long sequence. Every sub-pixel is a token; the tokens run over the pixels
in raster order (left to right, then top to bottom) and over R, G, B inside a pixel, so sub-pixel ``(r, c, k)`` of a
``W`` pixels wide image is token ``(W*r + c)*3 + k`` (:func:`token_index`). A token is an 8-bit level 0..255. One
LSTM walks over the sequence and a linear layer turns its output at step ``t`` into the 256 logits of token ``t``.

What the paper states: the image is flattened from the top-left to the bottom-right corner; the channel values go
into the LSTM in R, G, B order as 256-d one-hot vectors; the hidden size is 64 (found by cross-validation); a fully
connected softmax layer with 256 outputs is trained with softmax cross-entropy. The authors note that the model
leans most on the pixels just to the left, and suggest more LSTMs or a wider state as improvements.

Choices made here:

* The input of step ``t`` is the one-hot vector of token ``t - 1``: a prediction may only see what comes before
  it. Step 0 has no previous token and reads a zero vector, which acts as the start symbol. Teacher forcing in
  :meth:`RowFlattenedLSTM.forward` is therefore one LSTM call over all ``3*H*W`` steps.
* ``hidden=64`` and ``num_layers=1`` are the paper's model; both are constructor arguments because the paper names
  a deeper or wider LSTM as the next thing to try.
* ``embedding=True`` reads the input from a learned table of 257 rows of width 256 (the 256 levels and the start
  symbol) instead of the fixed one-hot table. Multiplying the LSTM's input weights by a one-hot vector just picks a
  column, so a table in front of those weights is a reparametrisation of the same model family; the table starts
  as the one-hot table (start row zero), so such a net computes exactly the one-hot model until it is trained.
  Only the start row adds freedom (a learned start vector). One-hot stays the default, as in the paper.
* ``channel_indicator=True`` appends a 3-d one-hot of the channel (R, G or B) of the token being predicted to every
  input, so the LSTM need not count steps modulo 3 to know which colour it is predicting.

:meth:`RowFlattenedLSTM.fill` keeps the LSTM state instead of re-reading the image for every sub-pixel. It walks
over the tokens that are a hole in at least one image of the batch, in order. For each it feeds, in one LSTM call,
every step not fed yet up to the step that reads the token just before it: that is a single step when the previous
token was a hole token too, and otherwise the run of tokens known in every image (at first the whole known prefix)
plus that step. The last output gives the token's logits; the images with a hole there get the decoder's value,
the others keep their ground truth, and either becomes the next input. The walk stops after the last hole token,
since nothing after it can change a hole value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.nets.autoregressive import LEVELS, Decoder, DensityNet, from_levels, quantize, to_levels

#: index of the start symbol in the input table (the row after the 256 levels)
START = LEVELS


def token_index(r: int, c: int, k: int, width: int) -> int:
    """Position of sub-pixel ``(r, c, k)`` (row, column, channel) of a ``width`` pixels wide image in the flat
    raster/RGB sequence."""
    return (width * r + c) * 3 + k


def to_tokens(x: Tensor) -> Tensor:
    """``[B,3,H,W]`` image in [0,1] -> ``[B,3*H*W]`` int64 levels in raster/RGB order."""
    return to_levels(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def hole_tokens(hole: Tensor) -> Tensor:
    """``[B,H,W]`` pixel hole mask -> ``[B,3*H*W]`` bool, true at the three tokens of every hole pixel."""
    return hole.bool().reshape(hole.shape[0], -1).repeat_interleave(3, dim=1)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: give a positive integer")
    return value


class RowFlattenedLSTM(DensityNet):
    """LSTM over the flattened sub-pixel sequence; step ``t`` reads token ``t - 1`` and predicts token ``t``.

    Args:
        hidden: LSTM state size (paper: 64).
        num_layers: stacked LSTM layers (paper: 1).
        embedding: read the previous token from a learned 257 x 256 table (starts as the one-hot table) instead of
            the fixed one-hot vectors.
        channel_indicator: append a one-hot of the channel being predicted (3 extra inputs).
    """

    def __init__(
        self, hidden: int = 64, num_layers: int = 1, embedding: bool = False, channel_indicator: bool = False
    ) -> None:
        super().__init__()
        self.hidden = _positive_int("hidden", hidden)
        self.num_layers = _positive_int("num_layers", num_layers)
        self.embedding, self.channel_indicator = bool(embedding), bool(channel_indicator)
        # rows 0..255: one-hot of a level; row 256: the start symbol (zero vector)
        one_hot = torch.cat([torch.eye(LEVELS), torch.zeros(1, LEVELS)])
        if self.embedding:
            self.embed = nn.Embedding(LEVELS + 1, LEVELS)
            with torch.no_grad():
                self.embed.weight.copy_(one_hot)
        else:
            self.register_buffer("one_hot", one_hot, persistent=False)
        self.register_buffer("channel_one_hot", torch.eye(3), persistent=False)
        in_features = LEVELS + (3 if self.channel_indicator else 0)
        self.lstm = nn.LSTM(in_features, self.hidden, self.num_layers, batch_first=True)
        self.head = nn.Linear(self.hidden, LEVELS)

    def step_inputs(self, tokens: Tensor, start: int, stop: int) -> Tensor:
        """LSTM inputs ``[B, stop-start, features]`` of steps ``start..stop-1``: step ``t`` reads token ``t - 1``
        of ``tokens`` ``[B,T]`` (the start symbol at ``t = 0``)."""
        prev = tokens[:, max(start - 1, 0) : stop - 1]
        if start == 0:
            prev = torch.cat([prev.new_full((tokens.shape[0], 1), START), prev], dim=1)
        table = self.embed.weight if self.embedding else self.one_hot
        inputs = F.embedding(prev, table)
        if self.channel_indicator:
            channel = torch.arange(start, stop, device=tokens.device) % 3
            indicator = self.channel_one_hot[channel].to(inputs.dtype)
            inputs = torch.cat([inputs, indicator.expand(tokens.shape[0], -1, -1)], dim=-1)
        return inputs

    def forward(self, x: Tensor) -> Tensor:
        """Teacher-forced logits ``[B,3,256,H,W]`` of every sub-pixel of ``x`` ``[B,3,H,W]`` in [0,1]."""
        b, _, h, w = x.shape
        tokens = to_tokens(x)
        out, _ = self.lstm(self.step_inputs(tokens, 0, tokens.shape[1]))
        return self.head(out).view(b, h, w, 3, LEVELS).permute(0, 3, 4, 1, 2)

    @torch.no_grad()
    def fill(self, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
        """The hole of every image filled in raster/RGB order with the cached LSTM state (same values as
        :func:`inpaint.nets.autoregressive.naive_fill`); known sub-pixels are copied from ``quantize(x)``."""
        return self.fill_with_logits(x, hole, decoder, keep_logits=False)[0]

    @torch.no_grad()
    def fill_with_logits(
        self, x: Tensor, hole: Tensor, decoder: Decoder, keep_logits: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`fill`, also returning what it decoded from.

        Returns:
            The filled image; the token positions ``[N]`` that are a hole in some image, ascending; and (with
            ``keep_logits``) the logits ``[B,N,256]`` the fill computed at those positions for every image (for an
            image whose token is known, from its ground truth), else ``None``.
        """
        if hole.dim() != 3 or hole.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(f"hole {tuple(hole.shape)} must be [B,H,W] of the image {tuple(x.shape)}")
        width = x.shape[-1]
        filled = quantize(x).clone()
        tokens = to_tokens(x)
        in_hole = hole_tokens(hole)
        positions = in_hole.any(dim=0).nonzero().squeeze(1)
        seen: list[Tensor] = []
        state: tuple[Tensor, Tensor] | None = None
        done = 0  # steps 0..done-1 have been fed to the LSTM
        for t in positions.tolist():
            # steps done..t: the known run since the last hole token (or the whole known prefix) and then the step
            # that reads token t-1, whose output gives the logits of token t
            out, state = self.lstm(self.step_inputs(tokens, done, t + 1), state)
            done = t + 1
            logits = self.head(out[:, -1])
            if keep_logits:
                seen.append(logits)
            b = in_hole[:, t].nonzero().squeeze(1)
            pixel, k = divmod(t, 3)
            r, c = divmod(pixel, width)
            levels = decoder(logits[b], b, k, r, c)
            tokens[b, t] = levels
            filled[b, k, r, c] = from_levels(levels, filled.dtype)
        kept = None
        if keep_logits:
            kept = torch.stack(seen, dim=1) if seen else self.head.weight.new_zeros(x.shape[0], 0, LEVELS)
        return filled, positions, kept
