"""Leaky integrate-and-fire (LIF) neurons with surrogate gradients, and the SC-NN spiking conv layer.

Spec: ``specs/cifar-models-and-scnn.md`` section B3. Discrete time (``dt`` ms per step), constant input current
``I`` (a static image), membrane reset to 0 at the start of *every* forward call (no state on the module):

    for t = 1..T:
        I_t = I + sigma * eps_t                      (additive noise, or I * (1 + sigma * eps_t))
        v   = beta * v + input_gain * I_t            (beta = exp(-dt / tau))
        s_t = H(v - threshold)                       (exact 0/1; fires only when v - threshold > 0)
        v   = v * (1 - s_t) + reset * s_t            (hard reset; the reset term is detached by default)

Readout: ``rate`` = mean_t s_t (values in {0, 1/T, ..., 1}) or ``last`` = s_T.

Spike convention: a neuron fires when ``v - threshold`` is *strictly* greater than 0, as snnTorch does; a membrane
exactly at threshold does not fire.

The backward pass uses a surrogate derivative of the Heaviside step: arctan (snnTorch default, ``alpha = 2``) or
fast sigmoid (``slope = 25``). :class:`LIF` runs the whole T-step loop inside one ``autograd.Function`` with a
hand-written backward-through-time, so that only one tensor per step (the pre-reset membrane) is kept for backward
(plus the noise factors in ``multiplicative`` noise mode). :func:`spike` is the per-step autograd building block; the
tests use it to build an independent autograd reference of the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

SURROGATES = ("arctan", "fast_sigmoid")
NOISE_MODES = ("additive", "multiplicative")
READOUTS = ("rate", "last")


def surrogate_derivative(x: Tensor, surrogate: str = "arctan", alpha: float = 2.0, slope: float = 25.0) -> Tensor:
    """Surrogate dS/dx of the Heaviside step at ``x = v - threshold``.

    arctan: ``(alpha / 2) / (1 + (pi / 2 * alpha * x) ** 2)``; fast_sigmoid: ``1 / (slope * |x| + 1) ** 2``.
    """
    if surrogate == "arctan":
        return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x).square())
    if surrogate == "fast_sigmoid":
        return (slope * x.abs() + 1.0).square().reciprocal()
    raise ValueError(f"surrogate={surrogate!r} is not valid; expected one of {SURROGATES}")


class SurrogateSpike(torch.autograd.Function):
    """Heaviside step (``x > 0`` -> 1) forward; the surrogate derivative of ``surrogate`` backward."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, surrogate: str, alpha: float, slope: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.params = (surrogate, alpha, slope)  # type: ignore[attr-defined]
        return (x > 0).to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        surrogate, alpha, slope = ctx.params  # type: ignore[attr-defined]
        return grad * surrogate_derivative(x, surrogate, alpha=alpha, slope=slope), None, None, None


def spike(v_minus_th: Tensor, surrogate: str = "arctan", alpha: float = 2.0, slope: float = 25.0) -> Tensor:
    """Binary spikes ``H(v - threshold)`` (strictly > 0 fires) with a surrogate gradient."""
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate={surrogate!r} is not valid; expected one of {SURROGATES}")
    return SurrogateSpike.apply(v_minus_th, surrogate, alpha, slope)


@dataclass(frozen=True)
class _LIFConfig:
    """Resolved per-call settings of the LIF loop."""

    time_steps: int
    threshold: float
    reset: float
    beta: float
    gain: float
    noise_std: float  # 0.0 means no noise this call
    multiplicative: bool
    surrogate: str
    alpha: float
    slope: float
    detach_reset: bool
    refractory_steps: int
    last: bool


