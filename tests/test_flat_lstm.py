"""Row-flattened LSTM (spec A8, checks C6): token order, causality, the cached fill against one teacher-forced pass
and against the naive reference fill, and that a few optimizer steps lower the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inpaint.nets.autoregressive import LEVELS, Decoder, naive_fill, quantize, to_levels
from inpaint.nets.flat_lstm import RowFlattenedLSTM, hole_tokens, to_tokens, token_index

VARIANTS = {
    "paper": {},
    "two_layers": {"num_layers": 2},
    "channel_indicator": {"channel_indicator": True},
    "embedding": {"embedding": True},
}


def make_net(seed: int = 0, hidden: int = 8, **kwargs) -> RowFlattenedLSTM:
    """A small float64 net in eval mode with random weights, scaled up so the logits move with the context."""
    torch.manual_seed(seed)
    net = RowFlattenedLSTM(hidden=hidden, **kwargs).double().eval()
    with torch.no_grad():
        for p in net.lstm.parameters():
            p.mul_(2.0)
        if net.embedding:  # a table that is not the one-hot one, so its lookup is exercised
            net.embed.weight.normal_()
    return net


def random_images(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    """Float64 images that are not on the 1/255 grid (the nets quantize them)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)


def mixed_holes(h: int = 6, w: int = 7) -> torch.Tensor:
    """Four different masks: pixel (0,0) and a block; the last pixel and a few scattered pixels; nothing;
    an irregular random mask."""
    hole = torch.zeros(4, h, w, dtype=torch.bool)
    hole[0, 0, 0] = True
    hole[0, 2:4, 1:4] = True
    hole[1, h - 1, w - 1] = True
    hole[1, 1, 5] = hole[1, 4, 0] = hole[1, 2, 2] = True
    hole[3] = torch.rand(h, w, generator=torch.Generator().manual_seed(3)) < 0.2
    return hole


