"""The web app's methods and fills, without the page: what the Gradio UI (:mod:`inpaint.app.ui`) and scripts share.

A :class:`Method` is one way to fill: a trained run (its checkpoint), or biharmonic. Its label comes from the run's
results card (model, the settings in which runs of that model differ, the test PSNR), its inference procedures and
options from the model itself, so a new model appears in the app with nothing written for it here.
:meth:`Method.fill` runs :func:`inpaint.fill.fill_image` exactly as ``inpaint.predict`` does for image number 0
(the same procedure, options, seed and strategy give the same PNG), one fill at a time per method (a lock: a
model's inference options are state).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inpaint import progress
from inpaint.checkpoints import resolve_checkpoint
from inpaint.evaluation.card import CARD_JSON
from inpaint.fill import fill_image, load_model, model_scale
from inpaint.models.base import InpaintModule
from inpaint.report.leaderboard import find_run_dirs, read_run, run_labels

log = logging.getLogger("inpaint.app")

#: the method every app has: the non-learned floor
BIHARMONIC = "biharmonic"
#: the scalar option types the page offers a field for
_SCALAR_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class OptionField:
    """One inference option of a model: its ``name``, scalar ``kind`` (bool, int, float or str), its default, and
    whether ``None`` (an empty field) is allowed."""

    name: str
    kind: type
    default: Any
    optional: bool


def option_fields(model: InpaintModule) -> list[OptionField]:
    """The model's inference options (:attr:`InpaintModule.InferenceOptions`) that a form can hold: those with a
    scalar type (``int``, ``float | None``, ``bool``, ``str``); a mapping-valued option keeps its current value."""
    cls = model.InferenceOptions
    if cls is None:
        return []
    hints = typing.get_type_hints(cls)
    fields = []
    current = dataclasses.asdict(model.inference_opts)
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in _SCALAR_TYPES:
            fields.append(OptionField(f.name, kinds[0], current[f.name], type(None) in args))
    return fields


@dataclass
class Method:
    """A model the app fills with: ``label`` (unique, shown in the page), how to load it (``load_model``'s
    arguments: ``{"ckpt_path": ...}`` or ``{"model": "biharmonic"}``) and its run's card (empty without one)."""

    label: str
    source: dict[str, str]
    card: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    _model: InpaintModule | None = field(default=None, repr=False)
    _defaults: Any = field(default=None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self) -> InpaintModule:
        if self._model is None:
            self._model = load_model(**self.source).to(torch.device(self.device)).eval()
        if self._defaults is None:
            self._defaults = self._model.inference_opts  # the options as the checkpoint's config sets them
        return self._model

    @property
    def procedures(self) -> list[str]:
        return [p.name for p in self.model.procedures()]

    @property
    def default_procedure(self) -> str | None:
        return self.model.default_procedure()

    @property
    def options(self) -> list[OptionField]:
        return option_fields(self.model)

    def predict_command(self, procedure: str | None, options: dict[str, Any], seed: int, strategy: str) -> str:
        """The ``inpaint.predict`` command that writes the same PNG as :meth:`fill` (the app's ``mask.png`` and the
        photo as input)."""
        parts = ["python -m inpaint.predict"]
        parts += [f"{k}={v}" for k, v in self.source.items()]
        parts += ["input=PHOTO", "mask=mask.png", "output=filled"]
        if procedure:
            parts.append(f"procedure={procedure}")
        parts += [f"+inference.{k}={'null' if v is None else v}" for k, v in options.items()]
        parts += [f"seed={seed}", f"strategy={strategy}"]
        return " ".join(parts)

    def fill(self, image: np.ndarray, mask: np.ndarray, procedure: str | None = None,
             options: dict[str, Any] | None = None, seed: int = 0, strategy: str = "crop",
             listener: progress.Listener | None = None) -> tuple[np.ndarray, float]:
        """Fill ``image`` (uint8 ``HxWx3``) where ``mask`` (``HxW``, 1 = hole) is set; returns the uint8 result and
        the seconds it took. The same as ``inpaint.predict`` with this method's checkpoint, ``procedure=``,
        ``inference.*`` = ``options``, ``seed=`` and ``strategy=`` for a single image. A model that cannot fill
        this input (a context encoder and a free-form hole) raises ``ValueError`` saying why; a listener that
        raises :class:`inpaint.progress.Stopped` stops the fill."""
        with self.lock:  # one fill at a time per model: its procedure and options are state
            model = self.model
            model.inference_opts = self._defaults  # the checkpoint's options, then this fill's on top
            model.configure_inference(procedure=procedure or model.default_procedure(), **(options or {}))
            model.inference_seed = int(seed)
            start = time.perf_counter()
            with progress.listening(listener or (lambda done, total, what: None)):
                out = fill_image(model, image, mask, torch.device(self.device), strategy, index=0)
            return out, time.perf_counter() - start

    @property
    def scale(self) -> tuple[int, int] | None:
        return model_scale(self.model)