def _simulate(
    current: Tensor, cfg: _LIFConfig, v_store: Tensor | None, noise_store: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Run the LIF loop without autograd; return (readout, mean spike rate over all steps).

    If given, ``v_store[t]`` receives the pre-reset membrane and ``noise_store[t]`` the multiplicative noise factor.
    """
    drive = current * cfg.gain if cfg.gain != 1.0 else current
    v = torch.zeros_like(current)
    count = torch.zeros_like(current)
    refractory = torch.zeros_like(current, dtype=torch.int32) if cfg.refractory_steps > 0 else None
    spikes = count
    for t in range(cfg.time_steps):
        if cfg.noise_std > 0.0:
            eps = torch.randn_like(current)
            if cfg.multiplicative:
                factor = eps.mul_(cfg.noise_std).add_(1.0)
                if noise_store is not None:
                    noise_store[t].copy_(factor)
                drive_t = drive * factor
            else:
                drive_t = drive + eps.mul_(cfg.noise_std * cfg.gain)
        else:
            drive_t = drive
        if refractory is None:
            v.mul_(cfg.beta).add_(drive_t)
        else:
            v = torch.where(refractory > 0, v, v.mul(cfg.beta).add_(drive_t))
        if v_store is not None:
            v_store[t].copy_(v)
        spikes = v > cfg.threshold
        v.masked_fill_(spikes, cfg.reset)
        count.add_(spikes)
        if refractory is not None:
            refractory = torch.where(spikes, cfg.refractory_steps, (refractory - 1).clamp_(min=0))
    out = spikes.to(current.dtype) if cfg.last else count.div_(cfg.time_steps)
    rate = (count.mean() / cfg.time_steps) if cfg.last else out.mean()
    return out, rate


class _LIFFunction(torch.autograd.Function):
    """The whole T-step LIF loop with a hand-written backward through time."""

    @staticmethod
    def forward(ctx: FunctionCtx, current: Tensor, cfg: _LIFConfig) -> tuple[Tensor, Tensor]:
        steps = (cfg.time_steps, *current.shape)
        v_store = current.new_empty(steps)
        noise_store = current.new_empty(steps) if cfg.multiplicative and cfg.noise_std > 0.0 else None
        out, rate = _simulate(current, cfg, v_store, noise_store)
        if noise_store is None:
            ctx.save_for_backward(v_store)
        else:
            ctx.save_for_backward(v_store, noise_store)
        ctx.cfg = cfg  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(rate)
        return out, rate

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_out: Tensor, _grad_rate: Tensor | None) -> tuple[Tensor, None]:
        cfg: _LIFConfig = ctx.cfg  # type: ignore[attr-defined]
        saved = ctx.saved_tensors  # type: ignore[attr-defined]
        v_store, noise_store = saved[0], (saved[1] if len(saved) > 1 else None)
        n_steps, k = cfg.time_steps, cfg.refractory_steps
        grad_spike = grad_out if cfg.last else grad_out / n_steps
        grad_current = torch.zeros_like(grad_out)
        grad_v: Tensor | None = None  # gradient w.r.t. the post-reset membrane of step t
        for t in reversed(range(n_steps)):
            x = v_store[t] - cfg.threshold
            fired = x > 0
            sg = surrogate_derivative(x, cfg.surrogate, cfg.alpha, cfg.slope)
            grad_pre = grad_spike * sg if (not cfg.last or t == n_steps - 1) else torch.zeros_like(sg)
            if grad_v is not None:
                if cfg.detach_reset:
                    grad_pre += grad_v.masked_fill(fired, 0.0)
                else:  # d(v*(1-s) + reset*s)/dv = (1 - s) + (reset - v) * s'
                    grad_pre += grad_v * ((~fired).to(x.dtype) + (cfg.reset - v_store[t]) * sg)
            drive_grad = grad_pre * noise_store[t] if noise_store is not None else grad_pre
            if k > 0:  # integrating only if no spike in the previous k steps (gate treated as constant)
                blocked = torch.zeros_like(fired)
                for j in range(max(0, t - k), t):
                    blocked |= v_store[j] > cfg.threshold
                grad_current += drive_grad.masked_fill(blocked, 0.0)
                grad_v = torch.where(blocked, grad_pre, grad_pre * cfg.beta)
            else:
                grad_current += drive_grad
                grad_v = grad_pre * cfg.beta
        if cfg.gain != 1.0:
            grad_current *= cfg.gain
        return grad_current, None


def _check_choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {options}")


def _check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is not valid; expected a finite number {bound}")


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons driven by a constant current for ``time_steps`` steps (spec B3).

    The membrane starts at 0 on every call; nothing is carried between calls. Input and output have the same shape.
    Half-precision inputs are simulated in float32 and the readout is cast back (spike rates are exact in fp16/bf16).
    Refractory: a neuron that spiked holds its membrane at ``reset`` (no leak, no input) for ``refractory_steps``
    steps, so the rate is at most ``ceil(T / (refractory_steps + 1)) / T``. The refractory gate passes no gradient.

    Attributes:
        last_spike_rate: mean of all s_t of the last forward call, as a detached 0-dim tensor (``None`` before any
            call); read it with ``.item()`` only where a host sync is acceptable.
    """

    def __init__(
        self,
        time_steps: int = 8,
        threshold: float = 1.0,
        reset: float = 0.0,
        tau: float = 40.0,
        dt: float = 1.0,
        noise_std: float = 0.1,
        noise_mode: str = "additive",
        noise_at_eval: bool = False,
        surrogate: str = "arctan",
        alpha: float = 2.0,
        slope: float = 25.0,
        detach_reset: bool = True,
        refractory_steps: int = 0,
        readout: str = "rate",
        input_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps={time_steps!r} is not valid; expected an integer >= 1")
        if isinstance(refractory_steps, bool) or not isinstance(refractory_steps, int) or refractory_steps < 0:
            raise ValueError(f"refractory_steps={refractory_steps!r} is not valid; expected an integer >= 0")
        if not (math.isfinite(threshold) and math.isfinite(reset) and reset < threshold):
            raise ValueError(
                f"threshold={threshold!r}, reset={reset!r} are not valid; expected finite numbers with reset < threshold"
            )
        _check_positive("tau", tau)
        _check_positive("dt", dt)
        _check_positive("noise_std", noise_std, allow_zero=True)
        _check_positive("alpha", alpha)
        _check_positive("slope", slope)
        if not math.isfinite(input_gain) or input_gain == 0:
            raise ValueError(f"input_gain={input_gain!r} is not valid; expected a finite non-zero number")
        _check_choice("noise_mode", noise_mode, NOISE_MODES)
        _check_choice("surrogate", surrogate, SURROGATES)
        _check_choice("readout", readout, READOUTS)
        self.time_steps = time_steps
        self.threshold = float(threshold)
        self.reset = float(reset)
        self.tau = float(tau)
        self.dt = float(dt)
        self.noise_std = float(noise_std)
        self.noise_mode = noise_mode
        self.noise_at_eval = bool(noise_at_eval)
        self.surrogate = surrogate
        self.alpha = float(alpha)
        self.slope = float(slope)
        self.detach_reset = bool(detach_reset)
        self.refractory_steps = refractory_steps
        self.readout = readout
        self.input_gain = float(input_gain)
        self.last_spike_rate: Tensor | None = None

    @property
    def beta(self) -> float:
        """Membrane decay per step, ``exp(-dt / tau)``."""
        return math.exp(-self.dt / self.tau)

    @property
    def noise_active(self) -> bool:
        """Whether the current forward call adds noise (train mode, or ``noise_at_eval``)."""
        return self.noise_std > 0.0 and (self.training or self.noise_at_eval)

    def _config(self) -> _LIFConfig:
        return _LIFConfig(
            time_steps=self.time_steps,
            threshold=self.threshold,
            reset=self.reset,
            beta=self.beta,
            gain=self.input_gain,
            noise_std=self.noise_std if self.noise_active else 0.0,
            multiplicative=self.noise_mode == "multiplicative",
            surrogate=self.surrogate,
            alpha=self.alpha,
            slope=self.slope,
            detach_reset=self.detach_reset,
            refractory_steps=self.refractory_steps,
            last=self.readout == "last",
        )

    def forward(self, current: Tensor) -> Tensor:
        """Spike rates (``rate``) or last-step spikes (``last``) for an input current of any shape."""
        dtype = current.dtype
        if dtype in (torch.float16, torch.bfloat16):
            current = current.float()
        cfg = self._config()
        if torch.is_grad_enabled() and current.requires_grad:
            out, rate = _LIFFunction.apply(current, cfg)
        else:
            with torch.no_grad():
                out, rate = _simulate(current, cfg, None, None)
        self.last_spike_rate = rate.detach()
        return out.to(dtype)

    @torch.no_grad()
    def trace(self, current: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(spikes, membrane)``, each ``[T, *current.shape]``; membrane is after integration, before reset."""
        cfg = self._config()
        v_store = current.float().new_empty((cfg.time_steps, *current.shape))
        _simulate(current.float(), cfg, v_store, None)
        return (v_store > cfg.threshold).to(v_store.dtype), v_store

    def extra_repr(self) -> str:
        return (
            f"time_steps={self.time_steps}, threshold={self.threshold}, reset={self.reset}, tau={self.tau}, "
            f"dt={self.dt}, noise_std={self.noise_std}, noise_mode={self.noise_mode}, "
            f"noise_at_eval={self.noise_at_eval}, surrogate={self.surrogate}, readout={self.readout}, "
            f"refractory_steps={self.refractory_steps}, detach_reset={self.detach_reset}"
        )


class SNNConv2d(nn.Module):
    """3x3 convolution (stride 1, padding 1) computed once, then :class:`LIF` over ``time_steps`` steps (spec B3).

    Keyword arguments are forwarded to :class:`LIF`. Output: spike rates (or last-step spikes), same spatial size.
    """

    def __init__(self, in_channels: int, out_channels: int, **lif_kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.lif = LIF(**lif_kwargs)  # type: ignore[arg-type]

    @property
    def last_spike_rate(self) -> Tensor | None:
        """Mean spike rate of the last forward call (detached 0-dim tensor), ``None`` before any call."""
        return self.lif.last_spike_rate

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.conv(x))
