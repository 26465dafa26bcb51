"""What a model declares about itself, read by generic code instead of probing the model.

:meth:`inpaint.models.base.InpaintModule.needs` returns a :class:`ModelNeeds`; ``inpaint.run``, ``inpaint.predict``,
the checkpoint checks and the data checks read it and refuse a mismatch before any training step, with one
message naming the option to change. A model never edits the trainer's callbacks nor reads the data module:
it says what it needs, and the run arranges it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelNeeds:
    """A model's declaration.

    Attributes:
        trainable: False for a non-learned model or a frozen prior's inversion: ``task=fit`` is refused and
            ``task=test`` needs no checkpoint.
        pretrained_weights: the model carries released weights (e.g. ISNet's ``official_weights``), so
            ``task=test`` needs no checkpoint either.
        monitor, monitor_mode: the validation metric the best checkpoint is chosen by (``val/psnr`` max for
            inpainters; a density model's ``val/nll_bpd`` min; a GAN prior's ``val/swd`` min).
        size_multiple: image sides must be a multiple of this (``inpaint.predict`` pads to it).
        image_sizes: the square image sides the model is built for; None: any size.
        center_hole: the side (px) of the only hole the model fills, a centred square; None: any mask.
        procedures: the inference procedures (the first is the default); empty for a model that does not
            inpaint (a GAN prior).
        inference_needs_grad: a procedure optimises per image (GAN inversion): evaluation and prediction run
            with gradients and the trainer without inference mode.
        init_from_classes: model classes (dotted paths) whose checkpoints ``init_from=`` may start this one from.
        cpu_precision: what ``trainer.precision=model`` (``trainer=cpu``'s default) becomes on a CPU: ``bf16-mixed``
            for a model whose training steps were measured faster in bf16 autocast
            (``experiments/results/cpu_speed.md``) with losses and gradients within tolerance of fp32
            (``tests/test_cpu_precision.py``); ``32-true`` otherwise, and on a CPU without native bf16.
    """

    trainable: bool = True
    pretrained_weights: bool = False
    monitor: str = "val/psnr"
    monitor_mode: str = "max"
    size_multiple: int = 1
    image_sizes: tuple[int, ...] | None = None
    center_hole: int | None = None
    procedures: tuple[str, ...] = ("forward",)
    inference_needs_grad: bool = False
    init_from_classes: tuple[str, ...] = ()
    cpu_precision: str = "32-true"


def check_data(needs: ModelNeeds, model_name: str, size: tuple[int, int] | None, mask: Any) -> None:
    """Refuse data a model cannot take: ``size`` (height, width) of the images it will see (None: unknown) and
    ``mask``, the data's mask generator (its ``center_hole(height, width)`` says the side of the fixed centre
    hole it draws, or None)."""
    if size is not None:
        h, w = size
        m = needs.size_multiple
        if m > 1 and (h % m or w % m):
            raise ValueError(
                f"{model_name} needs image sides that are multiples of {m}, got data.image_size={h}x{w}: choose "
                f"e.g. data.image_size={max(m, h - h % m)}"
            )
        if needs.image_sizes is not None and not (h == w and h in needs.image_sizes):
            sizes = ", ".join(str(s) for s in needs.image_sizes)
            raise ValueError(f"{model_name} is built for square images of side {sizes}, got data.image_size={h}x{w}")
    if needs.center_hole is not None and mask is not None and size is not None:
        side = mask.center_hole(*size)
        if side is None:
            raise ValueError(
                f"{model_name} fills only a {needs.center_hole}x{needs.center_hole} centre hole; mask "
                f"{type(mask).__name__} draws other holes: use mask=cifar_center (32 px images) or mask=center "
                f"with mask.size={needs.center_hole}"
            )
        if side != needs.center_hole:
            raise ValueError(
                f"{model_name} fills a {needs.center_hole}-px centre hole, the mask's is {side} px: set "
                f"mask.size={needs.center_hole}"
            )
