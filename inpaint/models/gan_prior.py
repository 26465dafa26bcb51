"""The frozen PGGAN prior of mGANprior (``model.prior``; ``specs/mganprior-pggan.md`` section 1).

A prior is one of: a ``model=pggan`` run checkpoint (``checkpoint``), an official converted generator file or
registry name (``official``; its weights are read on first use, :func:`deferred_prior` /
:func:`load_official_prior`, so building the model for a config check needs no file), or untrained weights
(``random: true``, tests and benchmarks). The generator is frozen: it stays a submodule of the model (moved
with it) but no weight takes a gradient.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch

from inpaint.checkpoint_io import CHECKPOINT_CLASS_KEY, read_checkpoint
from inpaint.errors import CheckpointMismatchError
from inpaint.models.pggan_weights import load_official_generator
from inpaint.nets.pggan import PGGANGenerator

log = logging.getLogger(__name__)

__all__ = ["PGGAN_MODULE_CLASS", "build_prior", "deferred_prior", "load_official_prior", "load_pggan_run_generator",
           "prior_source"]

#: the class an own-trained prior's run checkpoint names (``model=pggan``)
PGGAN_MODULE_CLASS = "inpaint.models.pggan.PGGANModule"
PRIOR_HINT = "model.prior.random=true (untrained weights, for tests only)"
_GENERATOR_SIZES = ("resolution", "z_dim", "fmap_base", "fmap_max")
_PRIOR_KEYS = ("checkpoint", "official", "random", "seed", *_GENERATOR_SIZES)


def load_pggan_run_generator(path: str) -> PGGANGenerator:
    """The generator of a ``model=pggan`` run checkpoint written by ``inpaint.run``: built from the
    checkpoint's ``hyper_parameters.generator`` and loaded from the ``generator_ema.*`` state-dict entries
    when there are any (the EMA generator), else from ``generator.*``.

    Raises:
        CheckpointMismatchError: the file is a checkpoint of another model, or holds no generator.
    """
    ckpt = read_checkpoint(path, "model.prior.checkpoint")
    cls = ckpt.get(CHECKPOINT_CLASS_KEY)
    if cls != PGGAN_MODULE_CLASS:
        raise CheckpointMismatchError(
            f"model.prior.checkpoint={path} is a checkpoint of {cls or 'no inpaint model'}, not of a PGGAN prior "
            f"({PGGAN_MODULE_CLASS}, written by `python -m inpaint.run model=pggan`); for the official "
            "generators use model.prior.official=FILE_OR_REGISTRY_NAME"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    gen_cfg = dict(hparams.get("generator") or {})
    state = ckpt.get("state_dict") or {}
    accepted = set(inspect.signature(PGGANGenerator).parameters)
    ignored = sorted(set(gen_cfg) - accepted)
    if ignored:
        log.info("prior checkpoint %s: generator options %s are not architecture options, ignored", path, ignored)
    generator = PGGANGenerator(**{k: v for k, v in gen_cfg.items() if k in accepted})
    prefix = "generator_ema." if any(k.startswith("generator_ema.") for k in state) else "generator."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not own:
        raise CheckpointMismatchError(f"model.prior.checkpoint={path} holds no 'generator.*' weights")
    try:
        generator.load_state_dict(own, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(
            f"model.prior.checkpoint={path}: its '{prefix}*' weights do not fit the generator of its own "
            f"hyper_parameters {gen_cfg}: {e}"
        ) from None
    log.info("mGANprior prior: %s weights of %s", prefix.rstrip("."), path)
    return generator


def prior_source(prior: Mapping[str, Any]) -> str:
    """Which of ``checkpoint``, ``official``, ``random`` the ``model.prior`` config gives (exactly one)."""
    unknown = sorted(set(prior) - set(_PRIOR_KEYS))
    if unknown:
        raise ValueError(f"model.prior: unknown key(s) {unknown}; the keys are {list(_PRIOR_KEYS)}")
    given = [k for k in ("checkpoint", "official", "random") if prior.get(k)]
    if len(given) != 1:
        raise ValueError(
            "model.prior needs exactly one of checkpoint=RUN_CKPT (an own model=pggan run), "
            f"official=FILE_OR_REGISTRY_NAME, random=true; got {given or 'none'}"
        )
    return given[0]


def _sizes(prior: Mapping[str, Any]) -> dict[str, int]:
    """The generator sizes ``model.prior`` gives (``resolution``, ``z_dim``, ``fmap_base``, ``fmap_max``)."""
    return {k: int(prior[k]) for k in _GENERATOR_SIZES if prior.get(k) is not None}


def build_prior(prior: Mapping[str, Any]) -> PGGANGenerator:
    """The frozen PGGAN generator of ``model.prior``: exactly one of ``checkpoint`` (a ``model=pggan`` run
    checkpoint), ``official`` (a converted official file or registry name such as ``pggan_bedroom256``, with
    the sizes ``resolution``, ``z_dim``, ``fmap_base``, ``fmap_max``) or ``random: true`` (untrained weights
    drawn from ``seed`` with those sizes, for tests and benchmarks; warned)."""
    source = prior_source(prior)
    if source == "checkpoint":
        generator = load_pggan_run_generator(str(prior["checkpoint"]))
    else:
        sizes = _sizes(prior)
        if source == "official":
            generator = PGGANGenerator(**sizes)
            info = load_official_generator(generator, str(prior["official"]), offline_hint=PRIOR_HINT)
            log.info("mGANprior prior: %s (%s layout)", info["path"], info["layout"])
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(prior.get("seed") or 0))
                generator = PGGANGenerator(**sizes)
            log.warning(
                "mGANprior with model.prior.random=true: the GAN prior is UNTRAINED (random weights); the fills "
                "are meaningless and only exercise the code (use prior.checkpoint or prior.official)"
            )
    lod = float(generator.lod)
    if lod != 0.0:
        raise ValueError(
            f"the PGGAN prior is at lod={lod} (its growing did not finish); mGANprior needs the full network (lod 0)"
        )
    generator.requires_grad_(False)
    return generator.eval()


def deferred_prior(prior: Mapping[str, Any]) -> tuple[PGGANGenerator, str | None]:
    """The generator of ``model.prior`` and the official file or registry name still to load into it.

    For ``official``: a frozen generator of the configured sizes (weights not read yet) and the name, to be
    loaded by :func:`load_official_prior` before the first inversion, so that building the model (config
    checks, ``--cfg``) neither downloads nor reads a large file. Otherwise :func:`build_prior`'s generator and
    ``None``."""
    if prior_source(prior) == "official":
        return PGGANGenerator(**_sizes(prior)).requires_grad_(False).eval(), str(prior["official"])
    return build_prior(prior), None


def load_official_prior(generator: PGGANGenerator, official: str) -> dict[str, Any]:
    """Load the official generator file or registry name ``official`` into ``generator`` (in place), check
    that its growing finished (lod 0) and freeze it; returns the loader's info (``path``, ``layout``)."""
    info = load_official_generator(generator, official, offline_hint=PRIOR_HINT)
    if float(generator.lod) != 0.0:
        raise ValueError(f"the PGGAN prior {info['path']} is at lod={float(generator.lod)}; "
                         "mGANprior needs the full network (lod 0)")
    generator.requires_grad_(False)
    log.info("mGANprior prior: %s (%s layout)", info["path"], info["layout"])
    return info
