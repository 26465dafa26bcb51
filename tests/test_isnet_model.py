"""ISNet as a LightningModule: the authors' update rule, PRA, evaluation side by side, configs, CLI."""

from __future__ import annotations

import copy
import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from conftest import run_cli, tiny, write_masks
from PIL import Image
from scipy.ndimage import grey_dilation
from torch.utils.data import DataLoader

from inpaint.models.isnet import ISNetModule
from inpaint.models.optimizers import recipe
from inpaint.run import build_model, run

# blocks=1 is the smallest full ISNet (19.9 M parameters); 32x32 crops keep a step well under a second
ISNET = [*tiny("isnet"), "model=isnet", "logger=none"]


def small_isnet(**kw) -> ISNetModule:
    torch.manual_seed(0)
    base = {"generator": {"blocks": 1}, "loss": {"vgg": "random"}, **recipe("isnet")}
    base.update(kw)
    return ISNetModule(**base)


def batch(n=2, size=32, holes=(0.45, 0.15), seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g)
    mask = torch.zeros(n, 1, size, size)
    for i, ratio in enumerate(holes[:n]):
        side = round(size * ratio**0.5)
        mask[i, :, 2 : 2 + side, 3 : 3 + side] = 1.0
    return image, mask


# ----------------------------------------------------------------------------------- configs
def test_model_configs_compose_to_the_papers_objectives(make_cfg):
    eq5 = make_cfg("model=isnet").model
    assert dict(eq5.loss.weights) == {"l1": 1.0, "adv": 3.0, "perc": 1.0, "style": 3.0, "fm": 0.0}
    assert eq5.loss.gan == "hinge" and list(eq5.optimizer.betas) == list(eq5.optimizer_d.betas) == [0.0, 0.9]
    assert (eq5.optimizer._target_, eq5.optimizer.lr, eq5.optimizer_d.lr) == ("torch.optim.Adam", 1e-4, 1e-5)
    eq4 = make_cfg("model=isnet_eq4").model
    assert dict(eq4.loss.weights) == {"l1": 1.0, "adv": 0.1, "perc": 0.1, "style": 250.0, "fm": 10.0}
    assert eq4.generator.variant == "isnet" and eq4.pra.kernel == 15


def compose_with_hydra(*overrides: str):
    """The composed config including its ``hydra`` node (sweeper settings)."""
    from hydra import compose, initialize_config_dir

    from inpaint.run import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_experiment_files_set_the_papers_setups(make_cfg):
    cfg = make_cfg("experiment=isnet_places2", "data.root=/d", "mask.root=/m")
    assert cfg.data._target_.endswith("Places2DataModule") and cfg.mask._target_.endswith("NvidiaMask")
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.trainer.limit_test_batches) == (256, 8, 1250)
    assert cfg.eval.per_bucket is True
    cfg = make_cfg("experiment=isnet_celeba", "data.root=/d", "mask.root=/m")
    assert cfg.data._target_.endswith("CelebADataModule") and cfg.data.center_crop == 178
    t7 = compose_with_hydra("experiment=isnet_table7", "data.root=/d", "mask.root=/m")
    assert t7.hydra.sweeper.params["model.generator.variant"] == "base,base_ff,isnet,unet"
    t8 = compose_with_hydra("experiment=isnet_table8", "data.root=/d", "mask.root=/m")
    assert t8.hydra.sweeper.params["model.generator.blocks"] == "1,2,3,4"
    assert t8.hydra.sweeper.params["model.generator.variant"] == "isnet"
    search = compose_with_hydra("hparams_search=isnet_loss_weights")
    params = search.hydra.sweeper.params
    assert sorted(params) == sorted(f"model.loss.weights.{k}" for k in ("l1", "adv", "perc", "style", "fm"))
    assert all(v == "tag(log, interval(0.1, 300))" for v in params.values())
    assert search.hydra.sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert search.model._target_ == "inpaint.models.isnet.ISNetModule"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.generator.variant=resnet", "isnet"),
        ("model.loss.gan=wgan", "hinge"),
        ("+model.loss.weights.tv=1", "unknown term"),
        ("model.pra.kernel=4", "odd"),
    ],
)
def test_bad_options_are_clear_errors(make_cfg, override, message):
    with pytest.raises(ValueError, match=message):
        build_model(make_cfg("model=isnet", override))


