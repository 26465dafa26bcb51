"""One training mechanism for every adversarial model (ISNet, the context-encoder GAN and WGAN, and the
progressive GAN prior to come). A subclass says *what* the losses are; this module says *when* each
network steps, and it reads like the algorithm::

    for each batch (one Lightning training step):
        fake = G(batch)                                        # with gradients only if G steps now
        critic step:  L_D = D-loss(D(real), D(fake.detach())) [+ gradient penalty]
                      backward, D optimizer step, after-D hooks (weight clipping)
        if the critic cycle is complete (n_critic critic steps; more during a warm-up):
            generator step: L_G = G-loss(batch, fake) with D frozen
                            backward, G optimizer step, EMA update      -> global_step += 1

``update: simultaneous`` is the other order, the one ISNet's authors' code computes: both losses against
the same, pre-update D, one backward of ``L_D + L_G`` (they reach disjoint parameters, so the gradients
are the two separate ones, and DDP sees one backward per forward), then D steps, then G.

What is configuration (``model.gan``), not code:

* ``n_critic`` and the warm-up (``critic_warmup: {steps, first, every}``: ``steps`` critic steps per
  generator step for the first ``first`` generator iterations and every ``every``-th one; Arjovsky's WGAN
  uses 100 / 25 / 500). Each critic step takes the training step's own, fresh batch.
* ``clip``: after every critic step, every critic parameter is clamped to ``[-clip, clip]`` (WGAN).
* ``gradient_penalty``: weight of ``(||grad D(x_hat)|| - 1)^2`` at random interpolates (WGAN-GP), 0 = off.
* ``ema``: decay of an exponential moving average copy of G (``generator_ema``, used for evaluation and
  prediction), null = off.
* ``reset_optimizers_at``: generator iterations at which both optimizers' states are cleared (e.g. when
  a progressive GAN grows).

Counting and checkpoints: only the generator step goes through Lightning's optimizer wrapper, so
``global_step`` (and ``trainer.max_steps``) count generator iterations whatever the D/G ratio; the
critic steps call the wrapped torch optimizer (``LightningOptimizer.optimizer``, public). Both optimizer
states are in every checkpoint (Lightning stores them), and so is the position inside the critic cycle
(``on_save_checkpoint``), so a run resumed mid-cycle finishes that cycle. Note that
``trainer.val_check_interval`` still counts batches, i.e. critic steps.

Mixed precision (``16-mixed``): PyTorch's recipe for several optimizers. Each optimizer step is
``scaler.step`` and each iteration of backward passes ends with one ``scaler.update``: after a critic-only
step its own; in the alternating order the generator step's (Lightning's) after the D step's; in the
simultaneous order exactly one, after both networks stepped (one scaled backward fed both).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from inpaint.metrics import DEFAULT_BUCKETS
from inpaint.models.base import InpaintModule

log = logging.getLogger(__name__)

UPDATES = ("alternating", "simultaneous")
CYCLE_KEY = "inpaint_gan_cycle"


@dataclass(frozen=True)
class CriticSchedule:
    """How many critic steps precede generator iteration ``g`` (0-based)."""

    n_critic: int = 1
    warmup_steps: int = 0
    warmup_first: int = 0
    warmup_every: int = 0

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise ValueError(f"model.gan.n_critic must be >= 1, got {self.n_critic}")
        if min(self.warmup_steps, self.warmup_first, self.warmup_every) < 0:
            raise ValueError("model.gan.critic_warmup values must be >= 0")

    def critic_steps(self, g: int) -> int:
        warm = g < self.warmup_first or (self.warmup_every > 0 and g % self.warmup_every == 0)
        return self.warmup_steps if self.warmup_steps and warm else self.n_critic


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Gradients of a pass through ``module`` reach its inputs but not its parameters."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class GANModule(InpaintModule):
    """Base class of the adversarial models: the schedule, the steps, the hooks.

    Subclasses create ``self.generator`` and ``self.discriminator``, return ``[opt_g, opt_d]`` from
    ``configure_optimizers`` and implement:

    * :meth:`generate` -- the generator's output for a batch (what the losses need);
    * :meth:`discriminator_loss` -- ``(L_D, logs)`` from the batch and the detached fake;
    * :meth:`generator_loss` -- ``(L_G, logs)`` (called with D frozen);
    * optionally :meth:`critic_inputs` (what D sees, for the gradient penalty) and
      :meth:`discriminator_logits` (D's score when it returns more than a tensor).

    Args:
        gan: ``update`` (alternating | simultaneous), ``n_critic``, ``critic_warmup`` ({steps, first,
            every}), ``clip``, ``gradient_penalty``, ``ema``, ``reset_optimizers_at`` (see the module doc).
    """

    def __init__(
        self,
        gan: Mapping | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
    ) -> None:
        super().__init__(buckets=buckets, nan_check_every=nan_check_every)
        self.automatic_optimization = False
        cfg = {"update": "alternating", "n_critic": 1, "critic_warmup": None, "clip": None,
               "gradient_penalty": 0.0, "ema": None, "reset_optimizers_at": (), **(gan or {})}
        unknown = sorted(set(cfg) - {"update", "n_critic", "critic_warmup", "clip", "gradient_penalty", "ema",
                                     "reset_optimizers_at"})
        if unknown:
            raise ValueError(f"model.gan: unknown option(s) {unknown}")
        if cfg["update"] not in UPDATES:
            raise ValueError(f"model.gan.update={cfg['update']!r}: choose one of {', '.join(UPDATES)}")
        warm = dict(cfg["critic_warmup"] or {})
        self.schedule = CriticSchedule(int(cfg["n_critic"]), int(warm.get("steps", 0)), int(warm.get("first", 0)),
                                       int(warm.get("every", 0)))
        self.update = str(cfg["update"])
        if self.update == "simultaneous" and (self.schedule.n_critic != 1 or self.schedule.warmup_steps):
            raise ValueError("model.gan.update=simultaneous steps D and G together: it needs n_critic=1 and no warm-up")
        self.clip = float(cfg["clip"]) if cfg["clip"] is not None else None
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"model.gan.clip must be > 0 (or null), got {self.clip}")
        self.gp_weight = float(cfg["gradient_penalty"] or 0.0)
        self.ema_decay = float(cfg["ema"]) if cfg["ema"] is not None else None
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"model.gan.ema must be in (0, 1) (or null), got {self.ema_decay}")
        self.reset_at = frozenset(int(s) for s in cfg["reset_optimizers_at"] or ())
        #: critic steps done in the current cycle (checkpointed)
        self.critic_done = 0
        #: False when the configured losses never use D (then only G steps)
        self.trains_discriminator = True

    # ------------------------------------------------------------------------------- subclass contract
    def generate(self, batch: dict) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator_loss(self, batch: dict, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def generator_loss(self, batch: dict, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def critic_inputs(self, batch: dict, fake: Tensor) -> tuple[Tensor, Tensor]:
        """What D sees of a real and of a fake sample (the gradient penalty interpolates between them)."""
        return batch["image"], fake

    def discriminator_logits(self, x: Tensor) -> Tensor:
        out = self.discriminator(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    # ------------------------------------------------------------------------------- the EMA generator
    def attach_ema(self) -> None:
        """Create ``generator_ema`` (with ``ema`` set); subclasses call it once ``self.generator`` exists, so
        the copy is part of the state dict and of every checkpoint."""
        if self.ema_decay is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)

    @property
    def eval_generator(self) -> nn.Module:
        """The generator evaluation and prediction use: the EMA copy when there is one."""
        ema = getattr(self, "generator_ema", None)
        return ema if ema is not None and not self.training else self.generator

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.ema_decay
        for e, p in zip(self.generator_ema.parameters(), self.generator.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            e.copy_(b)

    # ------------------------------------------------------------------------------- steps
    @property
    def _scaler(self):
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def _raw_step(self, optimizer, update_scale: bool) -> None:
        """Step the torch optimizer behind a LightningOptimizer: no global_step count, no Lightning hooks."""
        scaler = self._scaler
        if scaler is None:
            optimizer.optimizer.step()
            return
        scaler.step(optimizer.optimizer)
        if update_scale:
            scaler.update()

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        """``mean((||grad_x D(x_hat)||_2 - 1)^2)`` at ``x_hat = e*real + (1-e)*fake``, ``e ~ U(0,1)`` per sample."""
        e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
        score = self.discriminator_logits(x_hat)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()

    def _critic_loss(self, batch: dict, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        d_loss, logs = self.discriminator_loss(batch, fake.detach())
        if self.gp_weight > 0:
            gp = self.gradient_penalty(*self.critic_inputs(batch, fake))
            d_loss = d_loss + self.gp_weight * gp
            logs = {**logs, "gp": gp}
        return d_loss, logs

    def after_discriminator_step(self) -> None:
        """Hook after every critic step: WGAN's weight clipping when ``clip`` is set."""
        if self.clip is not None:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.clip, self.clip)

    def after_generator_step(self) -> None:
        """Hook after every generator step: the EMA update; optimizer resets at their iterations."""
        if self.ema_decay is not None:
            self._update_ema()
        if self.global_step in self.reset_at:
            self.reset_optimizer_states()

    def reset_optimizer_states(self) -> None:
        """Clear every optimizer's state (moments, step counts), e.g. when a network's shape changes."""
        for opt in self.optimizers():
            opt.optimizer.state.clear()
        log.info("optimizer states reset at generator iteration %d", self.global_step)

    def generator_turn(self) -> bool:
        """Whether this training step's critic step completes the cycle, so G steps too."""
        return self.critic_done + 1 >= self.schedule.critic_steps(self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        if not self.trains_discriminator:
            fake = self.generate(batch)
            g_loss, logs = self._generator_loss(batch, fake)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._generator_step(opt_g)
            self._log_step(None, g_loss, logs)
            return
        g_turn = self.generator_turn()
        with torch.set_grad_enabled(g_turn):
            fake = self.generate(batch)
        d_loss, logs = self._critic_loss(batch, fake)
        self.check_finite(d_loss, "discriminator loss")
        if self.update == "simultaneous":
            g_loss, g_logs = self._generator_loss(batch, fake)
            opt_g.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss + g_loss)
            self._raw_step(opt_d, update_scale=False)  # the scale changes once, in G's step below
            self.after_discriminator_step()
            self._generator_step(opt_g)
            self._log_step(d_loss, g_loss, {**logs, **g_logs})
            return
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        self._raw_step(opt_d, update_scale=True)
        self.after_discriminator_step()
        self.critic_done += 1
        g_loss = None
        if g_turn:
            g_loss, g_logs = self._generator_loss(batch, fake)
            logs.update(g_logs)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._generator_step(opt_g)
        self._log_step(d_loss, g_loss, logs)

    def _generator_loss(self, batch: dict, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with frozen(self.discriminator):  # adversarial gradients reach G (through D's input) but not D
            g_loss, logs = self.generator_loss(batch, fake)
        self.check_finite(g_loss, "generator loss")
        return g_loss, logs

    def _generator_step(self, opt_g) -> None:
        opt_g.step()  # through Lightning: global_step += 1, AMP scale update
        self.critic_done = 0
        self.after_generator_step()

    def _log_step(self, d_loss: Tensor | None, g_loss: Tensor | None, terms: dict[str, Tensor]) -> None:
        logs = {f"train/{k}": v.detach() for k, v in terms.items()}
        if d_loss is not None:
            logs["train/d_loss"] = d_loss.detach()
        if g_loss is not None:
            logs["train/g_loss"] = g_loss.detach()
        self.log_dict(logs)
        if g_loss is not None:
            self.log("train/loss", g_loss.detach(), prog_bar=True)

    # ------------------------------------------------------------------------------- checks, checkpoints
    def unused_parameter_reasons(self) -> list[str]:
        """Why some parameters get no gradient in a training step (DDP without find_unused_parameters
        refuses that); subclasses add their own."""
        reasons = []
        if not self.trains_discriminator:
            reasons.append("the configured losses do not use the discriminator, so it is not trained")
        elif self.update == "alternating" and (self.schedule.n_critic > 1 or self.schedule.warmup_steps):
            reasons.append(f"model.gan.n_critic={self.schedule.n_critic} (or a critic warm-up) makes training "
                           "steps in which only the critic learns")
        return reasons

    def on_fit_start(self) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
            reasons = self.unused_parameter_reasons()
            if reasons:
                raise ValueError(
                    "; ".join(reasons) + ": DDP refuses parameters without gradients. Add "
                    "trainer.strategy=ddp_find_unused_parameters_true (or +trainer.strategy.find_unused_parameters=true "
                    "with trainer=ddp_cpu)"
                )
        if self.trainer.gradient_clip_val:
            raise ValueError(
                f"trainer.gradient_clip_val is not supported by {type(self).__name__} (manual optimisation of "
                "two networks): leave it null"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CYCLE_KEY] = {"critic_done": int(self.critic_done)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.critic_done = int(checkpoint.get(CYCLE_KEY, {}).get("critic_done", 0))
