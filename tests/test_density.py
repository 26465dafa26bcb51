"""The density models as LightningModules (``model=pixelcnn|row_lstm|diag_bilstm|flat_row_lstm``): real training
and evaluation through the real configs on a CIFAR-10 fixture, the NLL they report, their decoding procedures,
per-sample sampling, ``predict`` on a photo with a non-centre mask, refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import photo_like, run_cli, tiny, write_dataset
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

from inpaint.models.density import ARCHITECTURES, DensityModule
from inpaint.nets.autoregressive import naive_fill, quantize
from inpaint.run import build_model, build_trainer, run

#: small nets: every model trains and fills a 32x32 CIFAR fixture in seconds on one core
TINY_NETS = {
    "pixelcnn": {"arch": "pixelcnn", "width": 8},
    "row_lstm": {"arch": "row_lstm", "hidden": 6, "layers": 1},
    "diag_bilstm": {"arch": "diag_bilstm", "hidden": 6, "layers": 1},
    "flat_row_lstm": {"arch": "flat_row_lstm", "hidden": 8},
}


def net_overrides(model: str) -> list[str]:
    return [f"model.net.{k}={v}" for k, v in TINY_NETS[model].items() if k != "arch"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("cifar10")
    return [*write_dataset("cifar10", root), "data.resize_short=null", "mask=cifar_center"]


def module(model: str = "pixelcnn", seed: int = 0, **kw) -> DensityModule:
    torch.manual_seed(seed)
    m = DensityModule(net=TINY_NETS[model], **kw).eval()
    for p in m.net.parameters():  # spread the logits, so fills are not constant
        p.data.mul_(3.0)
    return m


def photos(n: int = 4, h: int = 12, w: int = 10) -> torch.Tensor:
    return torch.from_numpy(np.stack(photo_like(n, 3, h, w))).permute(0, 3, 1, 2).float() / 255.0


# ----------------------------------------------------------------------------------- training runs
@pytest.mark.parametrize("model", list(TINY_NETS))
@pytest.mark.slow
def test_each_model_trains_and_is_evaluated_through_run(model, cifar, make_cfg, tmp_path):
    cfg = make_cfg(*tiny("density"), f"experiment={model}_cifar", *cifar, *net_overrides(model), "logger=none",
                   "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=null",
                   "data.batch_size=4")
    results = run(cfg)
    for key in ("test/psnr", "test/nll_bpd", "test/nll_bpd_hole", "test/mse_hole", "test/maem_hole"):
        assert math.isfinite(results[key]), key
    assert 0 < results["test/nll_bpd"] < 8.5
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["seconds_per_image"] > 0
    assert report["procedure"] == "argmax" and "val/nll_bpd" in report["last_val"]
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()  # monitored on val/nll_bpd


def test_experiments_compose_with_the_spec_schedules(make_cfg):
    want = {"pixelcnn": (64, 21090, None), "row_lstm": (32, 56240, "value"), "diag_bilstm": (32, 56240, "value"),
            "flat_row_lstm": (64, 14060, None)}
    for model, (batch, steps, clip) in want.items():
        cfg = make_cfg(f"experiment={model}_cifar", "data.root=/nowhere")
        assert cfg.model.net.arch == model and cfg.mask.size == 8
        assert (cfg.data.batch_size, cfg.trainer.max_steps) == (batch, steps)
        assert cfg.trainer.get("gradient_clip_algorithm") == clip
        # the best checkpoint follows the density model's declaration, with no callbacks override in the config
        assert cfg.callbacks.model_checkpoint.monitor == "model"
        (best,) = [c for c in build_trainer(cfg, build_model(cfg)).callbacks if type(c) is ModelCheckpoint]
        assert (best.monitor, best.mode) == ("val/nll_bpd", "min")
    assert make_cfg("model=row_lstm").model.net.hidden == 96


def test_default_sizes_have_the_documented_parameter_counts(make_cfg):
    """The counts in the README's table (the default model configs)."""
    from omegaconf import OmegaConf

    want = {"pixelcnn": 142_592, "row_lstm": 1_616_832, "diag_bilstm": 1_470_912, "flat_row_lstm": 99_072}
    for model, count in want.items():
        net = OmegaConf.to_container(make_cfg(f"model={model}").model.net)
        assert sum(p.numel() for p in DensityModule(net=net).net.parameters()) == count, model


