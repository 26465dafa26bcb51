"""inpaint.evaluation as one owner of scoring: the offline export/score path against the online one, the field's
metrics wired into both (random weights: no weight file exists on test machines), DDP exactness, refusals."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from PIL import Image
from skimage.restoration import inpaint_biharmonic

from inpaint import evaluate
from inpaint.evaluation import field
from inpaint.evaluation.evaluator import EvalSpec, Evaluator, merge_bucket_runs
from inpaint.evaluation.field import FeatureSets
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.report import build_leaderboard, read_run, render_markdown
from inpaint.weights import WeightsUnavailableError

# the tiny protocol of the other integration tests: 4 test samples of 32x32 from the embedded photos
PROTOCOL = [o for o in TINY if o.startswith("data.")]
FIELD = ["lpips_vgg", "lpips_alex", "fid", "kid", "ids"]


def fill_biharmonic(export_dir: Path, out: Path) -> None:
    """An "external method": scikit-image's biharmonic fill of the exported masked images, written as .npy
    floats by code that knows nothing of inpaint (only the exported files)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted((export_dir / "masked").glob("*.png")):
        image = (np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / np.float32(255)).astype(np.float64)
        hole = np.asarray(Image.open(export_dir / "mask" / path.name)) > 127
        filled = inpaint_biharmonic(image, hole, channel_axis=-1).astype(np.float32)
        np.save(out / f"{path.stem}.npy", np.clip(filled, 0.0, 1.0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "set"
    evaluate.export(PROTOCOL, out)
    return out


def score(*args: str) -> dict:
    assert evaluate.main(["score", *args]) == 0
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "card.json").read_text())


# ------------------------------------------------------------------------------------------- export, score
def test_export_writes_the_protocol_inputs(exported: Path) -> None:
    manifest = json.loads((exported / "protocol.json").read_text())
    names = sorted(manifest["files"])
    assert len(names) == manifest["protocol"]["images"]["count"] == 4
    for name in names:
        gt = np.asarray(Image.open(exported / "gt" / f"{name}.png"))
        mask = np.asarray(Image.open(exported / "mask" / f"{name}.png"))
        masked = np.asarray(Image.open(exported / "masked" / f"{name}.png"))
        assert gt.shape == (32, 32, 3) and mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
        assert (masked[mask == 255] == 0).all() and (masked[mask == 0] == gt[mask == 0]).all()
    with pytest.raises(FileExistsError, match="not empty"):
        evaluate.export(PROTOCOL, exported)


def test_score_refuses_missing_extra_and_resized_outputs(exported: Path, tmp_path: Path, capsys) -> None:
    filled = tmp_path / "filled"
    shutil.copytree(exported / "gt", filled)  # the ground truth as the "fill": a valid, perfect output set
    base = ["score", "--inputs", str(exported), "--outputs", str(filled), "--out", str(tmp_path / "run")]
    first = sorted(filled.glob("*.png"))[0]
    first.rename(tmp_path / first.name)
    assert evaluate.main(base) == 1
    assert f"1 missing ({first.stem})" in capsys.readouterr().err
    shutil.move(tmp_path / first.name, first)
    Image.new("RGB", (32, 32)).save(filled / "999999.png")
    assert evaluate.main(base) == 1
    assert "1 extra (999999)" in capsys.readouterr().err
    (filled / "999999.png").unlink()
    Image.open(first).resize((16, 16)).save(first)
    assert evaluate.main(base) == 1
    err = capsys.readouterr().err
    assert first.name in err and "16x16" in err and "32x32" in err
    assert not (tmp_path / "run" / "card.json").exists()  # nothing half-written


def test_score_refuses_a_mask_that_differs_from_the_protocol(exported: Path, tmp_path: Path, capsys) -> None:
    masks = tmp_path / "masks"
    shutil.copytree(exported / "mask", masks)
    changed = sorted(masks.glob("*.png"))[1]
    arr = np.asarray(Image.open(changed)).copy()
    arr[:4, :4] = 255 - arr[:4, :4]
    Image.fromarray(arr).save(changed)
    code = evaluate.main(["score", "--inputs", str(exported), "--outputs", str(exported / "gt"), "--masks",
                          str(masks), "--out", str(tmp_path / "run")])
    assert code == 1
    assert changed.name in capsys.readouterr().err