# ----------------------------------------------------------------------------------- the update rule
def _reference_grads(model: ISNetModule, image, mask):
    """The authors' effective update written out by hand (spec 5.2): the D loss and G's adversarial / FM
    terms against the same pre-update D, G's terms reaching G only. Returns (G grads, D grads)."""
    from inpaint.losses import AdversarialLoss

    ref = copy.deepcopy(model)
    G, D = ref.generator, ref.discriminator
    w = ref.loss_weights
    out = G(image * (1 - mask))
    real, real_feats = D(image)
    fake, _ = D(out.detach())
    d_loss = AdversarialLoss("hinge").discriminator_loss(real, fake)
    d_grads = torch.autograd.grad(d_loss, list(D.parameters()))
    g_fake, g_feats = D(out)
    l1 = (out - image).abs().mean() / mask.mean()
    fm = sum((a - b.detach()).abs().mean() for a, b in zip(g_feats, real_feats, strict=True))
    g_loss = w["l1"] * l1 + w["adv"] * (-g_fake.mean()) + w["fm"] * fm
    g_grads = torch.autograd.grad(g_loss, list(G.parameters()))
    return g_grads, d_grads


def test_training_step_is_the_authors_update_against_the_pre_update_discriminator(tmp_path):
    weights = {"l1": 1.0, "adv": 3.0, "perc": 0.0, "style": 0.0, "fm": 2.0}
    model = small_isnet(loss={"vgg": "random", "weights": weights})
    image, mask = batch()
    g_grads, d_grads = _reference_grads(model, image, mask)
    before = copy.deepcopy(model)
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=DataLoader([{"image": image, "mask": mask}], batch_size=None))
    # one iteration counts as one step, although both networks stepped
    assert trainer.global_step == 1
    # the gradients each optimizer stepped with: D's from its own loss only (G's adversarial backward did
    # not leak into them), G's from its terms against the pre-update D
    for net, want in ((model.generator, g_grads), (model.discriminator, d_grads)):
        for (name, p), g in zip(net.named_parameters(), want, strict=True):
            torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-4, msg=name)
    # and both stepped, with their own learning rates (Adam's first step moves each weight by ~lr)
    for net, old, lr in ((model.generator, before.generator, 1e-4), (model.discriminator, before.discriminator, 1e-5)):
        p, q = next(iter(net.parameters())), next(iter(old.parameters()))
        assert (p - q).abs().max().item() == pytest.approx(lr, rel=0.05)


def test_zero_weighted_terms_are_not_computed(monkeypatch):
    model = small_isnet(loss={"vgg": "random", "weights": {"l1": 1.0, "adv": 0.0, "perc": 0.0, "style": 0.0, "fm": 0.0}})
    assert not model.uses_discriminator
    called = []
    monkeypatch.setattr(model.discriminator, "forward", lambda *a: called.append(1))
    image, mask = batch()
    total, terms = model.generator_losses(model(image, mask), image, mask, None)
    assert list(terms) == ["l1"] and not called and not model._vgg


# ----------------------------------------------------------------------------------- PRA
def _pra_reference(model: ISNetModule, image, mask):
    """Spec 6.1 for one image with numpy/scipy: valid-mask dilation by a flat 15x15 square."""
    G = model.generator
    m = (mask[0, 0] <= 0.5).float().numpy()
    x = image
    with torch.no_grad():
        out = G(x * torch.from_numpy(m)).clamp(0, 1)
        comp = out * (1 - torch.from_numpy(m)) + x * torch.from_numpy(m)
        i, passes = 1, 0
        while (1 - m.mean()) > 0.2 and i <= 10:
            m = grey_dilation(m, size=(15, 15)).astype(np.float32)
            mt = torch.from_numpy(m)
            out = G(comp * mt).clamp(0, 1)
            comp = out * (1 - mt) + comp * mt
            i, passes = i + 1, passes + 1
    return comp, passes


def test_pra_matches_the_authors_loop_per_image_in_a_batch():
    model = small_isnet(pra={"enabled": True}).eval()
    # PRA's bookkeeping is generator-agnostic; a smooth stand-in keeps float noise from batch-size-dependent
    # conv kernels from being amplified (a freshly initialised ISNet is chaotic), so results compare exactly
    torch.manual_seed(1)
    model.generator = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 5, padding=2), torch.nn.Sigmoid()).eval()
    image, mask = batch(n=3, size=64, holes=(0.45, 0.15, 0.3))
    composite = model.inpaint(image, mask)
    passes = model.last_pra_passes.tolist()
    assert passes[1] == 0 and passes[0] > passes[2] > 0  # each image its own number of passes
    for i in range(3):
        want, n = _pra_reference(model, image[i : i + 1], mask[i : i + 1])
        assert passes[i] == n
        torch.testing.assert_close(composite[i : i + 1], want, atol=1e-6, rtol=1e-5)
    # known pixels are the input's, exactly; small holes give the single-pass result
    assert torch.equal(composite * (1 - mask), image * (1 - mask))
    model.pra_enabled = False
    torch.testing.assert_close(model.inpaint(image, mask)[1], composite[1])


