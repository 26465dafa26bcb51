"""Optimizers and learning-rate schedulers injected from the config, one mechanism for every model.

A model config names the optimizer class and its arguments instead of a model-specific set of keys, the way
lightning-hydra-template injects partials::

    optimizer:                      # model.optimizer: the network(s) the model trains (a GAN's generator)
      _target_: torch.optim.Adam
      _partial_: true               # Hydra builds a partial; the model calls it with its parameters
      lr: 1.0e-3
      betas: [0.9, 0.999]
    optimizer_d: ...                # GAN models: the discriminator's / critic's optimizer
    scheduler:                      # model.scheduler (optional), built on the optimizer
      _target_: torch.optim.lr_scheduler.ExponentialLR
      _partial_: true
      gamma: 0.96
      interval: epoch               # Lightning's keys (interval, frequency, monitor, strict, name) stay here

so ``model.optimizer.lr=3e-4`` means the same for every model, and a sweep over it needs no per-model key.
Any class works (``_target_: torch.optim.AdamW``, a user's own). The injected value is kept as plain data
(:class:`Injected`: the dotted path and the keywords), which is what the checkpoint's hyperparameters hold, so
checkpoints stay loadable with ``weights_only=True`` and a model rebuilt from one gets the same optimizer.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: the constructor arguments a model takes for injected optimizers / schedulers
INJECTED = ("optimizer", "optimizer_d", "scheduler")
#: keys of ``model.scheduler`` that configure Lightning's stepping of it, not the scheduler class
LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor", "strict", "name")


def locate(path: str, option: str) -> Callable:
    """The class or function at dotted ``path`` (``torch.optim.Adam``), or an error naming ``option``."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name, None)
        if callable(obj):
            return obj
        break
    raise ValueError(f"{option}._target_={path}: no such class or function (e.g. torch.optim.Adam, "
                     "torch.optim.lr_scheduler.ExponentialLR)")


@dataclass(frozen=True)
class Injected:
    """An injected optimizer or scheduler as plain data: ``target`` (dotted path) and ``kwargs``; for a
    scheduler also Lightning's stepping options (``lightning``: interval, frequency, monitor, ...)."""

    target: str
    kwargs: dict[str, Any]
    option: str
    lightning: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, option: str) -> Injected | None:
        """From a Hydra partial (what ``_partial_: true`` gives), a mapping with ``_target_`` (a config, or
        the hyperparameters of a checkpoint), or None (not configured)."""
        if value is None or isinstance(value, Injected):
            return value
        if isinstance(value, functools.partial):
            if value.args:
                raise ValueError(f"{option}: give the arguments by name, not positionally ({value.args})")
            target = dotted_name(value.func)
            kwargs = dict(value.keywords)
        elif isinstance(value, Mapping):
            kwargs = dict(value)
            target = kwargs.pop("_target_", None)
            kwargs.pop("_partial_", None)
            if not target:
                raise ValueError(
                    f"{option} needs a _target_ (e.g. {option}={{_target_: torch.optim.Adam, _partial_: true, "
                    f"lr: 1e-3}}); got keys {sorted(kwargs)}"
                )
            target = str(target)
        else:
            raise ValueError(
                f"{option} must be a config with _target_ (and _partial_: true), got a {type(value).__name__}: "
                f"{value!r}"
            )
        lightning = {}
        if option.endswith("scheduler"):
            lightning = {k: kwargs.pop(k) for k in LIGHTNING_SCHEDULER_KEYS if k in kwargs}
        # a key set to null is left out: a config that extends another drops an argument its class does not
        # take (ce_wgan's RMSprop from ce_gan's Adam: betas: null)
        kwargs = {k: _plain(v) for k, v in kwargs.items() if v is not None}
        return cls(target, kwargs, option, lightning)

    def config(self) -> dict[str, Any]:
        """The config form (what the checkpoint stores): ``{_target_, _partial_: true, **kwargs}``."""
        return {"_target_": self.target, "_partial_": True, **self.kwargs, **self.lightning}

    def build(self, first: Any) -> Any:
        """Call the class with ``first`` (the parameters, or the optimizer of a scheduler) and the keywords."""
        fn = locate(self.target, self.option)
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in self.kwargs.items()}
        try:
            return fn(first, **kwargs)
        except TypeError as e:
            raise ValueError(f"{self.option}: {self.target}({', '.join(kwargs)}) failed: {e}") from None

    @property
    def name(self) -> str:
        return self.target.rpartition(".")[2]


def dotted_name(fn: Callable) -> str:
    """The shortest importable dotted path of ``fn``: ``torch.optim.Adam``, not ``torch.optim.adam.Adam``."""
    parts = fn.__module__.split(".")
    for i in range(1, len(parts) + 1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in fn.__qualname__.split("."):
            obj = getattr(obj, name, None)
        if obj is fn:
            return f"{'.'.join(parts[:i])}.{fn.__qualname__}"
    return f"{fn.__module__}.{fn.__qualname__}"


def _plain(value: Any) -> Any:
    """Tuples and nested containers as plain lists/dicts (checkpoint hyperparameters, YAML)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def scheduler_config(scheduler: Injected, optimizer: Any) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` dict for ``scheduler`` built on ``optimizer`` (interval ``epoch`` unless
    the config says otherwise)."""
    return {"scheduler": scheduler.build(optimizer), "interval": "epoch", **scheduler.lightning}


def recipe(model: str) -> dict[str, Any]:
    """The injected keys (``optimizer``, ``optimizer_d``, ``scheduler``) of ``conf/model/<model>.yaml``: what a
    script or test that builds a model in Python passes, so the paper's recipe is written once, in the YAML."""
    from omegaconf import OmegaConf

    from inpaint.config_dir import CONF_DIR

    path = CONF_DIR / "model" / f"{model}.yaml"
    if not path.is_file():
        raise ValueError(f"no model config {path}")
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    defaults = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    merged = {}
    for parent in defaults:  # e.g. isnet_eq4 extends isnet
        merged.update(recipe(parent))
    merged.update({k: node[k] for k in INJECTED if k in node})
    return merged