def test_changed_known_pixels_are_counted_and_pasted_back(exported: Path, tmp_path: Path, caplog) -> None:
    filled = tmp_path / "filled"
    shutil.copytree(exported / "gt", filled)
    victim = sorted(filled.glob("*.png"))[0]
    mask = np.asarray(Image.open(exported / "mask" / victim.name)) > 127
    arr = np.asarray(Image.open(victim)).copy()
    arr[~mask] = 255 - arr[~mask]  # a method that does not paste back and gets the known pixels wrong
    Image.fromarray(arr).save(victim)
    with caplog.at_level(logging.WARNING):
        card = score("--inputs", str(exported), "--outputs", str(filled), "--out", str(tmp_path / "pasted"))
    assert card["source"]["known_pixels_changed"]["images"] == 1
    assert card["source"]["known_pixels_changed"]["pixels"] > 0
    assert "known pixel" in caplog.text and victim.name in caplog.text
    assert card["metrics"]["test/psnr"] == pytest.approx(100.0)  # pasted back: the hole is the ground truth
    as_is = score("--inputs", str(exported), "--outputs", str(filled), "--out", str(tmp_path / "raw"), "--as-is")
    assert as_is["metrics"]["test/psnr"] < 100.0 and as_is["source"]["as_is"]
    assert "pasted back" in (tmp_path / "pasted" / "card.md").read_text()


