"""Tests for the LIF neuron, SNNConv2d and the SC-NN network (spec B2/B3, section C item 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from inpaint.nets.lif import LIF, SNNConv2d, spike, surrogate_derivative
from inpaint.nets.scnn import SCNN

BETA = math.exp(-1.0 / 40.0)


def quiet_lif(**kwargs: object) -> LIF:
    """A noise-free LIF in eval mode."""
    kwargs.setdefault("noise_std", 0.0)
    return LIF(**kwargs).eval()  # type: ignore[arg-type]


def const(value: float, shape: tuple[int, ...] = (1,)) -> Tensor:
    return torch.full(shape, value, dtype=torch.float32)


def reference_spikes(
    current: Tensor,
    *,
    time_steps: int,
    threshold: float = 1.0,
    reset: float = 0.0,
    beta: float = BETA,
    noise_std: float = 0.0,
    multiplicative: bool = False,
    surrogate: str = "arctan",
    detach_reset: bool = True,
    refractory_steps: int = 0,
    input_gain: float = 1.0,
) -> Tensor:
    """Step-by-step autograd reference of the LIF loop built from ``spike``; returns ``[T, ...]`` spikes."""
    v = torch.zeros_like(current)
    blocked = torch.zeros_like(current, dtype=torch.int64)
    out = []
    for _ in range(time_steps):
        i_t = current
        if noise_std > 0:
            eps = torch.randn_like(current)
            i_t = current * (1 + noise_std * eps) if multiplicative else current + noise_std * eps
        new = beta * v + input_gain * i_t
        v = torch.where(blocked > 0, v, new) if refractory_steps else new
        s = spike(v - threshold, surrogate)
        r = s.detach() if detach_reset else s
        v = v * (1 - r) + reset * r
        if refractory_steps:
            blocked = torch.where(s.detach() > 0, refractory_steps, (blocked - 1).clamp(min=0))
        out.append(s)
    return torch.stack(out)


def numpy_spikes(current: np.ndarray, time_steps: int, beta: float, refractory_steps: int = 0) -> np.ndarray:
    """Plain per-neuron Python loop in float32 (threshold 1, reset 0, no noise)."""
    flat = current.astype(np.float32).ravel()
    out = np.zeros((time_steps, flat.size), dtype=np.float32)
    b = np.float32(beta)
    for n, i in enumerate(flat):
        v, wait = np.float32(0.0), 0
        for t in range(time_steps):
            if wait > 0:
                wait -= 1
                continue
            v = np.float32(b * v) + i
            if v > 1.0:
                out[t, n] = 1.0
                v = np.float32(0.0)
                wait = refractory_steps
    return out.reshape((time_steps, *current.shape))


# ----------------------------------------------------------------------------------------------- LIF dynamics


def test_beta_is_exp_minus_dt_over_tau() -> None:
    assert LIF().beta == pytest.approx(BETA)
    assert LIF(tau=10.0, dt=2.0).beta == pytest.approx(math.exp(-0.2))


def test_integrate_closed_form_and_first_spike() -> None:
    c = 0.3
    # First step n with c * (1 - beta^n) / (1 - beta) > 1, solved in closed form.
    n_star = math.floor(math.log(1 - (1 - BETA) / c) / math.log(BETA)) + 1
    assert n_star == 4
    spikes, membrane = quiet_lif(time_steps=2 * n_star).trace(const(c))
    expected_v = [c * (1 - BETA**n) / (1 - BETA) for n in range(1, n_star + 1)]
    assert membrane[:n_star, 0].tolist() == pytest.approx(expected_v, rel=1e-6)
    # Spike at step n*, reset to 0, identical second cycle: spikes at n* and 2n*.
    expected_s = [0.0] * (2 * n_star)
    expected_s[n_star - 1] = expected_s[2 * n_star - 1] = 1.0
    assert spikes[:, 0].tolist() == expected_s
    assert membrane[n_star:, 0].tolist() == pytest.approx(expected_v, rel=1e-6)
    rate = quiet_lif(time_steps=2 * n_star)(const(c))
    assert rate.item() == pytest.approx(2 / (2 * n_star))


def test_leak_keeps_weak_current_below_threshold() -> None:
    # Steady state c / (1 - beta) = 0.81 < 1: never fires (without leak it would fire at step 51).
    c, steps = 0.02, 120
    spikes, membrane = quiet_lif(time_steps=steps).trace(const(c))
    assert spikes.sum().item() == 0
    expected = [c * (1 - BETA**n) / (1 - BETA) for n in range(1, steps + 1)]
    assert membrane[:, 0].tolist() == pytest.approx(expected, rel=1e-5)
    no_leak_spikes, _ = quiet_lif(time_steps=steps, tau=1e12).trace(const(c))
    assert no_leak_spikes[:, 0].nonzero().flatten().tolist() == [50, 101]


def test_fires_only_strictly_above_threshold() -> None:
    lif = quiet_lif(time_steps=1, readout="last")
    at = const(1.0)
    above = torch.nextafter(at, torch.tensor(2.0))
    assert lif(at).item() == 0.0
    assert lif(above).item() == 1.0
    # Crossing between steps: 0.5 -> 0.5 + 0.5 * beta < 1 -> fires at step 3.
    spikes, _ = quiet_lif(time_steps=3).trace(const(0.5))
    assert spikes[:, 0].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("reset", [0.0, -0.5])
def test_hard_reset_after_spike(reset: float) -> None:
    c = 0.6  # v1 = 0.6, v2 = 0.6 * (1 + beta) > 1 fires, then v3 = beta * reset + c.
    spikes, membrane = quiet_lif(time_steps=3, reset=reset).trace(const(c))
    assert spikes[:, 0].tolist() == [0.0, 1.0, 0.0]
    assert membrane[2, 0].item() == pytest.approx(BETA * reset + c, rel=1e-6)


def test_rate_readout_is_quantised_in_unit_interval() -> None:
    torch.manual_seed(0)
    lif = LIF(time_steps=8).train()
    out = lif(torch.randn(4, 8, 5, 5) + 0.5)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out * 8, (out * 8).round())
    assert 0 < out.mean().item() < 1
    assert lif.last_spike_rate is not None and not lif.last_spike_rate.requires_grad
    assert lif.last_spike_rate.dim() == 0
    assert lif.last_spike_rate.item() == pytest.approx(out.mean().item())


def test_last_readout_is_binary_and_equals_last_step() -> None:
    torch.manual_seed(1)
    current = torch.randn(3, 4, 6, 6) + 0.5
    lif = quiet_lif(time_steps=5, readout="last")
    out = lif(current)
    spikes, _ = lif.trace(current)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out, spikes[-1])
    assert lif.last_spike_rate is not None
    assert lif.last_spike_rate.item() == pytest.approx(spikes.mean().item())


@pytest.mark.parametrize("train", [False, True])
def test_single_step_last_equals_heaviside_of_conv(train: bool) -> None:
    torch.manual_seed(2)
    layer = SNNConv2d(3, 16, time_steps=1, readout="last", noise_std=0.0).train(train)
    x = torch.rand(2, 3, 8, 8) * 4
    out = layer(x)
    expected = (layer.conv(x) - 1.0 > 0).float()
    assert torch.equal(out, expected)
    assert 0 < out.mean().item() < 1


@pytest.mark.parametrize("refractory_steps", [0, 2])
def test_matches_numpy_reference(refractory_steps: int) -> None:
    rng = np.random.default_rng(3)
    current = rng.normal(0.4, 0.6, size=(2, 3, 7, 7)).astype(np.float32)
    lif = quiet_lif(time_steps=12, refractory_steps=refractory_steps)
    spikes, _ = lif.trace(torch.from_numpy(current))
    np.testing.assert_array_equal(spikes.numpy(), numpy_spikes(current, 12, BETA, refractory_steps))
    rate = lif(torch.from_numpy(current))
    np.testing.assert_allclose(rate.numpy(), spikes.mean(0).numpy(), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("steps", "refractory_steps", "expected"), [(8, 0, 1.0), (8, 1, 0.5), (8, 2, 3 / 8)])
def test_refractory_caps_rate(steps: int, refractory_steps: int, expected: float) -> None:
    lif = quiet_lif(time_steps=steps, refractory_steps=refractory_steps)
    out = lif(const(1e3, (2, 3)))
    assert torch.all(out == expected)


# ------------------------------------------------------------------------------------- surrogate gradients


@pytest.mark.parametrize("x", [-0.7, 0.0, 0.3])
def test_surrogate_derivative_matches_formula(x: float) -> None:
    alpha, slope = 2.0, 25.0
    for name, formula in [
        ("arctan", (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)),
        ("fast_sigmoid", 1 / (slope * abs(x) + 1) ** 2),
    ]:
        v = torch.tensor([x], requires_grad=True)
        s = spike(v, name, alpha=alpha, slope=slope)
        assert s.item() == float(x > 0)
        s.sum().backward()
        assert v.grad is not None
        assert v.grad.item() == pytest.approx(formula, rel=1e-6)
        assert surrogate_derivative(torch.tensor(x), name).item() == pytest.approx(formula, rel=1e-6)
    v = torch.tensor([0.3], requires_grad=True)
    spike(v, "arctan", alpha=4.0).sum().backward()
    assert v.grad is not None and v.grad.item() == pytest.approx(2.0 / (1 + (math.pi * 2 * 0.3) ** 2), rel=1e-6)


def test_gradient_reaches_conv_weights() -> None:
    torch.manual_seed(4)
    layer = SNNConv2d(3, 8).train()
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    layer(x).square().sum().backward()
    grads = [layer.conv.weight.grad, layer.conv.bias.grad, x.grad]
    for g in grads:
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize(
    "cfg",
    [
        {},
        {"readout": "last"},
        {"detach_reset": False, "reset": -0.3},
        {"surrogate": "fast_sigmoid", "input_gain": 0.5},
        {"refractory_steps": 2, "detach_reset": False},
        {"refractory_steps": 1, "readout": "last"},
        {"noise_std": 0.3},
        {"noise_std": 0.3, "noise_mode": "multiplicative", "refractory_steps": 1},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default",
)
def test_fused_backward_matches_autograd_reference(cfg: dict[str, object]) -> None:
    """The hand-written backward-through-time equals autograd through the step-by-step reference loop."""
    steps = 6
    torch.manual_seed(5)
    base = (torch.randn(2, 3, 5, 5) * 0.8 + 0.6).requires_grad_()
    weight = torch.randn(2, 3, 5, 5)
    lif = LIF(time_steps=steps, **{"noise_std": 0.0, **cfg}).train()  # type: ignore[arg-type]

    torch.manual_seed(6)
    out = lif(base)
    (grad,) = torch.autograd.grad((out * weight).sum(), base)

    torch.manual_seed(6)
    spikes = reference_spikes(
        base,
        time_steps=steps,
        reset=lif.reset,
        noise_std=lif.noise_std,
        multiplicative=lif.noise_mode == "multiplicative",
        surrogate=lif.surrogate,
        detach_reset=lif.detach_reset,
        refractory_steps=lif.refractory_steps,
        input_gain=lif.input_gain,
    )
    ref_out = spikes[-1] if lif.readout == "last" else spikes.mean(0)
    (ref_grad,) = torch.autograd.grad((ref_out * weight).sum(), base)

    assert torch.equal(out, ref_out.detach())
    assert 0 < spikes.mean().item() < 1
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ state and noise


def test_eval_is_deterministic_without_leaked_state() -> None:
    torch.manual_seed(7)
    layer = SNNConv2d(3, 8).eval()  # default noise_std=0.1 is off in eval
    x = torch.rand(2, 3, 8, 8) * 3
    first = layer(x)
    layer(torch.rand(5, 3, 8, 8) * 3)  # different batch size in between
    second = layer(x)
    assert torch.equal(first, second)
    lif = quiet_lif()
    current = torch.randn(4, 4) + 0.8
    assert torch.equal(lif(current), lif(current))
    with torch.no_grad():
        assert torch.equal(layer(x), first)


def test_noise_on_in_train_off_in_eval() -> None:
    torch.manual_seed(8)
    current = torch.randn(4, 8, 6, 6) + 0.9
    lif = LIF(noise_std=0.1)
    lif.train()
    assert not torch.equal(lif(current), lif(current))
    lif.eval()
    assert torch.equal(lif(current), lif(current))
    assert torch.equal(lif(current), quiet_lif()(current))
    lif_eval_noise = LIF(noise_std=0.1, noise_at_eval=True).eval()
    assert not torch.equal(lif_eval_noise(current), lif_eval_noise(current))
    mult = LIF(noise_std=0.1, noise_mode="multiplicative").train()
    assert not torch.equal(mult(current), mult(current))
    assert torch.equal(mult(torch.zeros(3, 3)), torch.zeros(3, 3))  # multiplicative noise on zero current is zero


def test_half_precision_input() -> None:
    current = torch.randn(2, 4, 5, 5) + 0.7
    lif = quiet_lif()
    out = lif(current.bfloat16())
    assert out.dtype == torch.bfloat16
    assert torch.equal(out.float(), lif(current.bfloat16().float()))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"time_steps": 0}, "time_steps"),
        ({"time_steps": 2.5}, "time_steps"),
        ({"tau": 0.0}, "tau"),
        ({"dt": -1.0}, "dt"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_mode": "gaussian"}, "noise_mode"),
        ({"surrogate": "sigmoid"}, "surrogate"),
        ({"alpha": 0.0}, "alpha"),
        ({"slope": -1.0}, "slope"),
        ({"refractory_steps": -1}, "refractory_steps"),
        ({"readout": "mean"}, "readout"),
        ({"reset": 1.0}, "reset"),
        ({"input_gain": 0.0}, "input_gain"),
    ],
)
def test_invalid_lif_args(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LIF(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        SNNConv2d(3, 4, **kwargs)


def test_invalid_surrogate_name() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        spike(torch.zeros(1), "step")
    with pytest.raises(ValueError, match="surrogate"):
        surrogate_derivative(torch.zeros(1), "step")


# --------------------------------------------------------------------------------------------------- SCNN


def test_scnn_parameter_count() -> None:
    model = SCNN()
    assert sum(p.numel() for p in model.parameters()) == 335_683
    assert [sum(p.numel() for p in m.parameters()) for m in model.net if any(True for _ in m.parameters())] == [
        1_792,
        36_928,
        73_856,
        147_584,
        73_792,
        1_731,
    ]
    assert isinstance(model.net[2], SNNConv2d) and model.spiking_layer is model.net[2]
    assert sum(p.numel() for p in SCNN(in_channels=4).parameters()) == 335_683 + 64 * 9


@pytest.mark.parametrize("position", range(1, 7))
def test_scnn_shapes_each_position(position: int) -> None:
    torch.manual_seed(9)
    model = SCNN(in_channels=4, snn_position=position, lif={"time_steps": 3})
    snn_layers = [m for m in model.net if isinstance(m, SNNConv2d)]
    assert len(snn_layers) == 1 and snn_layers[0] is model.spiking_layer and snn_layers[0].lif.time_steps == 3
    assert model.last_spike_rate is None
    x = torch.rand(2, 4, 12, 10)
    out = model(x)
    assert out.shape == (2, 3, 12, 10)
    assert out.min() >= 0  # ReLU output
    rate = model.last_spike_rate
    assert rate is not None and rate.dim() == 0 and 0 <= rate.item() <= 1


def test_scnn_backward_and_final_activations() -> None:
    torch.manual_seed(10)
    model = SCNN(widths=(8, 8, 8, 8, 8), final_activation="none", lif={"noise_std": 0.1})
    first = model.net[0]
    assert isinstance(first, torch.nn.Conv2d)
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    sig = SCNN(widths=(8, 8, 8, 8, 8), final_activation="sigmoid").eval()
    out = sig(torch.rand(1, 3, 6, 6))
    assert out.min() > 0 and out.max() < 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"snn_position": 0}, "snn_position"),
        ({"snn_position": 7}, "snn_position"),
        ({"widths": (64, 64, 128)}, "widths"),
        ({"final_activation": "tanh"}, "final_activation"),
        ({"in_channels": 0}, "in_channels"),
        ({"lif": {"readout": "max"}}, "readout"),
    ],
)
def test_invalid_scnn_args(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SCNN(**kwargs)  # type: ignore[arg-type]