@pytest.mark.slow
def test_cli_test_with_sample_decoding_is_reproducible_per_seed(cifar, tmp_path):
    """``task=test`` of a trained checkpoint with ``eval.procedure=sample``: the same seed gives the same
    numbers, another seed other fills; the log reports the fill time per image."""
    common = [*tiny("density"), "experiment=pixelcnn_cifar", *cifar, *net_overrides("pixelcnn"), "logger=none",
              "eval.grid_samples=0", "data.batch_size=4"]
    fit = run_cli("inpaint.run", *common, f"hydra.run.dir={tmp_path / 'fit'}", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "fit" / "checkpoints" / "best.ckpt"

    def sampled(seed: int, name: str, *extra: str) -> dict:
        proc = run_cli("inpaint.run", *common, "task=test", f"ckpt_path={ckpt}", "eval.procedure=sample",
                       f"seed={seed}", f"hydra.run.dir={tmp_path / name}", *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads((tmp_path / name / "metrics.json").read_text())

    a, b = sampled(1, "a"), sampled(1, "b", "data.batch_size=3")  # another batch size, same fills
    c = sampled(2, "c", "+eval.inference.temperature=1.5", "eval.compare=[argmax]")
    # the same fills (sums accumulated over other batches differ in the last bits only)
    assert a["procedure"] == "sample" and a["test"]["test/mse_hole"] == pytest.approx(b["test"]["test/mse_hole"], 1e-9)
    assert c["test"]["test/mse_hole"] != a["test"]["test/mse_hole"]
    assert "test/argmax/psnr" in c["test"]  # the greedy fill scored side by side
    md = (tmp_path / "c" / "metrics.md").read_text()
    assert "| mask ratio | metric | argmax | sample |" in md
    assert "s per image" in (tmp_path / "a" / "run.log").read_text()


@pytest.mark.slow
def test_predict_fills_a_photo_with_a_non_centre_mask(cifar, make_cfg, tmp_path):
    cfg = make_cfg(*tiny("density"), "model=row_lstm", *cifar, *net_overrides("row_lstm"), "logger=none",
                   "eval.grid_samples=0", "test_after_fit=false")
    run(cfg)
    photo = photo_like(1, 5, 20, 26)[0]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    mask = np.zeros((20, 26), np.uint8)
    mask[2:7, 15:24] = 255  # top right, touching nothing central
    mask[14, 3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    outs = {}
    for name, extra in (("s1", ["procedure=sample", "seed=3"]), ("s2", ["procedure=sample", "seed=3"]),
                        ("s3", ["procedure=sample", "seed=4", "+inference.temperature=2.0"]), ("g", [])):
        proc = run_cli("inpaint.predict", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                       f"input={tmp_path / 'photo.png'}", f"mask={tmp_path / 'mask.png'}",
                       f"output={tmp_path / name}", *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[name] = np.asarray(Image.open(tmp_path / name / "photo.png"))
        assert outs[name].shape == photo.shape
        assert (outs[name][mask == 0] == photo[mask == 0]).all()  # known pixels exactly as given
    assert (outs["s1"] == outs["s2"]).all() and (outs["s1"] != outs["s3"]).any()
    log = (tmp_path / "g" / "predict.log").read_text()
    assert " s)" in log  # the per-image time


@pytest.mark.slow
def test_predict_refuses_an_option_the_model_does_not_have(cifar, make_cfg, tmp_path):
    cfg = make_cfg(*tiny("density"), "model=pixelcnn", *cifar, *net_overrides("pixelcnn"), "logger=none",
                   "eval.grid_samples=0", "test_after_fit=false", "trainer.max_steps=1")
    run(cfg)
    Image.fromarray(photo_like(1, 5, 16, 16)[0]).save(tmp_path / "p.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "m.png")
    proc = run_cli("inpaint.predict", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                   f"input={tmp_path / 'p.png'}", f"mask={tmp_path / 'm.png'}", f"output={tmp_path / 'o'}",
                   "procedure=pra", cwd=tmp_path)
    assert proc.returncode != 0 and "'pra' is not one of DensityModule's: argmax, sample, mean" in proc.stderr


# ----------------------------------------------------------------------------------- the module
@pytest.mark.parametrize("model", list(TINY_NETS))
def test_fill_is_the_naive_fill_and_keeps_known_pixels(model):
    m = module(model).double()
    image = photos(3, 9, 8).double()
    mask = torch.zeros(3, 1, 9, 8, dtype=torch.float64)
    mask[0, :, 2:5, 3:7] = 1
    mask[1, :, 0, 0] = mask[1, :, 8, 7] = 1
    for decode in ("argmax", "mean"):
        out = m.run_procedure(decode, image, mask)
        assert torch.equal(out[mask.expand_as(out) == 0], image[mask.expand_as(image) == 0])
        from inpaint.nets.autoregressive import Decoder

        want = naive_fill(m.net, image, mask[:, 0] > 0.5, Decoder(decode))
        assert torch.equal(out[mask.expand_as(out) == 1], want[mask.expand_as(want) == 1])


def test_sampling_depends_on_the_sample_not_its_batch():
    m = module("pixelcnn")
    image = photos(6, 10, 10)
    mask = torch.zeros(6, 1, 10, 10)
    mask[..., 3:8, 2:9] = 1
    m.inference_seed = 5
    whole = m.run_procedure("sample", image, mask, torch.arange(6))
    for order in ([4, 1], [0, 5, 3], [2]):
        idx = torch.tensor(order)
        assert torch.equal(m.run_procedure("sample", image[idx], mask[idx], idx), whole[idx])
    assert not torch.equal(m.run_procedure("sample", image, mask, torch.arange(6) + 1), whole)
    m.inference_seed = 6
    assert not torch.equal(m.run_procedure("sample", image, mask, torch.arange(6)), whole)
    m.configure_inference(temperature=1e-4)  # a near-zero temperature samples the argmax
    m.inference_seed = 5
    assert torch.equal(m.run_procedure("sample", image, mask), m.run_procedure("argmax", image, mask))


def test_reported_nll_is_the_cross_entropy_in_bits():
    m = module("flat_row_lstm")
    image = quantize(photos(2, 5, 4))
    logits = m.net(image)  # [B,3,256,H,W]
    levels = (image * 255).round().long()
    manual = -F.log_softmax(logits, dim=2).gather(2, levels[:, :, None]).squeeze(2) / math.log(2)
    torch.testing.assert_close(m.nll_map(image) / math.log(2), manual)


def test_refusals_name_the_option():
    with pytest.raises(ValueError, match=r"model.net.arch='pixelrnn': choose one of pixelcnn, row_lstm"):
        DensityModule(net={"arch": "pixelrnn"})
    with pytest.raises(ValueError, match=r"model.net \(arch=pixelcnn\).*depth"):
        DensityModule(net={"arch": "pixelcnn", "depth": 3})
    with pytest.raises(ValueError, match="model.decode='greedy'"):
        DensityModule(net={"arch": "pixelcnn", "width": 8}, decode="greedy")
    m = module()
    with pytest.raises(ValueError, match="temperature=0.0: give a positive number"):
        m.configure_inference(temperature=0)
    with pytest.raises(ValueError, match="has no inference option steps=3 \\(it has temperature\\)"):
        m.configure_inference(steps=3)
    with pytest.raises(ValueError, match=r"RGB images \[B,3,H,W\] with a mask \[B,1,H,W\]"):
        m.inpaint(torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 8, 7))
    assert set(ARCHITECTURES) == set(TINY_NETS)