def flat_logits(net: RowFlattenedLSTM, x: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits ``[B,T,256]`` in token order."""
    b = x.shape[0]
    return net(x).permute(0, 3, 4, 1, 2).reshape(b, -1, LEVELS)


def test_token_index_and_cifar_hole_tokens():
    assert token_index(12, 12, 0, 32) == 1188
    assert token_index(19, 19, 2, 32) == 1883
    hole = torch.zeros(2, 32, 32, dtype=torch.bool)
    hole[:, 12:20, 12:20] = True
    assert hole_tokens(hole)[0].nonzero().squeeze(1).tolist() == [
        token_index(r, c, k, 32) for r in range(12, 20) for c in range(12, 20) for k in range(3)
    ]
    # the positions the fill visits are exactly the 192 hole tokens 1188..1883
    net = make_net(hidden=4)
    _, positions, _ = net.fill_with_logits(
        random_images(2, 32, 32), hole, Decoder("argmax"), keep_logits=False
    )
    assert len(positions) == 192 and positions[0] == 1188 and positions[-1] == 1883


def test_tokens_follow_raster_rgb_order():
    x = random_images(2, 3, 5)
    tokens, levels = to_tokens(x), to_levels(x)
    for r, c, k in [(0, 0, 0), (0, 0, 2), (1, 4, 1), (2, 3, 2)]:
        assert torch.equal(tokens[:, token_index(r, c, k, 5)], levels[:, k, r, c])


def test_step_inputs_read_the_previous_token_and_the_channel_to_predict():
    net = make_net(channel_indicator=True)
    x = random_images(2, 2, 3)
    tokens = to_tokens(x)
    inputs = net.step_inputs(tokens, 0, tokens.shape[1])
    assert inputs.shape == (2, 18, LEVELS + 3)
    assert torch.equal(inputs[:, 0, :LEVELS], torch.zeros(2, LEVELS, dtype=inputs.dtype))  # start symbol
    assert torch.equal(inputs[:, 1:, :LEVELS], F.one_hot(tokens[:, :-1], LEVELS).to(inputs.dtype))
    assert torch.equal(inputs[:, :, LEVELS:], F.one_hot(torch.arange(18) % 3, 3).to(inputs).expand(2, -1, -1))
    # a chunk of steps is the same slice of the whole sequence's inputs
    assert torch.equal(net.step_inputs(tokens, 5, 11), inputs[:, 5:11])


def test_forward_shape_and_any_size():
    net = make_net(channel_indicator=True)
    for h, w in [(1, 1), (3, 5), (4, 2)]:
        assert net(random_images(2, h, w)).shape == (2, 3, LEVELS, h, w)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_steps_give_the_teacher_forced_logits(variant):
    """Spec C6: the logits the fill decodes from, step by step with the cached state, are those of one
    teacher-forced pass over the filled image (for images with and without a hole at each position)."""
    net = make_net(**VARIANTS[variant])
    x, hole = random_images(4, 6, 7), mixed_holes()
    filled, positions, logits = net.fill_with_logits(x, hole, Decoder("argmax"))
    assert positions.tolist() == hole_tokens(hole).any(0).nonzero().squeeze(1).tolist()
    full = flat_logits(net, filled)[:, positions]
    assert logits.shape == full.shape
    torch.testing.assert_close(logits, full, rtol=0, atol=1e-12)
    # the decoded values are the argmax of those logits
    b, t = hole_tokens(hole).nonzero(as_tuple=True)
    j = torch.searchsorted(positions, t)
    assert torch.equal(to_tokens(filled)[b, t], logits[b, j].argmax(-1))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("mode", ["argmax", "sample", "mean"])
@pytest.mark.slow
def test_fast_fill_equals_naive_fill(variant, mode):
    net = make_net(**VARIANTS[variant])
    x, hole = random_images(4, 6, 7), mixed_holes()
    noise = torch.rand(4, 3, 6, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    decoder = Decoder(mode, temperature=1.5, noise=noise) if mode == "sample" else Decoder(mode)
    fast = net.fill(x, hole, decoder)
    assert torch.equal(fast, naive_fill(net, x, hole, decoder))
    # known sub-pixels are the quantized input; the image without a hole comes back unchanged
    known = ~hole[:, None].expand_as(x)
    assert torch.equal(fast[known], quantize(x)[known])
    assert torch.equal(fast[2], quantize(x)[2])
    assert not torch.equal(fast[hole[:, None].expand_as(x)], quantize(x)[hole[:, None].expand_as(x)])


def test_fill_of_a_whole_image_and_of_no_hole():
    net = make_net(num_layers=2, channel_indicator=True)
    x = random_images(2, 2, 3)
    everything = torch.ones(2, 2, 3, dtype=torch.bool)  # tokens 0 and 17 included
    decoder = Decoder("argmax")
    assert torch.equal(net.fill(x, everything, decoder), naive_fill(net, x, everything, decoder))
    nothing = torch.zeros(2, 2, 3, dtype=torch.bool)
    filled, positions, logits = net.fill_with_logits(x, nothing, decoder)
    assert torch.equal(filled, quantize(x)) and positions.numel() == 0 and logits.shape == (2, 0, LEVELS)


def test_fill_rejects_a_mask_of_another_shape():
    net = make_net()
    with pytest.raises(ValueError, match="hole"):
        net.fill(random_images(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool), Decoder())


@pytest.mark.parametrize("variant", ["paper", "two_layers", "channel_indicator"])
def test_causality(variant):
    """Changing token s leaves the logits of tokens 0..s unchanged and changes those of every later token."""
    net = make_net(**VARIANTS[variant])
    with torch.no_grad():  # forget gates mostly open, so token 0 still reaches the last token measurably
        for name, p in net.lstm.named_parameters():
            if name.startswith("bias_ih"):
                p[net.hidden : 2 * net.hidden] = 3.0
    x = quantize(random_images(1, 2, 3))
    base = flat_logits(net, x)[0]
    n = base.shape[0]
    for s in range(n):
        pixel, k = divmod(s, 3)
        r, c = divmod(pixel, 3)
        y = x.clone()
        y[0, k, r, c] = (to_levels(y[0, k, r, c]) + 128) % 256 / 255.0
        moved = flat_logits(net, y)[0]
        for t in range(n):
            assert torch.equal(moved[t], base[t]) == (t <= s), (s, t)


def test_embedding_starts_as_the_one_hot_model():
    one_hot = RowFlattenedLSTM(hidden=8, channel_indicator=True).double()
    table = RowFlattenedLSTM(hidden=8, channel_indicator=True, embedding=True).double()
    missing = table.load_state_dict(one_hot.state_dict(), strict=False).missing_keys
    assert missing == ["embed.weight"]
    x = random_images(2, 3, 4)
    torch.testing.assert_close(table(x), one_hot(x), rtol=0, atol=1e-14)
    with torch.no_grad():
        table.embed.weight[-1] = 1.0  # the start row is the one free extra: a learned start vector
    assert (table(x)[:, 0, :, 0, 0] - one_hot(x)[:, 0, :, 0, 0]).abs().min() > 0


def test_constructor_rejects_bad_sizes():
    for kwargs in ({"hidden": 0}, {"num_layers": 0}, {"hidden": 2.5}, {"hidden": True}):
        with pytest.raises(ValueError):
            RowFlattenedLSTM(**kwargs)


def test_a_few_adam_steps_lower_the_loss():
    torch.manual_seed(0)
    net = RowFlattenedLSTM(hidden=16)
    x = quantize(torch.rand(4, 3, 4, 4))
    target = to_levels(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        return F.cross_entropy(net(x).transpose(1, 2), target)

    first = loss().item()
    for _ in range(25):
        opt.zero_grad()
        step = loss()
        step.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    assert loss().item() < first - 0.3
