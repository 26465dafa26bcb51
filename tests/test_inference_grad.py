"""A model whose inference procedure needs autograd (as GAN inversion will) runs through evaluation,
``task=test``, the grid callback and ``inpaint.predict``; every other model stays gradient-free there."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from conftest import tiny

from inpaint.models.base import InpaintModule, Procedure, compose
from inpaint.predict import inpaint_file
from inpaint.run import run

CALLS: list[bool] = []


@dataclass(frozen=True)
class Budget:
    steps: int = 5


class GradientFill(InpaintModule):
    """Fills each hole by gradient steps pulling a free fill towards the mean known colour: an inference procedure
    that needs autograd (and fails without it), with a step budget (``steps``, an inference option). It declares
    both through the procedure registry and nothing else."""

    trainable = False
    InferenceOptions = Budget

    def __init__(self, steps: int = 5, buckets=((0.0, 1.0),)) -> None:
        super().__init__(buckets=buckets, nan_check_every=0)
        self.inference_opts = Budget(steps)

    @property
    def steps(self) -> int:
        return self.inference_opts.steps

    def procedures(self) -> list[Procedure]:
        return [Procedure("descend", self.descend, needs_grad=True)]

    def forward(self, image, mask):
        return self.descend(image, mask)

    def descend(self, image, mask, index=None):
        CALLS.append((torch.is_grad_enabled() and not torch.is_inference_mode_enabled(), self.steps))
        known = (image * (1 - mask)).sum((2, 3), keepdim=True) / (1 - mask).sum((2, 3), keepdim=True).clamp_min(1)
        fill = torch.zeros_like(image, requires_grad=True)
        for _ in range(self.steps):
            loss = ((fill - known) ** 2 * mask).sum()
            (grad,) = torch.autograd.grad(loss, fill)
            fill = (fill - 0.25 * grad).detach().requires_grad_(True)
        return compose(fill.detach(), image, mask)

    def configure_optimizers(self):
        return None


def test_task_test_and_grids_run_the_procedure_with_gradients(make_cfg, tmp_path):
    CALLS.clear()
    cfg = make_cfg(*tiny("biharmonic"), "task=test", "model=biharmonic",
                   "model._target_=test_inference_grad.GradientFill", "logger=none", "+eval.inference.steps=3",
                   out=tmp_path / "run")
    results = run(cfg)
    assert math.isfinite(results["test/psnr"]) and CALLS and all(grad for grad, _ in CALLS)
    assert {steps for _, steps in CALLS} == {3}  # the budget reached the procedure


def test_predict_runs_the_procedure_with_gradients_and_others_without():
    CALLS.clear()
    image = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    mask = np.zeros((20, 24), np.float32)
    mask[5:12, 6:15] = 1
    out = inpaint_file(GradientFill().eval(), image, mask, torch.device("cpu"))
    assert CALLS == [(True, 5)] and out.shape == image.shape
    assert (out[mask == 0] == image[mask == 0]).all()  # known pixels untouched

    class Plain(InpaintModule):
        def forward(self, image, mask):
            CALLS.append((torch.is_grad_enabled(), None))
            return image

    CALLS.clear()
    inpaint_file(Plain().eval(), image, mask, torch.device("cpu"))
    assert CALLS == [(False, None)]


def test_per_sample_generators_depend_on_the_sample_not_its_batch(make_cfg):
    from inpaint.run import build_model

    model = build_model(make_cfg(*tiny("biharmonic"), "model=biharmonic", "seed=7"))
    assert model.inference_seed == 7

    def draws(index):
        return [torch.rand(3, generator=g) for g in model.sample_generators(torch.tensor(index))]

    a, b = draws([4, 9, 2]), draws([2, 4])  # another batch, order and size
    assert torch.equal(a[0], b[1]) and torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])
    model.inference_seed = 8
    assert not torch.equal(draws([4])[0], a[0])  # the run seed matters too
