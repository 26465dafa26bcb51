"""Training the PGGAN prior (``model=pggan``): Karras et al.'s progressive growing on the framework's datasets.

Follows ``specs/mganprior-pggan.md`` section 2.6 on the shared GAN mechanism (:mod:`inpaint.models.gan`), with the
networks of :mod:`inpaint.nets.pggan`:

* **Loss**: WGAN-GP with drift. ``L_D = D(fake) - D(real) + 10 * (||grad D(x_hat)|| - 1)^2 + drift * D(real)^2``
  (means over the batch), ``L_G = -D(fake)``: the ``wgan`` kind of :class:`~inpaint.losses.AdversarialLoss` with
  its ``drift`` option, plus :func:`~inpaint.losses.gradient_penalty` weighted by the mechanism's
  ``gan.gradient_penalty``.
* **Steps**: one D step, then one G step, on every batch (``gan.update=alternating``, ``gan.n_critic=1``); the
  EMA generator ``generator_ema`` (``gan.ema=0.999``, built by the mechanism) follows G after every G step. It is
  the network that is sampled at validation (the mechanism's ``eval_generator``) and that GAN inversion
  (``model=mganprior``) loads.
* **Optimiser**: Adam lr 1e-3, betas (0, 0.99), eps 1e-8 for both nets. Both Adam states are cleared whenever
  the floor or the ceiling of the lod changes, as the official code does: at the start of every fade-in and at
  the start of every stabilise phase after the first. This is a hook (:meth:`PGGANModule.on_train_batch_start`),
  not ``gan.reset_optimizers_at``: the lod of every step is recomputed from the schedule, so the reset is too.
* **Schedule** (:class:`ProgressiveSchedule`): training starts at ``start_resolution``. Each resolution is
  stabilised for ``stabilise_images`` real images, then the next one is faded in over ``fade_images`` images,
  with the lod falling linearly by 1. The lod is a pure function of the number of real images shown,
  ``global_step * batch * world_size``, so a run resumed mid-fade continues exactly where it stopped. The lod
  of the last step is in both networks' ``lod`` buffers, and the schedule position is stored under
  ``inpaint_pggan`` in every checkpoint.
* **Real images**: mapped from [0, 1] to [-1, 1], then average-pooled and blended to the current lod
  (:func:`~inpaint.nets.pggan.real_images_at_lod`), so D sees the same blend of resolutions for real and fake.

Departures from the official code: the lod is updated at every step (the official code updates it every 4
minibatches); the minibatch size stays the same at every resolution; no mirror augmentation beyond the data
config's ``hflip``.

This is a **prior**, not an inpainting model: ``forward`` / ``inpaint`` raise an error that points to
``model=mganprior``. Validation and test do not inpaint. They score the EMA generator against the real
images with a sliced Wasserstein distance (:func:`sliced_wasserstein`), logged as ``val/swd`` and ``test/swd``.
The samples are nearest-upsampled to the full resolution and compared with the full-resolution real images, so
values are comparable over the whole run: a generator at a lower lod scores worse for the detail it lacks, and
``val/swd`` (mode min) can be the checkpoint monitor from the first phase on: the module declares it
(:attr:`PGGANModule.checkpoint_monitor`) and the run's ``monitor: model`` checkpoint follows. At every validation a grid of EMA
samples, made from z seeded by the run seed, goes to ``grids/`` and to the loggers (:meth:`PGGANModule.sample_grid`,
used by :class:`~inpaint.callbacks.ImageGrids`).

Checkpoint format (what ``model=mganprior`` reads): ``state_dict`` holds ``generator.*``, ``generator_ema.*`` and
``discriminator.*`` (each with its ``lod`` buffer), and ``hyper_parameters["generator"]`` is the complete keyword
set of :class:`~inpaint.nets.pggan.PGGANGenerator` (``resolution, z_dim, fmap_base, fmap_max, out_channels``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inpaint.evaluation.evaluator import EvalTerms
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.losses import AdversarialLoss
from inpaint.models.gan import CriticLoss, GANModule
from inpaint.nets.pggan import PGGANDiscriminator, PGGANGenerator, real_images_at_lod

log = logging.getLogger(__name__)

__all__ = ["PGGANModule", "ProgressiveSchedule", "image_patches", "sliced_wasserstein"]

#: checkpoint key of the schedule position
SCHEDULE_KEY = "inpaint_pggan"


@dataclass(frozen=True)
class ProgressiveSchedule:
    """The level of detail as a function of the real images shown (spec 2.6, the official ``TrainingSchedule``).

    Phase ``k`` (``k = 0, 1, ...``) lasts ``stabilise_images + fade_images`` images: first a plain network at
    ``start_resolution * 2**k`` for ``stabilise_images``, then the next resolution faded in while the lod falls
    linearly by 1 over ``fade_images``. Once the lod reaches 0 it stays there.
    """

    resolution: int
    start_resolution: int = 4
    stabilise_images: int = 600_000
    fade_images: int = 600_000

    def __post_init__(self) -> None:
        for name in ("resolution", "start_resolution"):
            value = getattr(self, name)
            if value < 4 or value & (value - 1):
                raise ValueError(f"model.schedule: {name} must be a power of two >= 4, got {value}")
        if self.start_resolution > self.resolution:
            raise ValueError(
                f"model.schedule.start_resolution={self.start_resolution} is above the network's resolution "
                f"{self.resolution}"
            )
        if self.stabilise_images < 0 or self.fade_images < 0:
            raise ValueError("model.schedule: stabilise_images and fade_images must be >= 0")

    @property
    def initial_lod(self) -> int:
        """The lod training starts at: ``log2(resolution / start_resolution)``."""
        return int(math.log2(self.resolution // self.start_resolution))

    def lod(self, images: int) -> float:
        """The lod after ``images`` real images have been shown."""
        phase = self.stabilise_images + self.fade_images
        if phase == 0:
            return 0.0
        k, into = divmod(int(images), phase)
        lod = float(self.initial_lod - k)
        if self.fade_images > 0:
            lod -= max(into - self.stabilise_images, 0) / self.fade_images
        return max(lod, 0.0)

    @staticmethod
    def phase_changed(before: float, after: float) -> bool:
        """Whether the optimizers are reset between two lods: the floor or the ceiling differs."""
        return math.floor(before) != math.floor(after) or math.ceil(before) != math.ceil(after)


# ------------------------------------------------------------------------------------------------ SWD
def image_patches(images: Tensor, size: int = 7, per_image: int = 64, generator: torch.Generator | None = None
                  ) -> Tensor:
    """``per_image`` random ``size`` x ``size`` patches of every image, flattened: (N * per_image, C * size**2).

    The positions come from ``generator`` (CPU), so two image sets get patches at the same places."""
    n, c, h, w = images.shape
    size = min(size, h, w)
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=generator)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=generator)
    offsets = torch.arange(size)
    rows = (ys[..., None] + offsets).to(images.device)  # (n, p, size)
    cols = (xs[..., None] + offsets).to(images.device)
    idx = torch.arange(n, device=images.device)[:, None, None, None]
    patches = images.permute(0, 2, 3, 1)[idx, rows[..., :, None], cols[..., None, :]]  # (n, p, size, size, c)
    return patches.reshape(n * per_image, size * size * c)


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, generator: torch.Generator | None = None
                       ) -> Tensor:
    """Sliced Wasserstein-1 distance between two equally large point sets ``a``, ``b`` (N, D).

    Both sets are projected on ``projections`` random unit directions (drawn from ``generator`` on the CPU);
    per direction the 1-D distance is the mean absolute difference of the sorted projections; the result is
    the mean over directions. 0 for identical sets; a shift by ``v`` gives about ``E|<u, v>|``.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"sliced_wasserstein needs two (N, D) sets of one shape, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    dirs = torch.randn(a.shape[1], projections, generator=generator).to(a.device, torch.float32)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    pa = torch.sort(a.float() @ dirs, dim=0).values
    pb = torch.sort(b.float() @ dirs, dim=0).values
    return (pa - pb).abs().mean()


