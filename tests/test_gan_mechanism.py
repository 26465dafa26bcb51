"""The shared GAN mechanism (inpaint/models/gan.py) on a small GAN: the schedule, global_step, clipping,
AMP's multi-optimizer recipe, resume mid-cycle, gradient penalty, EMA, optimizer resets, label noise, and the
subclass contract (networks checked and the EMA copy built after ``__init__``, one evaluation generator, the
critic step's ``aux`` handed to the generator loss)."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from inpaint.losses import AdversarialLoss
from inpaint.models.base import compose
from inpaint.models.gan import CriticLoss, CriticSchedule, GANModule


class TinyGAN(GANModule):
    def __init__(self, kind: str = "wgan", **gan) -> None:
        super().__init__(gan=gan)
        torch.manual_seed(0)
        self.generator = nn.Conv2d(3, 3, 3, padding=1)
        self.discriminator = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.LazyLinear(1))
        self.discriminator(torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
        self.adversarial = AdversarialLoss(kind)
        self.events: list[str] = []

    def forward(self, image, mask):
        return self.eval_generator(self.masked_input(image, mask))

    def generate(self, batch):
        return self.generator(self.masked_input(batch["image"], batch["mask"]))

    def discriminator_loss(self, batch, fake):
        return CriticLoss(self.adversarial.discriminator_loss(self.discriminator(batch["image"]),
                                                              self.discriminator(fake)), {})

    def generator_loss(self, batch, fake, aux=None):
        return F.mse_loss(fake, batch["image"]) + 0.1 * self.adversarial.generator_loss(self.discriminator(fake)), {}

    def after_discriminator_step(self):
        super().after_discriminator_step()
        self.events.append("D")

    def after_generator_step(self):
        super().after_generator_step()
        self.events.append("G")

    def configure_optimizers(self):
        return [torch.optim.RMSprop(self.generator.parameters(), lr=1e-3),
                torch.optim.RMSprop(self.discriminator.parameters(), lr=1e-3)]


def batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    return [{"image": torch.rand(2, 3, 8, 8, generator=g), "mask": mask} for _ in range(n)]


def fit(model: GANModule, max_steps: int, data: list[dict] | None = None, tmp_path=None, ckpt_path=None,
        **kw) -> L.Trainer:
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, **kw)
    trainer.fit(model, train_dataloaders=DataLoader(data or batches(200), batch_size=None), ckpt_path=ckpt_path)
    return trainer


def test_schedule_counts_critic_steps_with_arjovskys_warmup():
    s = CriticSchedule(n_critic=10, warmup_steps=100, warmup_first=25, warmup_every=500)
    assert [s.critic_steps(g) for g in (0, 24, 25, 499, 500, 501, 1000)] == [100, 100, 10, 10, 100, 10, 100]
    assert CriticSchedule(n_critic=10).critic_steps(0) == 10


@pytest.mark.parametrize("gan, cycle", [
    ({"n_critic": 3}, lambda g: 3),
    ({"n_critic": 2, "critic_warmup": {"steps": 4, "first": 2, "every": 3}}, lambda g: 4 if g < 2 or g % 3 == 0 else 2),
])
def test_generator_steps_count_iterations_whatever_the_ratio(gan, cycle, tmp_path):
    model = TinyGAN(**gan)
    trainer = fit(model, max_steps=5, tmp_path=tmp_path)
    assert trainer.global_step == 5  # max_steps = generator iterations
    expected = [e for g in range(5) for e in ["D"] * cycle(g) + ["G"]]
    assert model.events == expected
    assert trainer.fit_loop.epoch_loop.batch_idx + 1 == sum(cycle(g) for g in range(5))  # a fresh batch per critic step


def test_every_critic_weight_is_clipped_after_every_critic_step(tmp_path):
    seen = []

    class Watch(TinyGAN):
        def after_discriminator_step(self):
            super().after_discriminator_step()
            seen.append(max(p.abs().max().item() for p in self.discriminator.parameters()))

    model = Watch(n_critic=2, clip=0.01)
    fit(model, max_steps=3, tmp_path=tmp_path)
    assert len(seen) == 6 and max(seen) <= 0.01 and max(seen) > 0.0099  # clipping was active


def test_amp_updates_the_scale_once_per_optimizer_step(tmp_path):
    from lightning.pytorch.plugins.precision import MixedPrecision

    events = []
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    for name in ("step", "update"):  # record every call, in order
        method = getattr(scaler, name)
        setattr(scaler, name, lambda *a, _n=name, _m=method, **k: (events.append(_n), _m(*a, **k))[1])
    model = TinyGAN(n_critic=2)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer = fit(model, max_steps=2, tmp_path=tmp_path, plugins=[plugin])
    assert trainer.global_step == 2
    # critic-only step: step, update; critic step + generator step: step, update, step, update
    assert events == ["step", "update"] + ["step", "update"] * 2 + ["step", "update"] + ["step", "update"] * 2


def test_resume_mid_cycle_finishes_the_cycle(tmp_path):
    class SaveMidCycle(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if pl_module.global_step == 1 and pl_module.critic_done == 1:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    same = batches(1) * 50  # one batch repeated: the data order cannot differ after the resume
    whole = TinyGAN(n_critic=3)
    fit(whole, max_steps=3, data=same, tmp_path=tmp_path, callbacks=[SaveMidCycle()])
    ckpt = torch.load(tmp_path / "mid.ckpt", weights_only=True)
    assert ckpt["inpaint_gan_cycle"] == {"critic_done": 1} and len(ckpt["optimizer_states"]) == 2
    resumed = TinyGAN(n_critic=3)
    fit(resumed, max_steps=3, data=same, tmp_path=tmp_path, ckpt_path=tmp_path / "mid.ckpt")
    # the cycle continued: two more critic steps, then G (not three)
    assert resumed.events[:3] == ["D", "D", "G"]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_gradient_penalty_matches_the_analytic_gradient():
    model = TinyGAN(gradient_penalty=10.0)
    lin = nn.Linear(12, 1, bias=False)
    model.discriminator = nn.Sequential(nn.Flatten(), lin)
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    # D is linear: its input gradient is the weight vector everywhere
    want = (lin.weight.norm() - 1) ** 2
    torch.testing.assert_close(model.gradient_penalty(real, fake), want.detach().expand(()), rtol=1e-5, atol=1e-6)


def test_ema_generator_follows_the_generator(tmp_path):
    model = TinyGAN(n_critic=1, ema=0.9)
    start = copy.deepcopy(model.generator_ema.state_dict())
    fit(model, max_steps=1, tmp_path=tmp_path)
    for name, e in model.generator_ema.state_dict().items():
        want = 0.9 * start[name] + 0.1 * model.generator.state_dict()[name]
        torch.testing.assert_close(e, want)
    assert "generator_ema.weight" in model.state_dict()
    model.eval()
    assert model.eval_generator is model.generator_ema


def test_the_mechanism_builds_the_ema_copy_after_the_whole_init(tmp_path):
    class Changed(TinyGAN):  # changes G after GANModule's and TinyGAN's __init__: the copy is of the final G
        def __init__(self, **gan):
            super().__init__(**gan)
            with torch.no_grad():
                self.generator.weight.fill_(0.5)

    model = Changed(ema=0.9)
    assert not hasattr(GANModule, "attach_ema")  # nothing for a subclass to call (or to forget)
    assert "generator_ema.weight" in model.state_dict()  # from construction on, so in every checkpoint
    assert torch.equal(model.generator_ema.weight, model.generator.weight)
    assert model.generator_ema.weight.data_ptr() != model.generator.weight.data_ptr()
    assert not any(p.requires_grad for p in model.generator_ema.parameters())
    assert all(p.requires_grad for p in model.generator.parameters())
    plain = TinyGAN()
    assert plain.generator_ema is None and plain.eval_generator is plain.generator
    assert not any(k.startswith("generator_ema.") for k in plain.state_dict())


def test_a_subclass_without_its_networks_is_refused():
    class NoCritic(GANModule):
        def __init__(self):
            super().__init__()
            self.generator = nn.Conv2d(3, 3, 1)

    with pytest.raises(TypeError, match="must create self.discriminator"):
        NoCritic()


def test_save_hyperparameters_still_reads_the_constructor():
    class Saved(TinyGAN):
        def __init__(self, width: int = 3, **gan):
            super().__init__(**gan)
            self.save_hyperparameters()

    assert dict(Saved(width=5, ema=0.5).hparams) == {"width": 5, "ema": 0.5}


def test_evaluation_runs_the_ema_copy_in_either_mode(tmp_path):
    model = TinyGAN(ema=0.5)
    fit(model, max_steps=2, tmp_path=tmp_path)
    batch = batches(1, seed=3)[0]
    image, mask = batch["image"], batch["mask"]
    x = model.masked_input(image, mask)
    with torch.no_grad():
        ema, raw = model.generator_ema(x), model.generator(x)
        assert not torch.allclose(ema, raw)
        for mode in (True, False):
            model.train(mode)
            assert model.eval_generator is model.generator_ema
            torch.testing.assert_close(model(image, mask), ema, rtol=0, atol=0)
        torch.testing.assert_close(model.inpaint(image, mask), compose(ema.clamp(0, 1), image, mask), rtol=0, atol=0)


@pytest.mark.parametrize("gan", [{"n_critic": 2}, {"update": "simultaneous"}])
def test_the_critic_steps_aux_reaches_the_same_iterations_generator_loss(gan, tmp_path):
    handed, received = [], []

    class WithAux(TinyGAN):
        def discriminator_loss(self, batch, fake):
            aux = {"image": batch["image"]}
            handed.append(aux)
            return super().discriminator_loss(batch, fake)._replace(aux=aux)

        def generator_loss(self, batch, fake, aux=None):
            received.append(aux)
            assert aux is None or aux["image"] is batch["image"]  # this training step's own critic step
            return super().generator_loss(batch, fake, aux)

    model = WithAux(**gan)
    fit(model, max_steps=3, tmp_path=tmp_path)
    n = gan.get("n_critic", 1)
    assert len(handed) == 3 * n and len(received) == 3
    assert all(r is handed[(i + 1) * n - 1] for i, r in enumerate(received))  # by identity: nothing rebuilt
    # the mechanism keeps nothing of it on the module
    assert not any(v is a for v in vars(model).values() for a in handed)
    # without a critic step (the losses use no D) the generator loss gets no aux
    received.clear()
    solo = WithAux()
    solo.trains_discriminator = False
    fit(solo, max_steps=1, tmp_path=tmp_path)
    assert received == [None]


def test_a_discriminator_loss_that_is_not_a_critic_loss_is_refused(tmp_path):
    class OldStyle(TinyGAN):
        def discriminator_loss(self, batch, fake):
            return tuple(super().discriminator_loss(batch, fake))[:2]

    with pytest.raises(TypeError, match=r"CriticLoss\(loss, logs, aux\)"):
        fit(OldStyle(), max_steps=1, tmp_path=tmp_path)


def test_weights_without_an_ema_copy_restart_it_from_the_loaded_generator():
    model = TinyGAN(ema=0.9)
    source = TinyGAN()  # no EMA: its state holds no generator_ema entries (e.g. init_from an L2 model)
    with torch.no_grad():
        source.generator.weight.add_(1.0)
    result = model.load_state_dict(source.state_dict(), strict=False)
    assert result.missing_keys and all(k.startswith("generator_ema.") for k in result.missing_keys)
    assert torch.equal(model.generator_ema.weight, source.generator.weight)
    assert not model.generator_ema.weight.requires_grad
    # a state with its own EMA copy (a checkpoint of an EMA run) keeps it
    other = TinyGAN(ema=0.9)
    with torch.no_grad():
        other.generator_ema.weight.mul_(3.0)
    model.load_state_dict(other.state_dict())
    assert torch.equal(model.generator_ema.weight, other.generator_ema.weight)
    assert not torch.equal(model.generator_ema.weight, model.generator.weight)


def test_optimizer_states_reset_at_the_configured_iteration(tmp_path):
    cleared = []

    class Watch(TinyGAN):
        def reset_optimizer_states(self):
            cleared.append(self.global_step)
            super().reset_optimizer_states()
            assert all(not opt.optimizer.state for opt in self.optimizers())

    fit(Watch(reset_optimizers_at=[2]), max_steps=3, tmp_path=tmp_path)
    assert cleared == [2]


def test_soft_noisy_labels_and_flips():
    torch.manual_seed(0)
    loss = AdversarialLoss("nsgan", real_label=[0.9, 1.1], fake_label=[0.0, 0.2])
    y_real, y_fake = loss.targets(20000)
    assert y_real.min() >= 0.9 and y_real.max() <= 1.1 and y_fake.min() >= 0.0 and y_fake.max() <= 0.2
    assert abs(y_real.mean().item() - 1.0) < 0.005 and y_real.std().item() > 0.05  # drawn per sample
    flipping = AdversarialLoss("nsgan", real_label=[0.9, 1.1], fake_label=[0.0, 0.2], flip=0.05)
    y_real, y_fake = flipping.targets(20000)
    rate = (y_real <= 0.2).float().mean().item()
    assert abs(rate - 0.05) < 0.006 and torch.equal(y_real <= 0.2, y_fake >= 0.9)  # swapped pairwise
    with pytest.raises(ValueError, match="nsgan, lsgan"):
        AdversarialLoss("wgan", flip=0.1)


def test_bad_gan_options_are_clear_errors():
    with pytest.raises(ValueError, match="n_critic=1"):
        TinyGAN(update="simultaneous", n_critic=5)
    with pytest.raises(ValueError, match="unknown option"):
        TinyGAN(ncritic=5)
    with pytest.raises(ValueError, match="clip"):
        TinyGAN(clip=-1)
