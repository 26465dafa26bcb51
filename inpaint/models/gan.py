"""One training mechanism for every adversarial model (ISNet, the context-encoder GAN and WGAN, the progressive
GAN prior). A subclass says *what* the networks and the losses are; this module says *when* each network
steps, and it reads like the algorithm::

    for each batch (one Lightning training step):
        fake = G(batch)                                        # with gradients only if G steps now
        critic step:  L_D, logs, aux = D-loss(batch, fake.detach()) [+ gradient penalty]
                      backward, D optimizer step, after-D hooks (weight clipping)
        if the critic cycle is complete (n_critic critic steps; more during a warm-up):
            generator step: L_G = G-loss(batch, fake, aux) with D frozen
                            backward, G optimizer step, EMA update      -> global_step += 1

``update: simultaneous`` is the other order, the one ISNet's authors' code computes: both losses against
the same, pre-update D, one backward of ``L_D + L_G`` (they reach disjoint parameters, so the gradients
are the two separate ones, and DDP sees one backward per forward), then D steps, then G.

The subclass contract (the mechanism does the bookkeeping, so no subclass can forget a step):

* **Networks.** A subclass's ``__init__`` creates ``self.generator`` and ``self.discriminator``. Once the whole
  ``__init__`` chain of the instance has returned, the mechanism checks that both exist and, with
  ``model.gan.ema`` set, builds ``generator_ema`` itself (a frozen copy of the generator as constructed, official
  weights included): no subclass calls anything for it, so the copy is in the state dict and in every
  checkpoint from construction on, and cannot be forgotten. (The step runs in the metaclass's ``__call__``, after
  ``__init__``; Lightning's ``save_hyperparameters`` frames are untouched.) Loading weights that hold no
  ``generator_ema`` entries (``init_from=`` a model without an EMA) restarts the copy from the loaded generator.
* **Evaluation.** :attr:`GANModule.eval_generator` (``generator_ema`` when ``model.gan.ema`` is set, else
  ``generator``, in either mode) is the one generator that ``forward``, ``inpaint`` and its procedures, grids and
  samples run; no evaluation path calls ``self.generator``. The training losses use :meth:`GANModule.generate`
  (the generator itself).
* **Losses.** :meth:`GANModule.discriminator_loss` returns a :class:`CriticLoss` ``(loss, logs, aux)``; ``aux``
  (e.g. ISNet's feature-matching targets) is handed to :meth:`GANModule.generator_loss` of the same iteration,
  explicitly: no loss method keeps state on the module. Every adversarial term comes from :mod:`inpaint.losses`
  (:class:`~inpaint.losses.AdversarialLoss` by kind, :func:`~inpaint.losses.gradient_penalty`).

What is configuration (``model.gan``), not code:

* ``n_critic`` and the warm-up (``critic_warmup: {steps, first, every}``: ``steps`` critic steps per
  generator step for the first ``first`` generator iterations and every ``every``-th one; Arjovsky's WGAN
  uses 100 / 25 / 500). Each critic step takes the training step's own, fresh batch.
* ``clip``: after every critic step, every critic parameter is clamped to ``[-clip, clip]`` (WGAN).
* ``gradient_penalty``: weight of ``(||grad D(x_hat)|| - 1)^2`` at random interpolates (WGAN-GP,
  :func:`inpaint.losses.gradient_penalty`), 0 = off.
* ``ema``: decay of an exponential moving average copy of G (``generator_ema``, built by the mechanism and
  used for evaluation and prediction), null = off.
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
from typing import Any, NamedTuple

import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from inpaint.compat import ddp_find_unused_parameters
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.losses import gradient_penalty
from inpaint.models.base import InpaintModule
from inpaint.models.optimizers import Injected
from inpaint.models.options import read_options

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


@dataclass(frozen=True)
class WarmupOptions:
    """``model.gan.critic_warmup``: ``steps`` critic steps per generator step for the first ``first`` generator
    iterations and every ``every``-th one."""

    steps: int = 0
    first: int = 0
    every: int = 0


@dataclass(frozen=True)
class GANOptions:
    """``model.gan``: the schedule and hooks of the GAN mechanism (the module doc says what each does)."""

    update: str = "alternating"
    n_critic: int = 1
    critic_warmup: dict | None = None
    clip: float | None = None
    gradient_penalty: float = 0.0
    ema: float | None = None
    reset_optimizers_at: list | None = None


class CriticLoss(NamedTuple):
    """What :meth:`GANModule.discriminator_loss` returns: the critic's loss, the terms to log (``train/<name>``)
    and ``aux``, anything the generator loss of the same iteration needs from the critic step (e.g. D's features
    of the real batch). The mechanism passes ``aux`` to :meth:`GANModule.generator_loss` and keeps nothing."""

    loss: Tensor
    logs: dict[str, Tensor]
    aux: Any = None


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


_ModuleType = type(InpaintModule)


class GANModuleType(_ModuleType):
    """The metaclass of :class:`GANModule`: after an instance's whole ``__init__`` chain has run, it calls
    :meth:`GANModule._finish_networks` (the checks and the EMA copy), so no subclass has to remember a call."""

    def __call__(cls, *args: Any, **kwargs: Any):
        module = _ModuleType.__call__(cls, *args, **kwargs)
        module._finish_networks()
        return module


class GANModule(InpaintModule, metaclass=GANModuleType):
    """Base class of the adversarial models: the schedule, the steps, the hooks, the EMA generator.

    The subclass contract (the optimizers are injected: ``model.optimizer`` steps the generator,
    ``model.optimizer_d`` the discriminator or critic):

    * ``__init__`` creates ``self.generator`` and ``self.discriminator`` (``nn.Module``) and calls nothing for the
      EMA: after the whole ``__init__`` the mechanism checks both (a ``TypeError`` names a missing one) and builds
      ``generator_ema`` itself when ``model.gan.ema`` is set;
    * :meth:`generate` -- the generator's output for a training batch (what the losses need; ``self.generator``);
    * :meth:`discriminator_loss` -- a :class:`CriticLoss` ``(L_D, logs, aux)`` from the batch and the detached
      fake, with every adversarial term from :mod:`inpaint.losses`;
    * :meth:`generator_loss` -- ``(L_G, logs)`` from the batch, the fake and the critic step's ``aux`` (called
      with D frozen);
    * evaluation (``forward``, procedures, samples) runs :attr:`eval_generator`, never ``self.generator``;
    * optionally :meth:`critic_inputs` (what D sees, for the gradient penalty) and
      :meth:`discriminator_logits` (D's score when it returns more than a tensor).

    Args:
        gan: ``update`` (alternating | simultaneous), ``n_critic``, ``critic_warmup`` ({steps, first,
            every}), ``clip``, ``gradient_penalty``, ``ema``, ``reset_optimizers_at`` (see the module doc).
        optimizer, optimizer_d: partials of the generator's and the discriminator's optimizers.
    """

    def __init__(
        self,
        gan: Mapping | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        optimizer_d: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(buckets=buckets, nan_check_every=nan_check_every, optimizer=optimizer)
        self.injected["optimizer_d"] = Injected.parse(optimizer_d, "model.optimizer_d")
        if scheduler is not None:
            raise ValueError(
                f"model.scheduler is not supported by {type(self).__name__}: a GAN steps its optimizers by hand "
                "(one generator iteration per several critic steps), so leave model.scheduler null"
            )
        self.automatic_optimization = False
        cfg = read_options(GANOptions, gan, "model.gan")
        if cfg.update not in UPDATES:
            raise ValueError(f"model.gan.update={cfg.update!r}: choose one of {', '.join(UPDATES)}")
        warm = read_options(WarmupOptions, cfg.critic_warmup, "model.gan.critic_warmup")
        self.schedule = CriticSchedule(cfg.n_critic, warm.steps, warm.first, warm.every)
        self.update = cfg.update
        if self.update == "simultaneous" and (self.schedule.n_critic != 1 or self.schedule.warmup_steps):
            raise ValueError("model.gan.update=simultaneous steps D and G together: it needs n_critic=1 and no warm-up")
        self.clip = cfg.clip
        if self.clip is not None and self.clip <= 0:
            raise ValueError(f"model.gan.clip must be > 0 (or null), got {self.clip}")
        self.gp_weight = cfg.gradient_penalty
        self.ema_decay = cfg.ema
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"model.gan.ema must be in (0, 1) (or null), got {self.ema_decay}")
        self.reset_at = frozenset(int(s) for s in cfg.reset_optimizers_at or ())
        #: critic steps done in the current cycle (checkpointed)
        self.critic_done = 0
        #: False when the configured losses never use D (then only G steps)
        self.trains_discriminator = True
        #: the EMA copy of the generator, built after ``__init__`` when ``model.gan.ema`` is set
        self.generator_ema: nn.Module | None = None

    # ------------------------------------------------------------------------------- subclass contract
    def generate(self, batch: dict) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def discriminator_loss(self, batch: dict, fake: Tensor) -> CriticLoss:  # pragma: no cover - abstract
        raise NotImplementedError

    def generator_loss(self, batch: dict, fake: Tensor, aux: Any = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:  # pragma: no cover - abstract
        """``(L_G, logs)``; ``aux`` is the :class:`CriticLoss` ``aux`` of this iteration's critic step (``None``
        when the configured losses train no discriminator)."""
        raise NotImplementedError

    def critic_inputs(self, batch: dict, fake: Tensor) -> tuple[Tensor, Tensor]:
        """What D sees of a real and of a fake sample (the gradient penalty interpolates between them)."""
        return batch["image"], fake

    def discriminator_logits(self, x: Tensor) -> Tensor:
        out = self.discriminator(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def configure_optimizers(self):
        """``[model.optimizer over G, model.optimizer_d over D]`` (parameters that require gradients)."""
        params = [[p for p in net.parameters() if p.requires_grad] for net in (self.generator, self.discriminator)]
        return [self.build_optimizer("optimizer", params[0]), self.build_optimizer("optimizer_d", params[1])]

    # ------------------------------------------------------------------------------- the networks, the EMA
    def _finish_networks(self) -> None:
        """Run once the instance's whole ``__init__`` chain has returned (:class:`GANModuleType`): check the
        subclass's networks and, with ``ema`` set, build ``generator_ema`` from the generator as constructed."""
        for name in ("generator", "discriminator"):
            if not isinstance(getattr(self, name, None), nn.Module):
                raise TypeError(f"{type(self).__name__}.__init__ must create self.{name} (an nn.Module): the GAN "
                                "mechanism trains self.generator against self.discriminator")
        if self.ema_decay is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_load_state_dict_post_hook(_restart_ema_without_its_weights)

    @property
    def eval_generator(self) -> nn.Module:
        """The one generator that evaluation and prediction run (``forward``, ``inpaint`` and its procedures,
        grids, samples): ``generator_ema`` when ``model.gan.ema`` is set, else ``generator``, whatever the
        module's mode. Training goes through :meth:`generate` instead."""
        return self.generator if self.generator_ema is None else self.generator_ema

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
        """WGAN-GP's penalty (:func:`inpaint.losses.gradient_penalty`) of :meth:`discriminator_logits` between
        a real and a fake batch, unweighted."""
        return gradient_penalty(self.discriminator_logits, real, fake)

    def _critic_loss(self, batch: dict, fake: Tensor) -> CriticLoss:
        """The subclass's :class:`CriticLoss`, plus the weighted gradient penalty when it is configured."""
        out = self.discriminator_loss(batch, fake.detach())
        if not isinstance(out, CriticLoss):
            raise TypeError(f"{type(self).__name__}.discriminator_loss must return a CriticLoss(loss, logs, aux), "
                            f"got {type(out).__name__}")
        if self.gp_weight > 0:
            gp = self.gradient_penalty(*self.critic_inputs(batch, fake))
            out = out._replace(loss=out.loss + self.gp_weight * gp, logs={**out.logs, "gp": gp})
        return out

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
            g_loss, logs = self._generator_loss(batch, fake, None)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._generator_step(opt_g)
            self._log_step(None, g_loss, logs)
            return
        g_turn = self.generator_turn()
        with torch.set_grad_enabled(g_turn):
            fake = self.generate(batch)
        d_loss, logs, aux = self._critic_loss(batch, fake)
        self.check_finite(d_loss, "discriminator loss")
        if self.update == "simultaneous":
            g_loss, g_logs = self._generator_loss(batch, fake, aux)
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
            g_loss, g_logs = self._generator_loss(batch, fake, aux)
            logs = {**logs, **g_logs}
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            self._generator_step(opt_g)
        self._log_step(d_loss, g_loss, logs)

    def _generator_loss(self, batch: dict, fake: Tensor, aux: Any) -> tuple[Tensor, dict[str, Tensor]]:
        with frozen(self.discriminator):  # adversarial gradients reach G (through D's input) but not D
            g_loss, logs = self.generator_loss(batch, fake, aux)
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
        if isinstance(strategy, DDPStrategy) and not ddp_find_unused_parameters(strategy):
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


def _restart_ema_without_its_weights(module: GANModule, incompatible) -> None:
    """``load_state_dict`` post-hook: when the loaded weights held no ``generator_ema`` entry (``init_from=`` a
    model without an EMA, e.g. the L2 context encoder), the copy restarts from the generator just loaded, as it
    starts from the constructed one; with strict loading the missing keys are still reported."""
    keys = [f"generator_ema.{k}" for k in module.generator_ema.state_dict()]
    missing = set(incompatible.missing_keys)
    if keys and all(k in missing for k in keys):
        module.generator_ema.load_state_dict(module.generator.state_dict())