def _card_label(card: dict[str, Any], name: str) -> str:
    psnr = (card.get("metrics") or {}).get("test/psnr")
    score = f" · test PSNR {psnr:.2f} dB" if isinstance(psnr, (int, float)) else ""
    return f"{name}{score}"


def find_methods(paths: Sequence[str | Path], device: str = "cpu", limit: int = 12) -> list[Method]:
    """Biharmonic, then the runs under ``paths`` (run directories, folders searched for them, or ``.ckpt`` files),
    newest first, at most ``limit`` of them (said in the log when more were found). A path that does not exist,
    or holds no run with a checkpoint, is an error naming it."""
    methods = [Method(BIHARMONIC, {"model": BIHARMONIC}, device=device)]
    files = [Path(p) for p in paths if Path(p).is_file()]
    for f in files:
        if f.suffix != ".ckpt":
            raise ValueError(f"runs={f}: a file must be a checkpoint (.ckpt); give a run directory or a folder of runs")
    dirs, problems = find_run_dirs([str(p) for p in paths if not Path(p).is_file()])
    if problems:
        raise FileNotFoundError(f"runs=: {problems[0]}")
    runs: list[tuple[dict[str, Any], str]] = []
    for d in dirs:
        try:
            ckpt = resolve_checkpoint(d, option="runs")
        except FileNotFoundError:
            log.info("runs: %s has no checkpoint (a test-only run or one without checkpoints): skipped", d)
            continue
        card = read_run(d)
        card.setdefault("model", "?")
        card.setdefault("settings", {})
        runs.append((card, ckpt))
    for f in files:  # RUN/checkpoints/X.ckpt: labelled by RUN's card when there is one
        run_dir = f.resolve().parent.parent
        card = read_run(run_dir) if (run_dir / CARD_JSON).is_file() else {"model": f.stem, "settings": {}, "dir": f.parent}
        runs.append((card, str(f)))
    if not runs and paths:
        raise FileNotFoundError(f"runs={', '.join(map(str, paths))}: no run with a checkpoint there (checkpoints/"
                                "best.ckpt or last.ckpt); train one with python -m inpaint.run")
    runs.sort(key=lambda r: Path(r[1]).stat().st_mtime, reverse=True)
    if len(runs) > limit:
        log.warning("runs: %d runs found, showing the newest %d (max_methods=%d)", len(runs), limit, limit)
        runs = runs[:limit]
    names = run_labels([card for card, _ in runs])
    seen: set[str] = {BIHARMONIC}
    for (card, ckpt), name in zip(runs, names, strict=True):
        label = _card_label(card, name)
        if label in seen:  # two runs alike: tell them apart by their folder
            label = f"{label} · {Path(card.get('dir', ckpt)).name}"
        seen.add(label)
        methods.append(Method(label, {"ckpt_path": ckpt}, card, device=device))
    return methods
