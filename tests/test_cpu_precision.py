"""The models' CPU precision: ``trainer=cpu`` has ``precision: model``, which becomes the precision the model
declares (:attr:`inpaint.models.needs.ModelNeeds.cpu_precision`). A model may declare ``bf16-mixed`` only where its
training is within tolerance of fp32: for every ``conf/model/*.yaml`` that declares it, the first training step's
loss and gradients under bf16 autocast are compared with fp32's on the same weights and the same batch (real
configs, the real data module, a real Lightning step). The speed side is ``experiments/cpu_speed.py``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from test_model_contract import composed

import inpaint.compat as compat
from inpaint.models.needs import ModelNeeds
from inpaint.run import CONF_DIR, build_datamodule, build_model, trainer_precision

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
def declared(name: str, make_cfg) -> tuple[object, str]:
    """The model's config as the contract test composes it (32-px crops of the embedded sample photos, the 8x8
    centre hole), with a batch of 32 (batch norm over the contract test's 2 crops would amplify any rounding), and
    the model's declared CPU precision."""
    cfg = composed(name, make_cfg)
    cfg.data.batch_size = 32
    cfg.data.train_samples_per_epoch = 32
    return cfg, build_model(cfg).needs().cpu_precision


class _Capture(L.Callback):
    def __init__(self) -> None:
        self.loss: float | None = None
        self.grads: torch.Tensor | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grads = torch.cat([p.grad.detach().float().flatten() for p in pl_module.parameters()
                                if p.grad is not None])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = float(outputs["loss"])


def first_step(cfg, precision: str) -> _Capture:
    """Loss and gradients of one training step from the seeded initial weights."""
    L.seed_everything(0, workers=True, verbose=False)
    model = build_model(cfg)
    datamodule = build_datamodule(cfg)
    capture = _Capture()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[capture])
    L.seed_everything(0, workers=True, verbose=False)
    trainer.fit(model, datamodule=datamodule)
    return capture


@pytest.mark.parametrize("name", MODELS)
def test_declared_bf16_is_within_tolerance_of_fp32(name, make_cfg):
    cfg, precision = declared(name, make_cfg)
    if precision == "32-true":
        pytest.skip(f"{name} declares fp32 on a CPU: nothing to compare")
    assert precision == "bf16-mixed", f"{name} declares cpu_precision={precision!r}: not a precision this test knows"
    fp32, bf16 = first_step(cfg, "32-true"), first_step(cfg, "bf16-mixed")
    assert fp32.loss is not None and bf16.loss is not None and fp32.grads is not None and bf16.grads is not None
    assert abs(bf16.loss - fp32.loss) <= 0.01 * abs(fp32.loss), (name, fp32.loss, bf16.loss)
    # measured: SC-NN 0.999999 (its LIF dynamics run in fp32); the context encoder 0.982, the bf16 rounding of the
    # activations growing through its batch norms. A broken autocast path (a gradient lost or scaled) falls far
    # below; that 0.98 trains as well as fp32 is shown by experiment=floor_ce, trained in bf16
    cosine = torch.nn.functional.cosine_similarity(fp32.grads, bf16.grads, dim=0).item()
    norm_ratio = (bf16.grads.norm() / fp32.grads.norm()).item()
    assert cosine > 0.97, (name, cosine)
    assert abs(norm_ratio - 1) < 0.03, (name, norm_ratio)


def test_cpu_trainer_takes_the_models_declared_precision(make_cfg, monkeypatch):
    cfg = make_cfg("model=scnn", "trainer=cpu")
    assert cfg.trainer.precision == "model"
    bf16 = ModelNeeds(cpu_precision="bf16-mixed")
    monkeypatch.setattr(compat, "cpu_has_native_bf16", lambda: True)
    assert trainer_precision(cfg, bf16) == "bf16-mixed"
    assert trainer_precision(cfg, ModelNeeds()) == "32-true"
    monkeypatch.setattr(compat, "cpu_has_native_bf16", lambda: False)  # emulated bf16 would be slower: fp32
    assert trainer_precision(cfg, bf16) == "32-true"
    explicit = make_cfg("model=scnn", "trainer=cpu", "trainer.precision=32-true")
    assert trainer_precision(explicit, bf16) == "32-true"
    gpu = make_cfg("model=scnn", "trainer=cpu", "trainer.accelerator=gpu")
    assert trainer_precision(gpu, bf16) == "32-true"
