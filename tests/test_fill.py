"""inpaint.fill: the one fill of predict and the web app. Large-photo strategies (crop windows at the model's scale,
resize, full), the training size stored in checkpoints, progress reports and the Stop of long procedures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import photo_like, tiny
from PIL import Image
from test_density import TINY_NETS

from inpaint import progress
from inpaint.app.methods import Method, find_methods, option_fields
from inpaint.checkpoint_io import IMAGE_SIZE_KEY, read_checkpoint
from inpaint.fill import CROP_CONTEXT, STRATEGIES, _crop_windows, fill_image, load_model, model_scale
from inpaint.run import run

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scnn_run(tmp_path_factory):
    """A tiny SC-NN trained on 32 px crops of the sample photos (its checkpoints carry the size)."""
    from hydra import compose, initialize_config_dir

    from inpaint.config_dir import CONF_DIR

    out = tmp_path_factory.mktemp("scnn_runs") / "scnn"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=scnn", "data=sample", *tiny("scnn"), "logger=none",
                                          "eval.grid_samples=0", f"paths.output_dir={out}"])
    torch.manual_seed(0)
    run(cfg)
    return out


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    return photo_like(1, seed, h, w)[0]


def _holes(h: int, w: int, boxes) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = 1
    return m


def test_checkpoints_carry_the_training_size_and_predict_reads_it(scnn_run):
    ckpt = scnn_run / "checkpoints" / "last.ckpt"
    assert read_checkpoint(ckpt)[IMAGE_SIZE_KEY] == [32, 32]
    assert model_scale(load_model(str(ckpt))) == (32, 32)
    # a checkpoint from before the key: the size comes from its run's card
    legacy = torch.load(ckpt, weights_only=True)
    del legacy[IMAGE_SIZE_KEY]
    (scnn_run / "checkpoints" / "legacy.ckpt").write_bytes(b"")
    torch.save(legacy, scnn_run / "checkpoints" / "legacy.ckpt")
    assert model_scale(load_model(str(scnn_run / "checkpoints" / "legacy.ckpt"))) == (32, 32)
    assert model_scale(load_model(model="biharmonic")) is None


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_keeps_the_known_pixels_exactly(scnn_run, strategy):
    model = load_model(str(scnn_run)).eval()
    image = _photo(150, 200)
    mask = _holes(150, 200, [(20, 40, 30, 90), (100, 130, 150, 160), (140, 150, 0, 5)])
    out = fill_image(model, image, mask, CPU, strategy)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert (out[mask == 0] == image[mask == 0]).all()
    assert (out[mask == 1] != image[mask == 1]).any()


def test_crop_feeds_the_model_windows_at_its_scale_centred_on_the_holes(scnn_run):
    model = load_model(str(scnn_run)).eval()
    seen = []
    plain = model.timed_inpaint

    def record(image, mask, index):
        seen.append((tuple(image.shape[-2:]), mask[0, 0].numpy().copy()))
        return plain(image, mask, index)

    model.timed_inpaint = record
    image = _photo(300, 400)
    mask = _holes(300, 400, [(100, 110, 100, 120), (150, 190, 250, 330)])  # far apart: two windows
    fill_image(model, image, mask, CPU, "crop")
    assert len(seen) == 2
    for shape, hole in seen:
        assert shape == (32, 32)  # the model's training size: the windows have its aspect
        ys, xs = np.nonzero(hole)
        # the hole covers at most 1/CROP_CONTEXT of each side (as the training holes do), near the middle
        assert np.ptp(ys) + 1 <= 32 / CROP_CONTEXT + 1 and np.ptp(xs) + 1 <= 32 / CROP_CONTEXT + 1
        assert abs(ys.mean() - 15.5) <= 2 and abs(xs.mean() - 15.5) <= 2


def test_crop_windows_hold_their_holes_inside_the_image():
    rng = np.random.default_rng(0)
    for trial in range(40):
        h, w = rng.integers(20, 200, 2)
        hole = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            hole[y:y + rng.integers(1, h), x:x + rng.integers(1, w)] = True
        scale = None if trial % 3 == 0 else (int(rng.integers(8, 64)),) * 2
        covered = np.zeros_like(hole)
        for top, left, wh, ww in _crop_windows(hole, scale):
            assert 0 <= top and top + wh <= h and 0 <= left and left + ww <= w
            if scale:
                assert wh >= min(scale[0], h) and ww >= min(scale[1], w)
            covered[top:top + wh, left:left + ww] = True
        assert covered[hole].all()


def test_biharmonic_crop_equals_full_resolution_and_is_never_resized():
    # biharmonic reads a thin ring around each hole, so windows of twice the hole change nothing
    model = load_model(model="biharmonic")
    image = _photo(120, 160, 3)
    mask = _holes(120, 160, [(10, 30, 20, 50), (80, 100, 100, 150)])
    full = fill_image(model, image, mask, CPU, "full")
    assert np.array_equal(fill_image(model, image, mask, CPU, "crop"), full)
    assert np.array_equal(fill_image(model, image, mask, CPU, "resize"), full)  # unknown scale: not resized


def test_a_photo_at_the_models_scale_is_filled_the_same_by_every_strategy(scnn_run):
    model = load_model(str(scnn_run)).eval()
    image = _photo(32, 32, 5)
    mask = _holes(32, 32, [(8, 20, 10, 22)])
    outs = [fill_image(model, image, mask, CPU, s) for s in STRATEGIES]
    assert all(np.array_equal(o, outs[0]) for o in outs)


def test_resize_shrinks_the_photo_to_just_cover_the_models_scale(scnn_run):
    model = load_model(str(scnn_run)).eval()
    seen = []
    plain = model.timed_inpaint
    model.timed_inpaint = lambda i, m, idx: (seen.append(tuple(i.shape[-2:])), plain(i, m, idx))[1]
    fill_image(model, _photo(96, 160), _holes(96, 160, [(40, 60, 70, 90)]), CPU, "resize")
    assert seen == [(32, 53)]  # 96x160 -> its shorter side is the model's 32


def test_a_context_encoder_says_it_cannot_fill_a_free_form_hole():
    from inpaint.models.context_encoder import ContextEncoderModule

    model = ContextEncoderModule(generator={"width": 8, "bottleneck": 16, "blocks": 1}).eval()
    method = Method("ce", {}, _model=model)
    with pytest.raises(ValueError, match="centre"):
        method.fill(_photo(64, 64), _holes(64, 64, [(5, 30, 3, 12)]), strategy="crop")


def test_predict_strategy_option(make_cfg, tmp_path):
    from inpaint.predict import predict

    Image.fromarray(_photo(60, 80)).save(tmp_path / "p.png")
    Image.fromarray((_holes(60, 80, [(10, 20, 10, 30)]) * 255).astype(np.uint8)).save(tmp_path / "m.png")
    args = ["model=biharmonic", f"input={tmp_path / 'p.png'}", f"mask={tmp_path / 'm.png'}", f"output={tmp_path / 'out'}"]
    with pytest.raises(ValueError, match="strategy=tiles: choose one of crop, resize, full"):
        predict(make_cfg(*args, "strategy=tiles", config="predict"))
    predict(make_cfg(*args, "strategy=resize", config="predict"))
    assert (tmp_path / "out" / "p.png").is_file()


# ------------------------------------------------------------------------------------------- progress and Stop
def test_density_decoding_reports_progress_and_stops_when_told():
    from inpaint.models.density import DensityModule

    torch.manual_seed(0)
    method = Method("pixelcnn", {}, _model=DensityModule(net=TINY_NETS["pixelcnn"]).eval())
    image, mask = _photo(12, 10), _holes(12, 10, [(3, 9, 2, 8)])
    reports = []
    method.fill(image, mask, listener=lambda d, t, w: reports.append((d, t, w)))
    assert reports and reports[-1][1] == 120 and "decoding" in reports[-1][2]
    assert [d for d, _, _ in reports] == sorted(d for d, _, _ in reports)  # raster order: it only moves on

    def stop_at_5(done, total, what):
        if len(seen) == 5:
            raise progress.Stopped(f"{done} of {total}")
        seen.append(done)

    seen: list[int] = []
    with pytest.raises(progress.Stopped):
        method.fill(image, mask, listener=stop_at_5)
    # the model is usable after a stop, with its options back at the checkpoint's
    out, _ = method.fill(image, mask, "sample", {"temperature": 0.5}, seed=3)
    again, _ = method.fill(image, mask, "sample", {"temperature": 0.5}, seed=3)
    assert np.array_equal(out, again)


def test_mganprior_inversion_reports_iterations_and_stops():
    from test_mganprior import tiny_model

    method = Method("mganprior", {}, _model=tiny_model(iterations=50).eval())
    assert {f.name for f in method.options} >= {"iterations", "seconds"}
    image, mask = _photo(16, 16), _holes(16, 16, [(4, 10, 4, 10)])
    done = []

    def listen(d, t, w):
        done.append((d, t))
        if d == 7:
            raise progress.Stopped("7")

    with pytest.raises(progress.Stopped):
        method.fill(image, mask, options={"iterations": 20}, listener=listen)
    assert done[-1] == (7, 20)


def test_option_fields_are_the_scalar_inference_options():
    from inpaint.models.density import DensityModule

    fields = option_fields(DensityModule(net=TINY_NETS["pixelcnn"]))
    assert [(f.name, f.kind, f.default, f.optional) for f in fields] == [("temperature", float, 1.0, False)]
    assert option_fields(load_model(model="biharmonic")) == []


def test_find_methods_labels_runs_from_their_cards(scnn_run, tmp_path):
    methods = find_methods([str(scnn_run.parent)])
    assert methods[0].label == "biharmonic"
    run_method = next(m for m in methods if m.source.get("ckpt_path", "").startswith(str(scnn_run)))
    # the card's model name (the class name for a run composed outside the CLI) and its test score
    assert run_method.label.startswith("SCNNModule · test PSNR ") and run_method.label.endswith(" dB")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_methods([str(tmp_path / "nowhere")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        find_methods([str(tmp_path / "empty")])
