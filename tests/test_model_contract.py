"""The model contract (DESIGN.md section 3), checked for every ``conf/model/*.yaml``: a new model config is covered
without editing this file.

Each config is composed through the real ``train`` config with the same tiny overrides (plus, for a few models,
what no generic override can give: see ``EXTRAS``), built by ``inpaint.run``'s own builders and, when the model
declares something to train, trained for two batches by the configured trainer; the checkpoint is saved and
loaded back the way ``python -m inpaint.predict ckpt_path=...`` loads one (:func:`inpaint.predict.load_model`,
in process; a model with nothing to train is loaded by its config name, like ``predict model=NAME``). A test
batch of the configured data is then filled by every inference procedure the model declares: the output has
the input's shape, the known pixels come back exactly, every value is in [0, 1], and the default procedure
fills the same batch the same way twice. A model that declares no procedure (a generative prior) must refuse
to inpaint, whatever its name.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from inpaint.predict import load_model
from inpaint.run import CONF_DIR, build_datamodule, build_model, build_trainer

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))

#: every model gets these: two batches of two 32 px crops of the embedded sample photos on the CPU, the 8x8
#: centre hole (the one mask every model accepts: the context encoders are built for it), no validation
#: pass, no logger
GENERIC = [
    "trainer=cpu",
    "logger=none",
    "seed=0",
    "data=sample",
    "data.image_size=32",
    "data.resize_short=64",
    "data.batch_size=2",
    "data.train_samples_per_epoch=4",
    "data.eval_crops_per_image=1",
    "data.num_workers=0",
    "mask=cifar_center",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=0",
    "trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
    "eval.grid_samples=0",
]

#: what no generic override can give: weight files that are downloads (the switch that runs without them, where
#: a config has it) and a prior of the tiny image size. A model missing here runs with GENERIC alone.
OFFLINE = {"model.loss.vgg": "random"}
EXTRAS = {
    "mganprior": ["model.prior.random=true", "model.prior.official=null", "model.prior.resolution=32",
                  "model.prior.z_dim=16", "model.prior.fmap_base=64", "model.prior.fmap_max=16",
                  "model.num_codes=2", "model.progress=false", "+eval.inference.iterations=2"],
}


def composed(name: str, make_cfg):
    """The real config with GENERIC, the model's EXTRAS, and each OFFLINE switch the model's config has."""
    cfg = make_cfg(f"model={name}", *GENERIC, *EXTRAS.get(name, []))
    for key, value in OFFLINE.items():
        if OmegaConf.select(cfg, key) is not None:
            OmegaConf.update(cfg, key, value)
    return cfg


def trained_or_named(name: str, cfg, ckpt: Path):
    """The model as ``inpaint.predict`` gets it: two training batches through the configured trainer, saved to
    ``ckpt`` and loaded back by predict's own loader; a model that declares nothing to train is loaded by its
    config name (``predict model=NAME``, the composed config's keys given as ``model_options``)."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(cfg)
    if not model.trainable:
        named = load_model(model=name, options=OmegaConf.to_container(cfg.model, resolve=True))
        assert not named.trainable
        return named
    trainer = build_trainer(cfg, model)
    trainer.fit(model, datamodule=build_datamodule(cfg))
    trainer.save_checkpoint(ckpt, weights_only=True)  # what predict reads: class, hyperparameters, weights
    loaded = load_model(ckpt_path=str(ckpt))
    trained, back = model.state_dict(), loaded.state_dict()
    assert list(back) == list(trained), "the reloaded model has other state_dict keys"
    changed = [k for k, v in trained.items() if torch.is_tensor(v) and not torch.equal(v.cpu(), back[k])]
    assert not changed, f"the reloaded model differs from the trained one in {changed[:5]}"
    return loaded


def test_every_model_config_is_covered():
    assert MODELS, f"no model configs in {CONF_DIR / 'model'}"
    assert set(EXTRAS) <= set(MODELS), "EXTRAS names a model config that does not exist"


@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name, make_cfg, tmp_path):
    cfg = composed(name, make_cfg)
    model = trained_or_named(name, cfg, tmp_path / "model.ckpt").eval()
    model.configure_inference(**OmegaConf.to_container(cfg.eval.inference, resolve=True))
    model.inference_seed = int(cfg.seed)

    data = build_datamodule(cfg)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    image, mask, index = batch["image"], batch["mask"], batch["index"]
    known = (mask == 0).expand_as(image)
    assert known.any() and not known.all()

    procedures = model.inference_procedures()
    default = model.default_procedure()
    if default is None:  # it declares that it does not inpaint (a generative prior): it must refuse to
        assert not procedures and model.procedure is None
        with pytest.raises(ValueError, match="inpaint"):
            model.timed_inpaint(image, mask, index)
        grid = model.sample_grid(2)
        assert grid is None or (grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3)
        return
    assert default in procedures and model.procedure == default
    for procedure in procedures:
        out, _ = model.timed_inpaint(image, mask, index, procedure=procedure)
        assert out.shape == image.shape, procedure
        assert out.dtype == image.dtype, procedure
        assert torch.equal(out[known], image[known]), f"{procedure} changed known pixels"
        assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0, procedure
        if procedure == default:  # what inpaint() runs; a fill depends only on the sample (seeded by its index)
            again, _ = model.timed_inpaint(image, mask, index)
            assert torch.equal(again, out), "the default procedure gave another fill on the same batch"
