"""TrialsTable's result tables (``tables:``): a sweep's trials pivoted into tables shaped like a paper's, here
the mGANprior thesis's Tables 6.1-6.3 (one per mask, a row per attention type, PSNR/SSIM per dataset) and 6.4
(a row per self-attention score, PSNR/SSIM per mask), from real ``-m`` runs of the experiment files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, write_dataset

from inpaint.sweeps import PivotTable

# the experiment's LSUN data module on a tiny LSUN fixture, a random 16 px prior, 2 codes, 2 iterations
TINY_MGANPRIOR = [
    "data.image_size=16", "data.batch_size=2", "data.num_workers=0", "trainer.limit_test_batches=1", "logger=none",
    "eval.buckets=[[0.0,1.0]]", "model.prior.official=null", "model.prior.random=true", "model.prior.resolution=16",
    "model.prior.z_dim=16", "model.prior.fmap_base=64", "model.prior.fmap_max=16", "model.num_codes=2",
    "model.layer=null", "model.compose_res=8", "model.loss.vgg=random", "model.progress=false", "model.iterations=2",
    "mask=blocks_12,blocks_40",  # two of the three masks: the third table must then be absent
]


def _table(md: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the markdown table under ``### heading...``."""
    block = md.split(f"### {heading}", 1)[1].split("###", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("|") and not line.startswith("|---")]


def _raw(job_dir: str) -> tuple[str, str]:
    test = json.loads((Path(job_dir) / "metrics.json").read_text())["test"]
    return f"{test['test/raw/psnr']:.2f}", f"{test['test/raw/ssim']:.2f}"


def _jobs(sweep: Path) -> dict[tuple[str, str], str]:
    rows = [json.loads(line) for line in (sweep / "trials.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in rows)
    return {(r["overrides"]["mask"], r["overrides"]["model.attention.type"]): r["dir"] for r in rows}


@pytest.mark.slow
def test_mganprior_sweeps_print_the_thesis_tables(tmp_path):
    data = write_dataset("lsun", tmp_path / "lsun")[1:]  # the experiment chooses data=lsun itself
    sweep1, sweep2 = tmp_path / "tables", tmp_path / "table64"
    proc = run_cli("inpaint.run", "-m", "experiment=mganprior_tables", *data, *TINY_MGANPRIOR,
                   f"hydra.sweep.dir={sweep1}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(sweep1)
    assert len(jobs) == 6
    md = (sweep1 / "tables.md").read_text()
    assert "Table 6.2" not in md  # no blocks_25 job
    for mask, heading in (("blocks_12", "Table 6.1: Randomly cropping 12% pixels"),
                          ("blocks_40", "Table 6.3: Randomly cropping 40% pixels")):
        table = _table(md, heading)
        assert table[0] == ["Method", "LSUN-bedroom PSNR↑", "LSUN-bedroom SSIM↑"]
        assert [r[0] for r in table[1:]] == ["original", "Self-Attention", "CBAM"]
        for row, attention in zip(table[1:], ("none", "sa", "cbam"), strict=True):
            assert tuple(row[1:]) == _raw(jobs[(mask, attention)]), (mask, attention)
        assert _table(proc.stdout, heading) == table  # printed at the end of the sweep

    proc = run_cli("inpaint.run", "-m", "experiment=mganprior_table64", *data, *TINY_MGANPRIOR,
                   f"hydra.sweep.dir={sweep2}", f"hydra.callbacks.trials_table.include=[{sweep1}]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scaled = _jobs(sweep2)
    assert set(scaled) == {("blocks_12", "sa"), ("blocks_40", "sa")}
    table = _table((sweep2 / "tables.md").read_text(), "Table 6.4")
    assert table[0] == ["LSUN-bedroom", "Mask 1 PSNR↑", "Mask 1 SSIM↑", "Mask 3 PSNR↑", "Mask 3 SSIM↑"]
    # Self-Attention (dot): the included sweep's sa jobs; Dot-product (scaled_dot): this sweep's
    assert table[1] == ["Self-Attention", *_raw(jobs[("blocks_12", "sa")]), *_raw(jobs[("blocks_40", "sa")])]
    assert table[2] == ["Dot-product", *_raw(scaled[("blocks_12", "sa")]), *_raw(scaled[("blocks_40", "sa")])]
    assert _table(proc.stdout, "Table 6.4") == table


def _trial(job: int, a: str, b: str, psnr: float | None, status: str = "ok", **config) -> dict:
    return {"job": job, "status": status, "overrides": {"a": a}, "config": {"b": b, **config},
            "metrics": {} if psnr is None else {"psnr": psnr}}


def test_pivot_orders_by_labels_averages_repeats_and_skips_failed_and_filtered_trials():
    table = PivotTable({"rows": {"key": "a", "title": "A", "labels": {"y": "Y", "x": "X"}},
                        "columns": "b", "metrics": {"psnr": "PSNR"}, "where": {"c": "keep"}, "format": ".1f"})
    trials = [_trial(0, "x", "p", 10.0, c="keep"), _trial(1, "x", "p", 12.0, c="keep"),
              _trial(2, "y", "q", 20.0, c="keep"), _trial(3, "z", "p", 30.0, c="keep"),
              _trial(4, "y", "p", 99.0, status="failed: boom", c="keep"), _trial(5, "y", "p", 77.0, c="drop"),
              _trial(6, "y", "q", None, c="keep")]
    lines = [line for line in table.render(trials) if line]
    assert lines == ["| A | p PSNR | q PSNR |", "|---|---|---|",
                     "| Y | - | 20.0 |", "| X | 11.0 ± 1.4 (n=2) | - |", "| z | 30.0 | - |"]


def test_pivot_default_fills_trials_without_the_key_and_bad_specs_fail():
    table = PivotTable({"rows": {"key": "s", "default": "dot"}, "columns": "b", "metrics": {"psnr": "P"}})
    trials = [_trial(0, "x", "p", 1.0), _trial(1, "x", "p", 2.0, s="scaled")]
    assert [line.split(" | ")[0] for line in table.render(trials)[2:4]] == ["| dot", "| scaled"]
    with pytest.raises(ValueError, match="needs rows, columns and metrics"):
        PivotTable({"rows": "a", "metrics": {"psnr": "P"}})
    with pytest.raises(ValueError, match="needs a key"):
        PivotTable({"rows": {"labels": {}}, "columns": "b", "metrics": {"psnr": "P"}})


def test_include_of_a_folder_without_trials_fails_before_any_job(tmp_path):
    from inpaint.sweeps import TrialsTable

    with pytest.raises(ValueError, match="include: no trials.jsonl"):
        TrialsTable(include=[str(tmp_path)], tables=[{"rows": "a", "columns": "b", "metrics": {"m": "M"}}])


@pytest.mark.parametrize("experiment", ["ce_table1", "ce_overlap", "ce_adversarial"])
def test_beyond_cnns_sweeps_pivot_their_table_over_three_seeds(experiment):
    """Table 1, the overlap trick and L2/GAN/WGAN: each a -m sweep with three seeds whose table the sweep writes;
    its row axis is what the sweep varies."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from inpaint.config_dir import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "data.root=/x"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    assert params["seed"] == "1,2,3"
    (spec,) = cfg.hydra.callbacks.trials_table.tables
    table = PivotTable(OmegaConf.to_container(spec))
    assert table.axes["rows"]["key"] in params
    assert cfg.mask._target_.endswith("CenterMask") and cfg.eval.hole_metrics
