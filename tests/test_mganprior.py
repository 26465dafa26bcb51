"""mGANprior inversion (specs/mganprior-pggan.md §1, §3, §4) on a tiny random 16 px PGGAN prior: the
composition, per-image independence of the batched inversion, the known-region loss, attention variants,
prior loading, and the runs through ``task=test`` and ``inpaint.predict``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY

from inpaint.checkpoints import CheckpointMismatchError
from inpaint.models.base import CHECKPOINT_CLASS_KEY
from inpaint.models.mganprior import PGGAN_MODULE_CLASS, MGANPriorModule, build_prior
from inpaint.nets.pggan import PGGANGenerator

SIZES = {"resolution": 16, "z_dim": 16, "fmap_base": 64, "fmap_max": 16}
PRIOR = {"random": True, **SIZES}


def tiny_model(dtype: torch.dtype = torch.float32, **kwargs) -> MGANPriorModule:
    """N=3 codes composed at 8x8 (layer 4) of a 16 px prior; 4 Adam steps at lr 0.05; random VGG."""
    opts = {"prior": PRIOR, "num_codes": 3, "compose_res": 8, "iterations": 4,
            "optimizer": {"name": "adam", "lr": 0.05}, "loss": {"vgg": "random"}, "progress": False,
            "buckets": ((0.0, 1.0),), **kwargs}
    return MGANPriorModule(**opts).to(dtype)


def batch(n: int = 3, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, 16, 16, generator=g, dtype=dtype)
    mask = torch.zeros(n, 1, 16, 16, dtype=dtype)
    for i in range(n):
        mask[i, :, 2 + i : 9 + i, 3 : 11 - i] = 1
    return image, mask


def test_composition_is_the_alpha_weighted_mean_of_g1_features_through_g2():
    model = tiny_model(torch.float64)
    g = model.generator
    assert model.layer == 4 and model.feature_shape == (16, 8, 8)
    z = torch.randn(2, 3, 16, dtype=torch.float64)
    alpha = torch.randn(2, 3, 16, dtype=torch.float64)
    got = model.synthesize(z, alpha)
    for b in range(2):
        fused = sum(alpha[b, n][:, None, None] * g.g1(z[b, n : n + 1], 4)[0] for n in range(3)) / 3
        want = g.g2(fused[None], 4)[0]
        torch.testing.assert_close(got[b], want, rtol=1e-12, atol=1e-12)
    # with one code and alpha = 1 it is the plain generator
    torch.testing.assert_close(model.synthesize(z[:, :1], torch.ones(2, 1, 16, dtype=torch.float64)),
                               g(z[:, 0]), rtol=1e-12, atol=1e-12)


def test_layer_default_composes_at_one_eighth_of_the_resolution():
    assert MGANPriorModule(prior={"random": True, "resolution": 256, "z_dim": 8, "fmap_base": 2048, "fmap_max": 8},
                           loss={"vgg": "none"}).layer == 8  # thesis: layer 8 = 32x32 at 256 px
    assert tiny_model(layer=2).feature_shape == (16, 4, 4)


def test_batched_inversion_equals_one_by_one_and_ignores_the_other_images():
    model = tiny_model(torch.float64, attention={"type": "cbam", "reduction": 4})
    image, mask = batch(3, torch.float64)
    index = torch.tensor([5, 1, 9])
    together = model.invert(image, mask, index)
    raw_together = model.last_raw
    for i in range(3):
        alone = model.invert(image[i : i + 1], mask[i : i + 1], index[i : i + 1])
        torch.testing.assert_close(alone[0], together[i], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(model.last_raw[0], raw_together[i], rtol=1e-9, atol=1e-9)
    # other neighbours (another image, another mask) leave image 0's result unchanged
    other, other_mask = batch(2, torch.float64, seed=3)
    mixed = model.invert(torch.cat([image[:1], other]), torch.cat([mask[:1], other_mask]), torch.tensor([5, 2, 3]))
    torch.testing.assert_close(mixed[0], together[0], rtol=1e-9, atol=1e-9)
    # ... while the image's seed (its index) does matter
    assert not torch.allclose(model.invert(image[:1], mask[:1], torch.tensor([6]))[0], together[0])


def test_the_hole_content_of_the_input_does_not_change_the_optimisation():
    model = tiny_model(torch.float64)
    image, mask = batch(2, torch.float64)
    model.invert(image, mask)
    raw = model.last_raw.clone()
    scribbled = torch.where(mask.bool().expand_as(image), torch.rand_like(image), image)
    composite = model.invert(scribbled, mask)
    torch.testing.assert_close(model.last_raw, raw, rtol=0, atol=0)
    known = ~mask.bool().expand_as(image)
    assert torch.equal(composite[known], image[known])  # known pixels are returned exactly


def test_the_loss_falls_and_early_stop_ends_each_image_on_its_own():
    model = tiny_model(iterations=0)
    image, mask = batch(2)
    model.invert(image, mask)
    start = model.last_loss.clone()
    model.configure_inference(iterations=30)
    model.invert(image, mask)
    assert (model.last_loss < start).all() and model.last_iterations == [30, 30]
    model.configure_inference(early_stop={"patience": 2, "rel_tol": 0.5})  # "no halving in 2 steps" stops early
    model.invert(image, mask)
    assert all(it < 30 for it in model.last_iterations)
    model.configure_inference(early_stop=False, seconds=1e-9)  # the time budget ends the batch after a step
    model.invert(image, mask)
    assert model.last_iterations == [1, 1]
    with pytest.raises(ValueError, match="inference option"):
        model.configure_inference(temperature=1.0)


def test_sgd_and_gaussian_alpha_init_run():
    model = tiny_model(optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9}, alpha_init="normal", iterations=3)
    image, mask = batch(2)
    out = model.invert(image, mask)
    assert torch.isfinite(out).all() and torch.isfinite(model.last_loss).all()
    with pytest.raises(ValueError, match="optimizer.name"):
        tiny_model(optimizer={"name": "lbfgs"})


def test_perceptual_layer_is_configurable_and_loss_keys_are_checked():
    image, mask = batch(1)
    relu33 = tiny_model(iterations=0)
    conv43 = tiny_model(iterations=0, loss={"vgg": "random", "perceptual_layer": "conv4_3"})  # paper/thesis
    relu33.invert(image, mask)
    conv43.invert(image, mask)
    assert relu33.last_loss != conv43.last_loss
    with pytest.raises(ValueError, match="perceptual_layer"):
        tiny_model(loss={"perceptual_layer": "conv9_9"})
    with pytest.raises(ValueError, match="unknown key.*vgg_weight"):
        tiny_model(loss={"vgg_weight": 1.0})


def test_self_attention_with_gamma_zero_fixed_is_plain_mganprior():
    image, mask = batch(2, torch.float64)
    plain = tiny_model(torch.float64).invert(image, mask)
    fixed_sa = tiny_model(torch.float64, attention={"type": "sa", "trainable": False, "reduction": 4}).invert(image, mask)
    torch.testing.assert_close(fixed_sa, plain, rtol=1e-12, atol=1e-12)
    # trainable SA starts as plain mGANprior (gamma 0) but moves away once gamma is optimised
    trained = tiny_model(torch.float64, attention={"type": "sa", "reduction": 4}, iterations=0).invert(image, mask)
    torch.testing.assert_close(trained, tiny_model(torch.float64, iterations=0).invert(image, mask))


@pytest.mark.parametrize("attention", [
    {"type": "sa", "score": "scaled_dot", "reduction": 4},
    {"type": "sa", "variant": "authors", "reduction": 4, "position": "per_code"},
    {"type": "cbam", "reduction": 4},
    {"type": "cbam", "reduction": 4, "position": "per_code"},
])
def test_attention_variants_run_and_change_the_fill(attention):
    image, mask = batch(2)
    plain = tiny_model(iterations=3).invert(image, mask)
    out = tiny_model(attention=attention, iterations=3).invert(image, mask)
    assert torch.isfinite(out).all() and not torch.allclose(out, plain)


def _write_pggan_run(path, ema: bool, cls: str = PGGAN_MODULE_CLASS) -> PGGANGenerator:
    torch.manual_seed(1)
    gen, ema_gen = PGGANGenerator(**SIZES), PGGANGenerator(**SIZES)
    state = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    if ema:
        state.update({f"generator_ema.{k}": v for k, v in ema_gen.state_dict().items()})
    state["discriminator.x"] = torch.zeros(1)
    torch.save({"state_dict": state, "hyper_parameters": {"generator": dict(SIZES)}, CHECKPOINT_CLASS_KEY: cls}, path)
    return ema_gen if ema else gen


@pytest.mark.parametrize("ema", [True, False])
def test_prior_from_a_pggan_run_checkpoint(tmp_path, ema):
    want = _write_pggan_run(tmp_path / "pggan.ckpt", ema)
    got = build_prior({"checkpoint": str(tmp_path / "pggan.ckpt")})
    z = torch.randn(2, 16)
    torch.testing.assert_close(got(z), want(z), rtol=0, atol=0)
    assert not any(p.requires_grad for p in got.parameters())


def test_prior_refuses_another_models_checkpoint_and_ambiguous_sources(tmp_path):
    _write_pggan_run(tmp_path / "scnn.ckpt", True, cls="inpaint.models.scnn.SCNNModule")
    with pytest.raises(CheckpointMismatchError, match="SCNNModule.*not of a PGGAN prior"):
        build_prior({"checkpoint": str(tmp_path / "scnn.ckpt")})
    with pytest.raises(ValueError, match="exactly one"):
        build_prior({"random": True, "official": "x.pth", **SIZES})
    with pytest.raises(ValueError, match="exactly one"):
        build_prior({**SIZES})


RUN = [*TINY, "model=mganprior", "task=test", "mask=blocks_12", "data.image_size=16", "data.resize_short=32",
       "data.eval_crops_per_image=1", "data.batch_size=2", "logger=none", "eval.buckets=[[0.0,1.0]]",
       *(f"model.prior.{k}={v}" for k, v in PRIOR.items()), "model.prior.official=null", "model.num_codes=2",
       "model.compose_res=8", "model.loss.vgg=random", "model.progress=false", "+eval.inference.iterations=3"]


def test_task_test_scores_the_composite_and_the_raw_output(make_cfg, tmp_path):
    from inpaint.run import run

    results = run(make_cfg(*RUN, "model.attention.type=sa", "+model.attention.reduction=4", out=tmp_path / "r"))
    for key in ("test/psnr", "test/ssim", "test/raw/psnr", "test/raw/ssim"):
        assert math.isfinite(results[key]), key
    assert results["test/psnr"] != results["test/raw/psnr"]
    report = (tmp_path / "r" / "metrics.md").read_text()
    assert "Side by side (composite, raw (no paste-back))" in report
    assert f"{results['test/raw/psnr']:.2f}" in report.split("Side by side")[1]


def test_predict_fills_a_photo(tmp_path):
    from inpaint.predict import inpaint_file

    model = tiny_model().eval()
    image = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    mask = np.zeros((20, 24), np.float32)
    mask[5:12, 6:15] = 1
    out = inpaint_file(model, image, mask, torch.device("cpu"))
    assert out.shape == image.shape and (out[mask == 0] == image[mask == 0]).all()
    assert model.last_raw is not None and model.last_raw.shape[-2:] == (20, 24)  # resized to 16 px and back


def test_predict_job_from_a_saved_mganprior_module(make_cfg, tmp_path):
    """``inpaint.predict ckpt_path=...``: a module saved with its hyperparameters (here a random 16 px prior) is
    rebuilt by the predict job, takes the inversion budget as inference options and writes the composites.
    (``model=mganprior`` with ``+model_options.*`` is the other way: the next test.)"""
    from PIL import Image

    from inpaint.models.base import class_path
    from inpaint.predict import predict

    model = tiny_model()
    ckpt = tmp_path / "mgp.ckpt"
    torch.save({CHECKPOINT_CLASS_KEY: class_path(model), "hyper_parameters": dict(model.hparams),
                "state_dict": model.state_dict()}, ckpt)
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:11, 3:9] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    cfg = make_cfg(f"ckpt_path={ckpt}", f"input={tmp_path / 'in'}", f"mask={tmp_path / 'mask.png'}",
                   f"output={tmp_path / 'out'}", "+inference.iterations=2", "device=cpu", config="predict")
    (written,) = predict(cfg)
    out = np.asarray(Image.open(written))
    src = np.asarray(Image.open(tmp_path / "in" / "a.png"))
    assert out.shape == src.shape and (out[mask == 0] == src[mask == 0]).all()
    assert not (out[mask > 0] == src[mask > 0]).all()


def test_official_generator_file_through_official_weights(tmp_path):
    """``inpaint.predict model=mganprior weights=FILE`` sets ``official_weights``: a genforce-layout file loads."""
    torch.manual_seed(2)
    want = PGGANGenerator(**SIZES)
    torch.save({"generator_smooth": want.state_dict(), "generator": PGGANGenerator(**SIZES).state_dict()},
               tmp_path / "pggan_tiny.pth")
    model = MGANPriorModule(prior={"official": "unused.pth", **SIZES}, official_weights=str(tmp_path / "pggan_tiny.pth"),
                            loss={"vgg": "none"}, compose_res=8)
    z = torch.randn(2, 16)
    assert not torch.allclose(model.generator(z), want(z))  # loaded on first use, not when built
    model.ensure_prior()
    torch.testing.assert_close(model.generator(z), want(z), rtol=0, atol=0)
    assert model.w_perceptual == 0.0  # vgg=none: no perceptual term


def test_the_default_config_builds_offline_and_names_the_switch_when_inverting(make_cfg, monkeypatch):
    from inpaint.run import build_model
    from inpaint.weights import WeightsUnavailableError

    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    model = build_model(make_cfg("model=mganprior", "model.prior.resolution=16", "model.prior.fmap_base=64",
                                 "model.prior.fmap_max=16", "model.prior.z_dim=16", "model.loss.vgg=none"))
    assert model.layer == 2 and model.num_codes == 20  # 16 px: max(4, 16/8) = 4x4, 2nd conv and model.optimizer_name == "adam"
    with pytest.raises(WeightsUnavailableError, match="pggan_bedroom256.*prior.random=true"):
        model.invert(*batch(1))


@pytest.mark.parametrize("experiment", ["mganprior_tables", "mganprior_table64"])
def test_thesis_table_experiments_compose(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "data.root=/nowhere")
    assert cfg.task == "test" and cfg.model.num_codes == 20 and cfg.model.layer == 8
    assert cfg.model.optimizer.name == "adam" and cfg.model.iterations == 3000
    assert cfg.model.attention.get("score", "dot") == ("scaled_dot" if experiment.endswith("64") else "dot")


def test_predict_by_model_name_takes_model_options(make_cfg, tmp_path):
    """``inpaint.predict model=mganprior +model_options.prior...``: the model config by name, with keys overridden
    (here a random 16 px prior, no VGG); options with a checkpoint are refused by name."""
    from PIL import Image

    from inpaint.predict import predict

    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[2:9, 5:12] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    sizes = [f"+model_options.prior.{k}={v}" for k, v in SIZES.items()]
    cfg = make_cfg("model=mganprior", "+model_options.prior.official=null", "+model_options.prior.random=true",
                   *sizes, "+model_options.loss.vgg=none", "+model_options.compose_res=8",
                   "+model_options.num_codes=2", "+inference.iterations=2", f"input={tmp_path / 'a.png'}",
                   f"mask={tmp_path / 'm.png'}", f"output={tmp_path / 'out'}", "device=cpu", config="predict")
    (written,) = predict(cfg)
    out, src = np.asarray(Image.open(written)), np.asarray(Image.open(tmp_path / "a.png"))
    assert (out[mask == 0] == src[mask == 0]).all()
    bad = make_cfg(f"ckpt_path={tmp_path / 'x.ckpt'}", "+model_options.num_codes=2", f"input={tmp_path / 'a.png'}",
                   f"mask={tmp_path / 'm.png'}", f"output={tmp_path / 'o2'}", config="predict")
    with pytest.raises(ValueError, match="model_options= go with model=NAME"):
        predict(bad)
