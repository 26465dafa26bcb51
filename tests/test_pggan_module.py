"""Training the PGGAN prior (``model=pggan``, spec mganprior-pggan 2.6): the lod schedule against a hand-written table,
training steps at a stable and at a fade-in lod through the real configs, the D loss against a hand computation,
the Adam reset at a phase change, an exact resume mid-fade, the SWD metric and the checkpoint format that GAN
inversion reads."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from conftest import tiny, write_dataset
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torch.utils.data import DataLoader

from inpaint.models.optimizers import recipe
from inpaint.models.pggan import PGGANModule, ProgressiveSchedule, image_patches, sliced_wasserstein
from inpaint.nets.pggan import PGGANGenerator, real_images_at_lod
from inpaint.run import build_model, build_trainer, run

# 8x8 CIFAR crops, a 2-block net (4x4 and 8x8) 16 channels wide: lod 1 = 4x4, lod 0 = 8x8
TINY_PGGAN = ["model=pggan", "model.generator.resolution=8", "model.generator.z_dim=16",
              "model.generator.fmap_base=64", "model.generator.fmap_max=16", "model.swd.images=8",
              "model.swd.projections=32", "model.swd.patches_per_image=4", "data.image_size=8"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("cifar10")
    return [*write_dataset("cifar10", root), "data.resize_short=null", "mask=center"]


def overrides(cifar: list[str], stabilise: int, fade: int, *extra: str) -> list[str]:
    return [*tiny("pggan"), *TINY_PGGAN, *cifar, "logger=none", f"model.schedule.stabilise_images={stabilise}",
            f"model.schedule.fade_images={fade}", *extra]


# ------------------------------------------------------------------------------------- schedule
def test_lod_is_a_function_of_the_images_shown():
    s = ProgressiveSchedule(resolution=32, start_resolution=4, stabilise_images=100, fade_images=50)
    table = {0: 3.0, 99: 3.0, 100: 3.0, 110: 2.8, 125: 2.5, 149: 2.02, 150: 2.0, 249: 2.0, 250: 2.0, 275: 1.5,
             300: 1.0, 400: 1.0, 425: 0.5, 450: 0.0, 10**6: 0.0}
    for images, lod in table.items():
        assert s.lod(images) == pytest.approx(lod), images
    assert ProgressiveSchedule(32, 8, 10, 10).lod(0) == 2.0
    assert ProgressiveSchedule(32, 32, 10, 10).lod(5) == 0.0
    assert ProgressiveSchedule(32, 4, 10, 0).lod(10) == 2.0  # no fade: the next resolution at once
    # optimizers reset at the start of a fade and at the start of the next stable phase, not inside either
    changed = [n for n in range(1, 460) if s.phase_changed(s.lod(n - 1), s.lod(n))]
    assert changed == [101, 150, 251, 300, 401, 450]
    with pytest.raises(ValueError, match="start_resolution"):
        ProgressiveSchedule(16, 32)


# ------------------------------------------------------------------------------------- losses
def tiny_module(**kw) -> PGGANModule:
    torch.manual_seed(0)
    return PGGANModule(generator={"resolution": 8, "z_dim": 16, "fmap_base": 64, "fmap_max": 16},
                       **{**recipe("pggan"), **kw})


def test_discriminator_loss_is_wgan_gp_with_drift():
    model = tiny_module(drift=0.5)  # a large drift weight, so that its term is well above rounding
    model.set_lod(0.25)
    image = torch.rand(4, 3, 8, 8)
    fake = torch.randn(4, 3, 8, 8)
    torch.manual_seed(3)
    loss, logs, aux = model._critic_loss({"image": image}, fake)
    assert aux is None
    # every adversarial term comes from inpaint.losses: the wgan kind with its drift option
    assert (model.adversarial.kind, model.adversarial.drift) == ("wgan", 0.5)
    # by hand: real in [-1, 1], blended at lod 0.25 toward its 4x4 version; D at lod 0.25
    D = model.discriminator
    x = image * 2 - 1
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")
    real = 0.75 * x + 0.25 * low
    torch.manual_seed(3)
    e = torch.rand(4, 1, 1, 1)
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    d_real, d_fake = D(real), D(fake)
    want = d_fake.mean() - d_real.mean() + 10.0 * gp + 0.5 * (d_real**2).mean()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(real_images_at_lod(x, 0.25), real)
    g_loss, _ = model.generator_loss({"image": image}, fake)
    torch.testing.assert_close(g_loss, -d_fake.mean())
    torch.testing.assert_close(logs["drift"], (d_real**2).mean().detach())
    torch.testing.assert_close(logs["gp"].detach(), gp.detach())


def test_optimizers_are_adam_0_099_and_the_prior_does_not_inpaint():
    model = tiny_module()
    opts = model.configure_optimizers()
    assert all(type(o) is torch.optim.Adam for o in opts)
    assert [o.defaults["betas"] for o in opts] == [(0.0, 0.99)] * 2 and opts[0].defaults["lr"] == 1e-3
    with pytest.raises(ValueError, match="model=mganprior"):
        model(torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="n_critic=1"):
        tiny_module(gan={"n_critic": 2})


def test_samples_come_from_the_ema_generator_after_a_training_step(tmp_path):
    model = tiny_module(gan={"ema": 0.5})
    g = torch.Generator().manual_seed(0)
    data = [{"image": torch.rand(4, 3, 8, 8, generator=g), "mask": torch.zeros(4, 1, 8, 8)} for _ in range(4)]
    L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
              ).fit(model, train_dataloaders=DataLoader(data, batch_size=None))
    model.eval()
    assert model.eval_generator is model.generator_ema and model.generator_ema.level_of_detail == model.lod
    z = model.fixed_latents(4)
    with torch.no_grad():
        ema = ((model.generator_ema(z) + 1) * 0.5).clamp(0, 1)
        raw = ((model.generator(z) + 1) * 0.5).clamp(0, 1)
        got = model.sample(z, full_resolution=False)
    assert torch.equal(got, ema) and not torch.allclose(got, raw)


# ------------------------------------------------------------------------------------- SWD
def test_swd_is_zero_for_identical_sets_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, 3, 8, 8, generator=g)
    pa = image_patches(a, 5, 8, torch.Generator().manual_seed(1))
    assert pa.shape == (32 * 8, 75)
    assert float(sliced_wasserstein(pa, pa.clone(), 64, torch.Generator().manual_seed(2))) < 1e-6
    other = torch.rand(32, 3, 8, 8, generator=g)  # the same distribution, other samples: small
    shifted = (a + 0.3).clamp(0, 1)
    near = float(sliced_wasserstein(pa, image_patches(other, 5, 8, torch.Generator().manual_seed(1)), 64,
                                    torch.Generator().manual_seed(2)))
    far = float(sliced_wasserstein(pa, image_patches(shifted, 5, 8, torch.Generator().manual_seed(1)), 64,
                                   torch.Generator().manual_seed(2)))
    assert far > 3 * near > 0
    # the model's own: its samples against themselves are 0
    model = tiny_module().eval()
    samples = model.sample(model.fixed_latents(8))
    assert samples.shape == (8, 3, 8, 8) and float(model.swd(samples)) < 1e-6
    assert torch.equal(model.fixed_latents(8), model.fixed_latents(8))


# ------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("phase, stabilise, fade, steps, lod", [
    ("stable", 1000, 1000, 1, 1.0),    # 4x4, no fade yet
    ("fade", 2, 12, 2, 1 - 2 / 12),    # the 2nd step (4 images shown) is 2 images into the 8x8 fade-in
])
def test_trains_a_step_at_each_phase_kind(phase, stabilise, fade, steps, lod, cifar, make_cfg, tmp_path):
    cfg = make_cfg(*overrides(cifar, stabilise, fade, f"trainer.max_steps={steps}",
                              f"trainer.val_check_interval={steps}"))
    results = run(cfg)
    assert math.isfinite(results["test/swd"]) and math.isfinite(results["val/swd"])
    ckpt_file = tmp_path / "run/checkpoints/best.ckpt"
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    for net in ("generator", "generator_ema", "discriminator"):
        assert float(state[f"{net}.lod"]) == pytest.approx(lod)
    assert ckpt["inpaint_pggan"]["images_per_step"] == 4
    assert ckpt["inpaint_pggan"]["images_seen"] == 4 * steps
    assert ckpt["hyper_parameters"]["generator"] == {"resolution": 8, "z_dim": 16, "fmap_base": 64, "fmap_max": 16,
                                                     "out_channels": 3}
    # the default monitor val/psnr (never logged by a prior) became val/swd, mode min
    assert (tmp_path / "run/checkpoints/best.ckpt").is_file()
    best = [v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert len(best) == 1 and best[0]["monitor"] == "val/swd" and math.isfinite(float(best[0]["best_model_score"]))
    # a grid of 2 EMA samples (eval.grid_samples=2), upsampled to 8x8, 2-px borders
    grids = sorted((tmp_path / "run/grids").iterdir())
    assert [p.name for p in grids] == [f"step={steps:06d}.png"]
    assert Image.open(grids[0]).size == (2 * 10 + 2, 12)
    # task=test on the run's checkpoint scores the prior again, the same way
    again = run(make_cfg(*overrides(cifar, stabilise, fade, "task=test", f"ckpt_path={ckpt_file}"),
                         out=tmp_path / "test"))
    assert again["test/swd"] == pytest.approx(results["test/swd"], rel=1e-5)
    md = (tmp_path / "test" / "metrics.md").read_text()  # a prior's report: its own numbers, no empty table
    assert "no inference procedure" not in md and "the model does not inpaint" in md and "| test/swd |" in md
    # what inversion does with the file: the EMA generator, rebuilt from the hyper-parameters
    g = PGGANGenerator(**ckpt["hyper_parameters"]["generator"])
    g.load_state_dict({k.removeprefix("generator_ema."): v for k, v in state.items()
                       if k.startswith("generator_ema.")})
    assert g(torch.randn(2, 16), lod=0).shape == (2, 3, 8, 8)


def test_adam_state_is_reset_at_a_phase_change(cifar, make_cfg, tmp_path, monkeypatch):
    resets: list[tuple[int, int]] = []
    original = PGGANModule.reset_optimizer_states

    def spy(self):
        original(self)
        resets.append((self.global_step, sum(len(o.optimizer.state) for o in self.optimizers())))

    monkeypatch.setattr(PGGANModule, "reset_optimizer_states", spy)
    # 4 images per step: lod 1, 1 (fade starts after 4 images), 0.5, 0 -> resets before steps 2 and 3
    cfg = make_cfg(*overrides(cifar, 4, 8, "trainer.max_steps=4", "trainer.val_check_interval=4",
                              "test_after_fit=false", "eval.grid_samples=0"))
    run(cfg)
    assert resets == [(2, 0), (3, 0)]  # state empty right after each reset
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    for opt in ckpt["optimizer_states"]:
        assert {int(s["step"]) for s in opt["state"].values()} == {1}  # one Adam step since the last reset


def test_resume_mid_fade_continues_exactly(cifar, make_cfg, tmp_path):
    # lod per step: 1, 5/6, 1/2, 1/6; last.ckpt after 2 steps is mid-fade
    common = overrides(cifar, 2, 12, "test_after_fit=false", "eval.grid_samples=0", "trainer.val_check_interval=2")
    run(make_cfg(*common, "trainer.max_steps=4", out=tmp_path / "full"))
    run(make_cfg(*common, "trainer.max_steps=2", out=tmp_path / "half"))
    mid = torch.load(tmp_path / "half/checkpoints/last.ckpt", weights_only=True)
    assert float(mid["state_dict"]["generator.lod"]) == pytest.approx(5 / 6)
    run(make_cfg(*common, "trainer.max_steps=4", f"ckpt_path={tmp_path / 'half/checkpoints/last.ckpt'}",
                 out=tmp_path / "half"))
    full = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)
    resumed = torch.load(tmp_path / "half/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == full["global_step"] == 4
    assert float(resumed["state_dict"]["generator.lod"]) == pytest.approx(1 / 6)
    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_config_composes_to_the_paper_recipe(make_cfg):
    model = build_model(make_cfg("model=pggan", "data.image_size=32"))
    assert isinstance(model, PGGANModule)
    assert (model.gp_weight, model.ema_decay, model.drift) == (10.0, 0.999, 0.001)
    assert model.progression == ProgressiveSchedule(32, 4, 600_000, 600_000)
    exp = make_cfg("experiment=pggan_cifar", "data.root=/nowhere")
    (best,) = [c for c in build_trainer(exp, build_model(exp)).callbacks if type(c) is ModelCheckpoint]
    assert (best.monitor, best.mode) == ("val/swd", "min")  # declared by the prior, not set in the config
    assert exp.model.generator.resolution == exp.data.image_size == 32
