"""The adversarial context encoders (``model=ce_gan``, ``model=ce_wgan``, spec A4) on the shared GAN mechanism:
real training steps through the real configs on a CIFAR-10 fixture, the generator gradient against a
hand-written reference, separate real/fake batches through D, clipping, init_from the L2 model, the CLI."""

from __future__ import annotations

import copy
import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny, write_dataset
from test_context_encoder import cifar_batch
from torch.utils.data import DataLoader

from inpaint.models.base import compose
from inpaint.models.context_encoder import AdversarialContextEncoder, from_model_range, to_model_range
from inpaint.run import build_model, run

TINY_G = ["model.generator.width=8", "model.generator.bottleneck=16", "model.generator.blocks=1",
          "model.discriminator.width=8"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("cifar10")
    return [*write_dataset("cifar10", root), "data.resize_short=null", "mask=cifar_center"]


def gan_overrides(model: str, cifar: list[str], *extra: str) -> list[str]:
    return [*tiny(model), f"model={model}", *TINY_G, *cifar, "logger=none", "eval.grid_samples=0", *extra]


def tiny_gan(**kw) -> AdversarialContextEncoder:
    torch.manual_seed(0)
    gen = {"width": 8, "bottleneck": 16, "blocks": 1, "decoder": "deconv", "dropout": "none"}  # no random masks
    adam = {"_target_": "torch.optim.Adam", "lr": 2e-4, "betas": [0.5, 0.999]}
    kw = {"optimizer": adam, "optimizer_d": adam, **kw}
    return AdversarialContextEncoder(generator=gen, discriminator={"width": 8}, **kw)


def one_step(model, batch, tmp_path) -> L.Trainer:
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=DataLoader([batch] * 20, batch_size=None))
    return trainer


# ------------------------------------------------------------------------------------- configs and runs
def test_configs_compose_to_the_spec(make_cfg):
    gan = make_cfg("model=ce_gan").model
    assert gan.alpha == 0.999 and gan.overlap == 4 and gan.loss.kind == "nsgan"
    assert list(gan.loss.real_label) == [0.9, 1.1] and list(gan.loss.fake_label) == [0.0, 0.2] and gan.loss.flip == 0.05
    for opt in (gan.optimizer, gan.optimizer_d):  # Adam 2e-4, betas (0.5, 0.999) for both (spec A4.4)
        assert (opt._target_, opt.lr, list(opt.betas)) == ("torch.optim.Adam", 2e-4, [0.5, 0.999])
    assert gan.gan.n_critic == 1
    wgan = make_cfg("model=ce_wgan").model
    assert wgan.loss.kind == "wgan" and wgan.gan.clip == 0.01 and wgan.gan.n_critic == 10
    assert dict(wgan.gan.critic_warmup) == {"steps": 100, "first": 25, "every": 500}
    for opt in (wgan.optimizer, wgan.optimizer_d):  # RMSprop 5e-5 for both (Arjovsky)
        assert (opt._target_, opt.lr) == ("torch.optim.RMSprop", 5e-5)
    model = build_model(make_cfg("model=ce_wgan", "data.image_size=32"))
    assert [type(o).__name__ for o in model.configure_optimizers()] == ["RMSprop", "RMSprop"]


@pytest.mark.parametrize("model, extra", [
    ("ce_gan", []),
    ("ce_gan", ["model.discriminator.d_input=patch", "model.generator.backbone=pathak", "model.generator.decoder=null"]),
    ("ce_gan", ["model.generator.backbone=resnet", "model.discriminator.d_paste=hole"]),
    ("ce_gan", ["model.generator.backbone=inception", "model.generator.variant=strided"]),
    ("ce_wgan", ["model.gan.n_critic=2", "model.gan.critic_warmup.first=1", "model.gan.critic_warmup.steps=3"]),
])
@pytest.mark.slow
def test_trains_through_the_real_configs(model, extra, cifar, make_cfg):
    results = run(make_cfg(*gan_overrides(model, cifar, *extra)))
    assert math.isfinite(results["test/psnr"])


def test_wgan_resumes_mid_cycle_and_counts_generator_iterations(cifar, make_cfg, tmp_path):
    over = gan_overrides("ce_wgan", cifar, "model.gan.n_critic=3", "model.gan.critic_warmup=null",
                         "trainer.max_steps=2", "test_after_fit=false")
    run(make_cfg(*over, out=tmp_path / "a"))
    ckpt = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 and len(ckpt["optimizer_states"]) == 2
    assert ckpt["inpaint_gan_cycle"] == {"critic_done": 0}
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 6  # 3 critic steps per G


# ------------------------------------------------------------------------------------- the update
def test_generator_gradient_is_alpha_rec_plus_adversarial_against_the_updated_d(tmp_path):
    model = tiny_gan(alpha=0.9, loss={"kind": "nsgan"})
    image, mask = cifar_batch(4)
    g0 = copy.deepcopy(model.generator)
    one_step(model, {"image": image, "mask": mask}, tmp_path)
    # the hand-written objective, with the D the generator step saw (after its own step)
    D = copy.deepcopy(model.discriminator).train()
    x = to_model_range(image)
    window = g0(x * (1 - mask))
    fake = x.clone()
    fake[..., 8:24, 8:24] = window
    weight = torch.ones(16, 16)
    weight[4:12, 4:12] = 1.0
    weight[:4], weight[-4:], weight[:, :4], weight[:, -4:] = 20.0, 20.0, 20.0, 20.0
    rec = ((window - x[..., 8:24, 8:24]) ** 2 * weight).mean()
    adv = F.binary_cross_entropy_with_logits(D(fake), torch.ones(4))
    want = torch.autograd.grad(0.9 * rec + 0.1 * adv, list(g0.parameters()))
    for (name, p), g in zip(model.generator.named_parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-6, rtol=1e-4, msg=name)