def test_score_of_plain_folders_without_an_export(exported: Path, tmp_path: Path) -> None:
    card = score("--gt", str(exported / "gt"), "--masks", str(exported / "mask"), "--outputs",
                 str(exported / "gt"), "--out", str(tmp_path / "run"), "--name", "identity")
    assert card["protocol"]["mask"]["name"] == "folder" and card["protocol"]["image_size"] == [32, 32]
    assert card["metrics"]["test/count"] == 4 and card["metrics"]["test/psnr"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------- field metrics
@pytest.mark.slow
def test_scored_external_fill_equals_the_online_biharmonic_run(exported: Path, tmp_path: Path) -> None:
    """The done-when of the offline path: a fill written outside the package, exported and scored, gives the
    online run's numbers and ranks in its group; the field's metrics (random weights) agree on both paths."""
    fill_biharmonic(exported, tmp_path / "filled")
    card = score("--inputs", str(exported), "--outputs", str(tmp_path / "filled"), "--name", "skimage_fill",
                 "--source", "scikit-image biharmonic, outside the package", "--metrics", *FIELD,
                 "--feature-weights", "random", "--out", str(tmp_path / "runs" / "ext"))
    proc = run_cli("inpaint.run", "model=biharmonic", "task=test", "logger=none", *PROTOCOL,
                   f"eval.metrics=[{','.join(FIELD)}]", "eval.feature_weights=random",
                   f"hydra.run.dir={tmp_path / 'runs' / 'online'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    online = json.loads((tmp_path / "runs" / "online" / "card.json").read_text())
    assert card["fingerprint"] == online["fingerprint"]
    assert card["source"]["known_pixels_changed"]["images"] == 0
    for key in ("test/psnr", "test/ssim", "test/mae", "test/l2", "test/maem", "test/count"):
        assert card["metrics"][key] == pytest.approx(online["metrics"][key], abs=1e-6), key
    assert online["protocol"]["metric_options"]["field"]["weights"] == "random"
    for key in ("test/lpips_vgg", "test/lpips_alex", "test/fid", "test/kid", "test/kid_std", "test/pids", "test/uids"):
        assert np.isfinite(online["metrics"][key]), key
        # float32 features depend on the batch's composition in the last bits (oneDNN picks kernels by shape);
        # with 4 images in 2048 dimensions FID amplifies that to ~1e-6: the two paths agree to feature precision
        assert card["metrics"][key] == pytest.approx(online["metrics"][key], rel=1e-4, abs=1e-7), key
    assert online["metrics"]["test/fid"] > 0.0 and online["metrics"]["test/lpips_alex"] > 0.0
    assert card["random_feature_weights"] and online["random_feature_weights"]
    assert "RANDOM network weights" in (tmp_path / "runs" / "online" / "metrics.md").read_text()
    board = build_leaderboard([read_run(tmp_path / "runs" / d) for d in ("ext", "online")])
    assert [sorted(c["model"] for c in g) for g in board["groups"]] == [["biharmonic", "skimage_fill"]]
    text = render_markdown(board, None)
    assert "scored offline: scikit-image biharmonic" in text and "RANDOM network weights" in text and "| FID |" in text


@pytest.mark.slow
def test_field_metrics_under_ddp_equal_one_process(tmp_path: Path) -> None:
    common = ["model=biharmonic", "task=test", "logger=none", *PROTOCOL, "data.eval_crops_per_image=3",
              "+data.eval_batch_size=2", "eval.metrics=[lpips_alex,fid,kid,ids]", "eval.feature_weights=random"]
    cards = {}
    for name, trainer in (("one", "trainer=cpu"), ("ddp", "trainer=ddp_cpu")):
        proc = run_cli("inpaint.run", trainer, *common, f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        cards[name] = json.loads((tmp_path / name / "card.json").read_text())
    one, ddp = cards["one"]["metrics"], cards["ddp"]["metrics"]
    assert one["test/count"] == ddp["test/count"] == 6
    assert set(one) == set(ddp)
    for key in one:  # the same samples once each; float32 features agree to the batch-composition bits
        assert ddp[key] == pytest.approx(one[key], rel=1e-4, abs=1e-7), key


def test_feature_sets_drop_repeated_samples_and_merge_like_ddp() -> None:
    torch.manual_seed(0)
    target, composite = torch.rand(6, 3, 32, 32), torch.rand(6, 3, 32, 32)
    mask = torch.zeros(6, 1, 32, 32)
    mask[:, :, 8:20, 8:20] = 1.0  # 14 % holes: bucket 10-20
    index = torch.arange(6)
    whole, a, b = (FeatureSets(["fid", "kid", "ids"], DEFAULT_BUCKETS, "random") for _ in range(3))
    whole.update(composite, target, mask, index)
    a.update(composite[:4], target[:4], mask[:4], index[:4])
    b.update(composite[3:], target[3:], mask[3:], index[3:])  # sample 3 twice, as a padding sampler would
    a.merge_state(b)  # the "cat" reduction of a DDP sync
    expected, merged = whole.compute(), a.compute()
    assert set(expected) == set(merged) and "fid@10-20" in expected
    for key, value in expected.items():
        assert merged[key].item() == value.item(), key


def test_lpips_is_a_per_image_column_and_zero_for_the_truth() -> None:
    evaluator = Evaluator(EvalSpec(metrics=("lpips_vgg", "lpips_alex"), feature_weights="random"))
    target = torch.rand(3, 3, 32, 32)
    mask = torch.zeros(3, 1, 32, 32)
    mask[:, :, :14] = 1.0  # 44 %: bucket 40-50
    evaluator.update(target, target, mask)
    evaluator.update(torch.rand(3, 3, 32, 32), target, mask, variant="noise")
    results, _ = evaluator.compute("test")
    assert results["test/lpips_vgg"] == 0.0 and results["test/lpips_alex"] == 0.0
    assert results["test/noise/lpips_vgg"] > 0.0 and results["test/noise/lpips_alex"] > 0.0
    assert results["test/count@40-50"] == 3 and results["test/lpips_vgg@40-50"] == 0.0


def test_unknown_metric_and_weights_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="fidd"):
        EvalSpec(metrics=("fidd",))
    with pytest.raises(ValueError, match="imagenet"):
        EvalSpec(metrics=("fid",), feature_weights="imagenet")


def test_a_missing_weight_file_names_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    monkeypatch.setattr(field, "_NETS", {})
    sets = FeatureSets(["fid"], DEFAULT_BUCKETS, "pretrained")
    with pytest.raises(WeightsUnavailableError, match="pt_inception-2015-12-05-6726825d.pth"):
        sets.update(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32))


def test_per_bucket_merge_keeps_set_metrics_per_bucket_only() -> None:
    runs = [("10-20", {"test/psnr": 30.0, "test/fid": 5.0, "test/count": 2.0}),
            ("20-30", {"test/psnr": 20.0, "test/fid": 9.0, "test/count": 2.0})]
    merged = merge_bucket_runs(runs)
    assert merged["test/psnr"] == 25.0 and merged["test/count"] == 4.0
    assert merged["test/fid@10-20"] == 5.0 and merged["test/fid@20-30"] == 9.0 and "test/fid" not in merged