def _to_model_range(image: Tensor) -> Tensor:
    return image * 2.0 - 1.0


def _to_image_range(x: Tensor) -> Tensor:
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


class PGGANModule(GANModule):
    """PGGAN trained progressively on the framework's datasets (see the module docstring).

    Args:
        generator: :class:`~inpaint.nets.pggan.PGGANGenerator` keywords (``resolution``, ``z_dim``, ``fmap_base``,
            ``fmap_max``); the data's ``image_size`` must equal ``resolution``.
        discriminator: :class:`~inpaint.nets.pggan.PGGANDiscriminator` keywords besides the shared widths
            (``mbstd_group``; ``fmap_base`` / ``fmap_max`` default to the generator's).
        schedule: ``start_resolution``, ``stabilise_images``, ``fade_images`` (:class:`ProgressiveSchedule`).
        optimizer, optimizer_d: injected (the paper's Adam 1e-3, betas (0, 0.99), eps 1e-8, for both networks).
        drift: weight of ``D(real)^2`` in the D loss.
        swd: the validation metric: ``images`` (at most this many real images and as many samples),
            ``patch`` (side), ``patches_per_image``, ``projections``.
        gan: the GAN mechanism's options; PGGAN needs ``n_critic=1`` and no warm-up (the lod counts real
            images by generator iteration).
    """

    #: a prior logs no val/psnr: the best checkpoint is the one with the lowest SWD of its samples
    checkpoint_monitor = ("val/swd", "min")

    def __init__(
        self,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        drift: float = 1e-3,
        swd: Mapping[str, Any] | None = None,
        gan: Mapping[str, Any] | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        optimizer_d: Any = None,
        scheduler: Any = None,
    ) -> None:
        gan_cfg = {"update": "alternating", "n_critic": 1, "gradient_penalty": 10.0, "ema": 0.999, **(gan or {})}
        super().__init__(gan=gan_cfg, buckets=buckets, nan_check_every=nan_check_every, optimizer=optimizer,
                         optimizer_d=optimizer_d, scheduler=scheduler)
        self.save_hyperparameters()
        if self.schedule.n_critic != 1 or self.schedule.warmup_steps or self.update != "alternating":
            raise ValueError("model=pggan trains one D step then one G step per batch: model.gan.n_critic=1, "
                             "no critic_warmup, update=alternating")
        g_cfg = {"resolution": 32, "z_dim": 128, "fmap_base": 512, "fmap_max": 128, "out_channels": 3,
                 **(generator or {})}
        g_cfg = {k: int(v) for k, v in g_cfg.items()}
        self.generator = PGGANGenerator(**g_cfg)
        d_cfg = {"fmap_base": g_cfg["fmap_base"], "fmap_max": g_cfg["fmap_max"], "mbstd_group": 4,
                 **(discriminator or {})}
        self.discriminator = PGGANDiscriminator(resolution=g_cfg["resolution"], in_channels=g_cfg["out_channels"],
                                                **{k: int(v) for k, v in d_cfg.items()})
        # the complete constructor keywords, so PGGANGenerator(**hyper_parameters["generator"]) rebuilds it
        self.hparams["generator"] = dict(g_cfg)
        self.progression = ProgressiveSchedule(g_cfg["resolution"], **{k: int(v) for k, v in (schedule or {}).items()})
        self.drift = float(drift)
        self.adversarial = AdversarialLoss("wgan", drift=self.drift)
        self.swd_cfg = {"images": 256, "patch": 7, "patches_per_image": 16, "projections": 256, **(swd or {})}
        #: real images per generator iteration (batch x world size), known from the first training batch
        self.images_per_step: int | None = None
        #: real images kept so far per stage for the SWD (:meth:`evaluation_terms`)
        self._swd_seen: dict[str, int] = {}
        self.set_lod(float(self.progression.initial_lod))

    # ------------------------------------------------------------------------------------ the prior
    def procedures(self) -> list:
        return []  # a prior: nothing to inpaint with (the report says so; model=mganprior inverts it)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Refused: a prior does not inpaint (a ``ValueError``, so the command line reports it plainly)."""
        raise ValueError(
            "model=pggan trains a GAN prior and does not inpaint: fill holes with GAN inversion, model=mganprior "
            "with this run's checkpoint as the prior"
        )

    @property
    def lod(self) -> float:
        """The current level of detail (the generator's ``lod`` buffer)."""
        return self.generator.level_of_detail

    def set_lod(self, lod: float) -> None:
        """Set the level of detail of G, D and the EMA generator."""
        for net in (self.generator, self.discriminator, self.generator_ema):
            if net is not None:
                net.set_lod(lod)

    def images_seen(self, step: int | None = None) -> int:
        """Real images shown before generator iteration ``step`` (default: the current one)."""
        step = self.global_step if step is None else step
        return int(step) * int(self.images_per_step or 0)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Set this step's lod from the images shown; reset both Adam states when the phase changes."""
        image = batch["image"]
        if image.shape[-1] != self.generator.resolution or image.shape[-2] != self.generator.resolution:
            raise ValueError(
                f"model=pggan at resolution {self.generator.resolution} trains on {self.generator.resolution}-px "
                f"images, got {tuple(image.shape[-2:])}: set data.image_size={self.generator.resolution}"
            )
        self.images_per_step = int(image.shape[0]) * int(self.trainer.world_size)
        step = self.global_step
        lod = self.progression.lod(self.images_seen(step))
        if step > 0 and self.progression.phase_changed(self.progression.lod(self.images_seen(step - 1)), lod):
            self.reset_optimizer_states()
            log.info("lod %.4f at %d images: a new phase", lod, self.images_seen(step))
        self.set_lod(lod)

    # ------------------------------------------------------------------------------------ GAN contract
    def generate(self, batch: dict) -> Tensor:
        z = torch.randn(batch["image"].shape[0], self.generator.z_dim, device=self.device)
        return self.generator(z)

    def critic_inputs(self, batch: dict, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Real images in [-1, 1] at the current lod (pooled and blended like G's output), and the fake."""
        return real_images_at_lod(_to_model_range(batch["image"]), self.lod), fake

    def discriminator_loss(self, batch: dict, fake: Tensor) -> CriticLoss:
        """WGAN with drift (:class:`~inpaint.losses.AdversarialLoss` ``wgan``); the mechanism adds the penalty."""
        real, fake = self.critic_inputs(batch, fake)
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake)
        loss = self.adversarial.discriminator_loss(d_real, d_fake)
        d_real = d_real.detach()
        return CriticLoss(loss, {"d_real": d_real.mean(), "d_fake": d_fake.detach().mean(),
                                 "drift": self.adversarial.drift_term(d_real),
                                 "lod": torch.tensor(self.lod, device=d_real.device)})

    def generator_loss(self, batch: dict, fake: Tensor, aux: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        return self.adversarial.generator_loss(self.discriminator(fake)), {}

    # ------------------------------------------------------------------------------------ sampling
    def fixed_latents(self, n: int, offset: int = 0) -> Tensor:
        """``n`` latents seeded by the run seed (``inference_seed``): the same every validation."""
        seed = int(np.random.SeedSequence([self.inference_seed, 7331]).generate_state(1, np.uint64)[0] >> 1)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(offset + n, self.generator.z_dim, generator=g)
        return z[offset:].to(self.device)

    @torch.no_grad()
    def sample(self, z: Tensor, full_resolution: bool = True) -> Tensor:
        """Images of the evaluation generator (:attr:`eval_generator`: the EMA copy with ``gan.ema``) in [0, 1]
        at the current lod, nearest-upsampled to the full resolution."""
        img = _to_image_range(self.eval_generator(z).float())
        if full_resolution and img.shape[-1] != self.generator.resolution:
            img = F.interpolate(img, size=self.generator.resolution, mode="nearest")
        return img

    def sample_grid(self, n: int, columns: int = 8, pad: int = 2) -> np.ndarray:
        """An ``HxWx3`` uint8 grid of ``n`` EMA samples from the fixed latents (for :class:`ImageGrids`)."""
        img = self.sample(self.fixed_latents(max(int(n), 1))).cpu()
        b, c, h, w = img.shape
        cols = min(columns, b)
        rows = math.ceil(b / cols)
        grid = torch.ones(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
        for i in range(b):
            y, x = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
            grid[:, y : y + h, x : x + w] = img[i].expand(3, h, w)
        return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)

    # ------------------------------------------------------------------------------------ evaluation
    def evaluation_terms(self, batch: dict, composite: Tensor | None, stage: str) -> EvalTerms | None:
        """Keep the first ``swd.images`` real images this process sees (the summary takes the first of all
        processes' by index)."""
        seen = self._swd_seen.get(stage, 0)
        room = int(self.swd_cfg["images"]) - seen
        if room <= 0:
            return None
        real = batch["image"][:room].detach().float()
        self._swd_seen[stage] = seen + real.shape[0]
        return EvalTerms(samples={"real": real})

    def swd(self, real: Tensor) -> Tensor:
        """SWD between ``real`` images (N, C, H, W) in [0, 1] and as many EMA samples (fixed latents)."""
        fake = torch.cat([self.sample(self.fixed_latents(len(chunk), offset=i))
                          for i, chunk in zip(range(0, len(real), 64), real.split(64), strict=True)])
        g = torch.Generator().manual_seed(int(self.inference_seed))
        size, per = int(self.swd_cfg["patch"]), int(self.swd_cfg["patches_per_image"])
        state = g.get_state()
        pr = image_patches(real, size, per, g)
        g.set_state(state)  # the same patch positions in the samples
        pf = image_patches(fake, size, per, g)
        return sliced_wasserstein(pr, pf, int(self.swd_cfg["projections"]), g)

    def evaluation_summary(self, stage: str, samples: dict[str, Tensor]) -> dict[str, float]:
        """``swd`` between the first ``swd.images`` real images (by index) and as many EMA samples, the image
        count and the current ``lod``."""
        self._swd_seen[stage] = 0
        real = samples["real"][: int(self.swd_cfg["images"])]
        return {"swd": float(self.swd(real)), "count": float(len(real)), "lod": self.lod}

    # ------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[SCHEDULE_KEY] = {"lod": self.lod, "images_per_step": int(self.images_per_step or 0),
                                    "images_seen": self.images_seen()}