def test_d_never_sees_a_batch_mixing_real_and_fake(tmp_path):
    model = tiny_gan()
    image, mask = cifar_batch(4)
    real = to_model_range(image)
    kinds = []

    def spy(module, args):
        x = args[0]
        same_as_real = torch.isclose(x, real).flatten(1).all(1)
        kinds.append(same_as_real.all().item() or (~same_as_real).all().item())

    model.discriminator.register_forward_pre_hook(spy)
    one_step(model, {"image": image, "mask": mask}, tmp_path)
    assert len(kinds) == 3 and all(kinds)  # D(real), D(fake) for D; D(fake) for G: never mixed


def test_every_critic_weight_is_clipped(tmp_path):
    rms = {"_target_": "torch.optim.RMSprop", "lr": 0.05}
    model = tiny_gan(loss={"kind": "wgan"}, optimizer=rms, optimizer_d=rms, gan={"n_critic": 2, "clip": 0.01})
    image, mask = cifar_batch(4)
    one_step(model, {"image": image, "mask": mask}, tmp_path)
    assert max(p.abs().max().item() for p in model.discriminator.parameters()) <= 0.01


RMS = {"_target_": "torch.optim.RMSprop", "lr": 1e-3}


@pytest.mark.parametrize("kw", [
    {"gan": {"ema": 0.5}},                                                                   # ce_gan
    {"loss": {"kind": "wgan"}, "optimizer": RMS, "optimizer_d": RMS, "gan": {"ema": 0.5, "clip": 0.01}},  # ce_wgan
])
def test_evaluation_runs_the_ema_generator(kw, tmp_path):
    model = tiny_gan(**kw)
    image, mask = cifar_batch(4)
    one_step(model, {"image": image, "mask": mask}, tmp_path)
    model.eval()
    assert model.eval_generator is model.generator_ema
    x = model.masked_input(image, mask)
    with torch.no_grad():
        ema, raw = (model.paste(image, from_model_range(g(x))) for g in (model.generator_ema, model.generator))
        assert torch.equal(model(image, mask), ema) and not torch.allclose(ema, raw)
        assert torch.equal(model.inpaint(image, mask), compose(ema.clamp(0, 1), image, mask))


def test_wgan_refuses_a_momentum_critic():
    with pytest.raises(ValueError, match="must not use momentum.*torch.optim.RMSprop"):
        tiny_gan(loss={"kind": "wgan"}, optimizer_d={"_target_": "torch.optim.Adam", "lr": 1e-4})


def test_wgan_generator_starts_from_a_trained_l2_context_encoder(cifar, make_cfg, tmp_path):
    ae = ["model.overlap=4", "model.generator.decoder=deconv"]
    run(make_cfg(*tiny("context_encoder"), "model=context_encoder", *TINY_G[:3], *ae, *cifar, "logger=none",
                 "eval.grid_samples=0", "test_after_fit=false", out=tmp_path / "ae"))
    ckpt = tmp_path / "ae/checkpoints/last.ckpt"
    cfg = make_cfg(*gan_overrides("ce_wgan", cifar, f"init_from={ckpt}", "task=test"), out=tmp_path / "w")
    model = build_model(cfg)
    from inpaint.checkpoints import load_weights

    report = load_weights(model, ckpt)
    assert all(k.startswith("generator.") for k in report["loaded"]) and len(report["loaded"]) > 10
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    own = model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in report["loaded"])
    assert not any(k.startswith("discriminator.") for k in report["loaded"])  # the critic starts fresh


@pytest.mark.slow
def test_cli_trains_ce_wgan(cifar, tmp_path):
    proc = run_cli("inpaint.run", *gan_overrides("ce_wgan", cifar, "model.gan.n_critic=2",
                                                 "model.gan.critic_warmup=null", "eval.hole_metrics=true"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = proc.stdout.split("Run directory:")[1].split()[0]
    report = json.loads(open(f"{run_dir}/metrics.json").read())
    assert math.isfinite(report["test"]["test/mse_hole"])


def test_experiments_and_the_adversarial_weight_sweep_compose(make_cfg):
    from test_isnet_model import compose_with_hydra

    gan = make_cfg("experiment=ce_gan_cifar", "data.root=/d")
    assert gan.model._target_.endswith("AdversarialContextEncoder") and gan.model.loss.kind == "nsgan"
    assert (gan.data.batch_size, gan.trainer.max_steps, gan.eval.hole_metrics) == (64, 70300, True)
    wgan = make_cfg("experiment=ce_wgan_cifar", "data.root=/d")
    assert wgan.model.loss.kind == "wgan" and wgan.trainer.max_steps == 12000
    sweep = compose_with_hydra("hparams_search=ce_adv_weight", "experiment=ce_wgan_cifar", "data.root=/d")
    assert sweep.hydra.sweeper.params["model.alpha"] == "0.99,0.999,0.9999"
    assert sweep.model.gan.clip == 0.01