def test_pra_with_the_real_generator_matches_the_reference():
    model = small_isnet(pra={"enabled": True}).eval()
    image, mask = batch(n=1, size=64, holes=(0.45,))
    composite = model.inpaint(image, mask)
    want, n = _pra_reference(model, image, mask)
    assert model.last_pra_passes.tolist() == [n] and n >= 2
    torch.testing.assert_close(composite, want, atol=1e-5, rtol=1e-5)


def test_evaluation_and_pra_run_the_ema_generator(tmp_path):
    adam = {"_target_": "torch.optim.Adam", "lr": 1e-2, "betas": [0.0, 0.9]}  # a visible step
    weights = {"l1": 1.0, "adv": 1.0, "perc": 0.0, "style": 0.0, "fm": 1.0}
    model = small_isnet(generator={"blocks": 1, "init_std": 0.02}, pra={"enabled": True}, gan={"ema": 0.5},
                        optimizer=adam, loss={"vgg": "random", "weights": weights})
    image, mask = batch(n=1, size=64, holes=(0.45,))
    L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path,
              ).fit(model, train_dataloaders=DataLoader([{"image": image, "mask": mask}], batch_size=None))
    model.eval()
    assert model.eval_generator is model.generator_ema
    x = model.masked_input(image, mask)
    with torch.no_grad():
        ema, raw = model.generator_ema(x), model.generator(x)
        assert torch.equal(model(image, mask), ema) and not torch.allclose(ema, raw, atol=1e-4)
        composite = model.inpaint(image, mask)  # PRA: every pass by the EMA copy
    on_ema = copy.deepcopy(model)
    on_ema.generator = on_ema.generator_ema
    want, n = _pra_reference(on_ema, image, mask)
    assert model.last_pra_passes.tolist() == [n] and n >= 2
    torch.testing.assert_close(composite, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(composite, _pra_reference(model, image, mask)[0], atol=1e-4)


def test_pra_stops_after_max_passes():
    model = small_isnet(pra={"enabled": True, "max_passes": 3, "kernel": 3}).eval()
    image, mask = batch(n=1, size=32, holes=(0.9,))
    model.inpaint(image, mask)
    assert model.last_pra_passes.tolist() == [3]


# ----------------------------------------------------------------------------------- runs
@pytest.mark.slow
def test_fit_checkpoints_both_optimizers_and_resumes(make_cfg, tmp_path):
    out = tmp_path / "run"
    results = run(make_cfg(*ISNET, out=out))
    assert math.isfinite(results["test/psnr"])
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2 and ckpt["global_step"] == 2
    assert not any("vgg" in k for k in ckpt["state_dict"])  # the frozen VGG is not saved
    resumed = run(make_cfg(*ISNET, "trainer.max_steps=4", f"ckpt_path={out}/checkpoints/last.ckpt",
                           out=tmp_path / "resumed"))
    assert math.isfinite(resumed["test/psnr"])
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4


@pytest.mark.slow
def test_per_bucket_test_with_pra_prints_a_table5_side_by_side(make_cfg, tmp_path, capsys):
    masks = write_masks(tmp_path / "masks", n=24, size=64)
    out = tmp_path / "run"
    run(make_cfg(*ISNET, out=out))
    test = run(make_cfg(*ISNET, "task=test", f"init_from={out}/checkpoints/last.ckpt", "mask=nvidia",
                        f"mask.root={masks}", "eval.per_bucket=true", "model.pra.enabled=true",
                        out=tmp_path / "test"))
    printed = capsys.readouterr().out
    assert "| mask ratio | metric | ISNet | ISNet+PRA |" in printed
    for bucket in ("10-20%", "20-30%", "30-40%", "40-50%"):
        assert f"| {bucket} | PSNR |" in printed
    # PRA never runs below 20 % holes: the two columns agree there
    assert test["test/psnr@10-20"] == pytest.approx(test["test/single/psnr@10-20"])
    md = (tmp_path / "test" / "metrics.md").read_text()
    assert "ISNet+PRA" in md and "| MAE(%) |" in md
    report = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert "test/single/ssim@40-50" in report["test"]


def test_missing_vgg_weights_offline_is_one_clear_message(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    over = [o for o in ISNET if not o.startswith("model.loss.vgg")]
    with pytest.raises(FileNotFoundError) as err:
        run(make_cfg(*over, out=tmp_path / "run"))
    msg = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in msg and str(tmp_path / "hub") in msg and "model.loss.vgg=random" in msg


@pytest.mark.slow
def test_authors_weights_are_evaluated_and_used_by_predict(make_cfg, tmp_path):
    torch.manual_seed(0)
    source = ISNetModule(loss={"vgg": "random"})  # the released model's configuration: 4 blocks
    path = tmp_path / "InpaintingModel_gen.pth"
    torch.save({"iteration": 7, "generator": source.generator.state_dict()}, path)
    over = [o for o in ISNET if "blocks" not in o]
    results = run(make_cfg(*over, "task=test", f"model.official_weights={path}", out=tmp_path / "test"))
    assert math.isfinite(results["test/psnr"])

    photos, masks = tmp_path / "in", tmp_path / "m"
    photos.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photos / "a.png")
    hole = np.zeros((40, 50), np.uint8)
    hole[5:35, 5:40] = 255
    Image.fromarray(hole).save(masks / "a.png")
    out_dir = tmp_path / "out"
    proc = run_cli("inpaint.predict", "model=isnet", f"weights={path}", "procedure=pra", f"input={photos}",
                   f"mask={masks}", f"output={out_dir}", "device=cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = np.asarray(Image.open(out_dir / "a.png"))
    original = np.asarray(Image.open(photos / "a.png"))
    assert result.shape == original.shape and (result[hole == 0] == original[hole == 0]).all()


@pytest.mark.slow
def test_optuna_random_search_runs_two_trials_and_tables_them(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "inpaint.run", "-m", "hparams_search=isnet_loss_weights", *ISNET, "hydra.sweeper.n_trials=2",
        "trainer.max_steps=1", "trainer.val_check_interval=1", "trainer.limit_test_batches=1",
        "test_after_fit=true", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (sweep / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        weights = [float(r["overrides"][f"model.loss.weights.{k}"]) for k in ("l1", "adv", "perc", "style", "fm")]
        assert all(0.1 <= w <= 300 for w in weights)
        assert math.isfinite(r["objective"]) and "test/psnr" in r["metrics"]
    md = (sweep / "trials.md").read_text()
    assert md.count("\n| ") == 3 and "objective (val/psnr)" in md  # header + 2 trials
    assert (sweep / "optimization_results.yaml").is_file()
    objectives = [r["objective"] for r in rows]
    assert rows[0]["objective"] in objectives


@pytest.mark.slow
def test_amp_loss_scale_changes_only_after_both_networks_stepped(tmp_path):
    """16-mixed: D and G gradients come from one scaled backward, so the scale must not change between the
    two optimizer steps (one ``update`` per iteration, after both), as in PyTorch's multi-optimizer recipe."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    events = []

    class SpyScaler(torch.amp.GradScaler):
        def step(self, optimizer, *args, **kwargs):
            events.append("step")
            return super().step(optimizer, *args, **kwargs)

        def update(self, *args, **kwargs):
            events.append("update")
            return super().update(*args, **kwargs)

    model = small_isnet(loss={"vgg": "random", "weights": {"l1": 1.0, "adv": 1.0, "perc": 0.0, "style": 0.0, "fm": 1.0}})
    plugin = MixedPrecision("16-mixed", "cpu", scaler=SpyScaler("cpu", init_scale=2.0**8))
    image, mask = batch()
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu",
        enable_model_summary=False, default_root_dir=tmp_path, plugins=[plugin],
    )
    trainer.fit(model, train_dataloaders=DataLoader([{"image": image, "mask": mask}] * 2, batch_size=None))
    assert trainer.global_step == 2
    assert events == ["step", "step", "update"] * 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_ddp_cpu_trains_isnet_with_one_backward_per_step(tmp_path):
    proc = run_cli("inpaint.run", *ISNET, "trainer=ddp_cpu", "data.batch_size=2", "data.eval_crops_per_image=1",
                   f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("fit/runs/*/metrics.json")).read_text())
    assert math.isfinite(report["test"]["test/psnr"])
    proc = run_cli("inpaint.run", *ISNET, "trainer=ddp_cpu", "model.generator.variant=base",
                   f"paths.log_dir={tmp_path / 'base'}", cwd=tmp_path)
    assert proc.returncode == 1 and "ddp_find_unused_parameters_true" in proc.stderr


def test_pra_is_one_named_procedure_among_the_public_hooks():
    """PRA is ISNet's procedure ``pra`` next to ``single``: chosen and compared through configure_inference
    (what run's eval.procedure / eval.compare and predict's procedure= call); other models refuse it by name."""
    from inpaint.models.biharmonic import BiharmonicModule

    model = small_isnet().eval()
    assert list(model.inference_procedures()) == ["single", "pra"] and model.procedure == "single"
    assert model.eval_variants == {}
    model.configure_inference(procedure="pra")
    assert model.procedure == "pra" and model.eval_variants == {}
    model.configure_inference(compare=["single"])
    assert model.eval_variants == {"ISNet": "single/", "ISNet+PRA": ""}
    assert small_isnet(pra={"enabled": True}).eval_variants == {"ISNet": "single/", "ISNet+PRA": ""}
    with pytest.raises(ValueError, match="'pra' is not one of BiharmonicModule's: forward"):
        BiharmonicModule().configure_inference(procedure="pra")
    with pytest.raises(ValueError, match="BiharmonicModule has no inference option temperature=0.5"):
        BiharmonicModule().configure_inference(temperature=0.5)
