"""The L2 context autoencoder (``model=context_encoder``, spec A3 / A4.2): real training steps through the real
configs on a CIFAR-10 fixture, the overlap-weighted loss, known pixels, refusals, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny, write_dataset

from inpaint.models.context_encoder import (
    ContextEncoderModule,
    from_model_range,
    to_model_range,
    weighted_l2,
)
from inpaint.run import build_model, run

#: a narrow generator: every backbone trains in well under a second per step on one core
TINY_CE = ["model.generator.width=8", "model.generator.bottleneck=16", "model.generator.blocks=1"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("cifar10")
    return [*write_dataset("cifar10", root), "data.resize_short=null", "mask=cifar_center"]


def ce_overrides(cifar: list[str], *extra: str) -> list[str]:
    return [*tiny("context_encoder"), "model=context_encoder", *TINY_CE, *cifar, "logger=none", "eval.grid_samples=0", *extra]


def cifar_batch(n: int = 2, size: int = 32, hole: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = torch.rand(n, 3, size, size)
    mask = torch.zeros(n, 1, size, size)
    top = (size - hole) // 2
    mask[..., top : top + hole, top : top + hole] = 1.0
    return image, mask


def tiny_module(**kw) -> ContextEncoderModule:
    gen = {"width": 8, "bottleneck": 16, "blocks": 1, **kw.pop("generator", {})}
    return ContextEncoderModule(generator=gen, **kw)


# ------------------------------------------------------------------------------------- training runs
@pytest.mark.parametrize(
    ("backbone", "extra"),
    [
        ("vgg", ["model.overlap=4"]),
        ("pathak", ["model.generator.decoder=null", "model.generator.init=pathak"]),
        ("resnet", ["model.generator.decoder=deconv", "model.overlap=4"]),
        ("inception", ["model.generator.variant=strided", "model.generator.dropout=everywhere"]),
    ],
)
@pytest.mark.slow
def test_trains_every_backbone(backbone, extra, cifar, make_cfg, tmp_path):
    cfg = make_cfg(*ce_overrides(cifar, f"model.generator.backbone={backbone}", *extra))
    results = run(cfg)
    assert torch.isfinite(torch.tensor(results["test/psnr"]))
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["model"].endswith("ContextEncoderModule")
    assert report["test"]["test/rec_loss"] >= 0 and "val/rec_loss" in report["last_val"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_table1_experiment_composes(make_cfg):
    cfg = make_cfg("experiment=ce_table1", "data.root=/nowhere")
    assert cfg.model._target_.endswith("ContextEncoderModule") and cfg.model.overlap == 0
    # experiment=floor_ce's data and schedule: batch 64, the rate cosine-annealed over the steps given
    assert (cfg.data.batch_size, cfg.trainer.max_steps, cfg.mask.size) == (64, 3000, 8)
    assert cfg.model.scheduler.T_max == cfg.trainer.max_steps == cfg.trainer.val_check_interval
    assert cfg.optimized_metric == "val/rec_loss" and cfg.callbacks.floor_watch is None


# ------------------------------------------------------------------------------------- model pieces
def test_overlap_weighted_loss_matches_a_hand_written_reference():
    model = tiny_module(overlap=4, overlap_weight=20.0)
    image, mask = cifar_batch()
    window = torch.rand(2, 3, 16, 16) * 2 - 1
    target = image[..., 8:24, 8:24] * 2 - 1
    total = 0.0
    for n in range(2):
        for c in range(3):
            for y in range(16):
                for x in range(16):
                    w = 1.0 if (4 <= y < 12 and 4 <= x < 12) else 20.0
                    total += w * float(window[n, c, y, x] - target[n, c, y, x]) ** 2
    expected = total / (2 * 3 * 16 * 16)
    assert model.reconstruction_loss(window, image).item() == pytest.approx(expected, rel=1e-5)
    assert weighted_l2(window, target).item() == pytest.approx(float(((window - target) ** 2).mean()), rel=1e-6)
    # without the overlap: plain MSE on the 8x8 hole in [-1, 1]
    plain = tiny_module(overlap=0)
    hole = torch.rand(2, 3, 8, 8)
    ref = ((hole - (image[..., 12:20, 12:20] * 2 - 1)) ** 2).mean()
    assert plain.reconstruction_loss(hole, image).item() == pytest.approx(ref.item(), rel=1e-6)


def test_known_pixels_untouched_and_hole_from_the_window():
    model = tiny_module(overlap=4).eval()
    image, mask = cifar_batch()
    with torch.no_grad():
        pred = model(image, mask)
        window = model.predict_window(image, mask)
        out = model.inpaint(image, mask)
    assert pred.shape == image.shape and 0 <= pred.min() and pred.max() <= 1
    known = mask.expand_as(image) == 0
    assert torch.equal(pred[known], image[known]) and torch.equal(out[known], image[known])
    assert torch.allclose(pred[..., 12:20, 12:20], from_model_range(window[..., 4:12, 4:12]))
    # the model sees [-1, 1] with the hole at 0, and the ring is visible
    x = model.masked_input(image, mask)
    assert torch.equal(x[..., 12:20, 12:20], torch.zeros(2, 3, 8, 8))
    assert torch.allclose(x[..., 8:12, 8:24], to_model_range(image[..., 8:12, 8:24]))
    # the GAN fake pastes the whole window
    fake = model.paste(to_model_range(image), window, region="window")
    assert torch.equal(fake[..., 8:24, 8:24], window) and torch.equal(fake[..., :8, :], to_model_range(image)[..., :8, :])


def test_refusals_name_the_working_settings(cifar, make_cfg):
    with pytest.raises(ValueError, match=r"image size 48.*data.image_size=32 with mask=cifar_center.*128"):
        tiny_module(image_size=48)
    model = tiny_module().eval()
    image, mask = cifar_batch()
    with pytest.raises(ValueError, match=r"8x8 centre hole.*mask=cifar_center"):
        model(image, torch.roll(mask, 1, dims=-1))
    with pytest.raises(ValueError, match=r"built for 32x32.*data.image_size=32"):
        model(*cifar_batch(size=64, hole=8))
    # through the real configs: the run reads the model's declaration (its one centre hole) and refuses another
    # mask before any step
    with pytest.raises(ValueError, match=r"only a 8x8 centre hole; mask BlockMask draws other.*mask=cifar_center"):
        run(make_cfg(*ce_overrides(cifar, "mask=blocks")))
    with pytest.raises(ValueError, match=r"8-px centre hole, the mask's is 16 px: set mask.size=8"):
        run(make_cfg(*ce_overrides(cifar, "mask=center", "mask.size=16")))
    with pytest.raises(ValueError, match=r"image size 48.*data.image_size=32"):
        run(make_cfg(*tiny("context_encoder"), "model=context_encoder", *TINY_CE, "mask=center", "data.image_size=48"))


def test_128px_geometry():
    model = tiny_module(image_size=128, overlap=4).eval()
    image, mask = cifar_batch(1, 128, 64)
    with torch.no_grad():
        assert model.predict_window(image, mask).shape == (1, 3, 72, 72)
        pred = model(image, mask)
    assert torch.equal(pred[..., :32, :], image[..., :32, :])


def test_optimizer_and_decay_come_from_the_config(make_cfg):
    model = build_model(make_cfg("model=context_encoder", "data.image_size=32"))
    opt = model.configure_optimizers()
    assert type(opt["optimizer"]) is torch.optim.Adam
    assert opt["optimizer"].defaults["lr"] == 1e-3 and opt["optimizer"].defaults["betas"] == (0.9, 0.999)
    assert opt["lr_scheduler"]["scheduler"].gamma == 0.96 and opt["lr_scheduler"]["interval"] == "epoch"
    constant = build_model(make_cfg("model=context_encoder", "data.image_size=32", "model.scheduler=null"))
    assert isinstance(constant.configure_optimizers(), torch.optim.Adam)


@pytest.mark.slow
def test_cli_run(cifar, tmp_path):
    proc = run_cli(
        "inpaint.run", *ce_overrides(cifar, f"paths.output_dir={tmp_path / 'cli'}", "model.overlap=4"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Run directory:" in proc.stdout
    report = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert "test/rec_loss" in report["test"]


def test_loss_falls_on_one_batch():
    torch.manual_seed(0)
    model = tiny_module(overlap=4, optimizer={"_target_": "torch.optim.Adam", "lr": 1e-2},
                        generator={"dropout": "none"}).train()
    image, mask = cifar_batch(4)
    opt = model.configure_optimizers()
    losses = []
    for _ in range(40):
        loss = model.reconstruction_loss(model.predict_window(image, mask), image)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]  # the ring is visible and the tiny net memorises one batch
