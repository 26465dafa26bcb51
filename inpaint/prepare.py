"""``python -m inpaint.prepare``: check a dataset (and mask set) before training on it.

  python -m inpaint.prepare data=cifar10 data.root=~/data/cifar10        # downloads it when missing
  python -m inpaint.prepare data=places2 data.root=/data/places2 data.variant=challenge
  python -m inpaint.prepare data=lsun data.root=/data/lsun data.category=church_outdoor --no-download
  python -m inpaint.prepare mask=nvidia mask.root=/data/masks/testing_mask_dataset

Takes the same ``data=`` / ``mask=`` overrides as ``python -m inpaint.run``. For the dataset it checks
the layout and the published checksums, extracts owner archives found in the root, downloads what the
owners allow (CIFAR-10, LSUN; not with ``--no-download``), builds the key/file indexes beside the data
and prints the split sizes; otherwise it prints what is missing and where the owners distribute it, and
exits with status 1. For ``mask=nvidia`` it indexes the hole ratios of the mask files and prints how
many fall in each ``eval.buckets`` range.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from inpaint.cli import USER_ERRORS, instantiate, report_user_error
from inpaint.config_dir import CONF_DIR
from inpaint.data.datasets.base import DatasetDataModule
from inpaint.evaluation.metrics import bucket_name

log = logging.getLogger("inpaint.prepare")

FLAGS = {"--no-download": "check and extract only; never download", "--help": "show this help"}


def _locate(path: str) -> object:
    """The object at dotted ``path`` (a class, or e.g. a classmethod such as ``X.from_folder``)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ValueError(f"data._target_={path} cannot be imported")


def _layout(data_cfg: DictConfig):
    """The dataset layout of a ``data=`` config, or None for sources without one (sample, folder)."""
    cls = _locate(data_cfg.get("_target_", ""))
    if not (isinstance(cls, type) and issubclass(cls, DatasetDataModule)):
        return None
    params = set(inspect.signature(cls.layout_class.__init__).parameters) - {"self"}
    options = {k: v for k, v in OmegaConf.to_container(data_cfg, resolve=True).items() if k in params}
    return cls.layout_class(**options)


def prepare_data(cfg: DictConfig, download: bool) -> bool:
    layout = _layout(cfg.data)
    if layout is None:
        target = cfg.data.get("_target_", "")
        if target.endswith("from_folder"):
            dm = instantiate(cfg.data, mask=instantiate(cfg.mask), seed=cfg.seed)
            sizes = {k: len(v) for k, v in dm.sources.items()}
            print(f"data.root={cfg.data.root}: an image folder; " + ", ".join(f"{k} {n}" for k, n in sizes.items()))
        else:
            print(f"{target}: nothing to prepare (no files to check)")
        return True
    report = layout.prepare(download=download, val_size=cfg.data.get("val_size"))
    print(report)
    return report.ready


def prepare_mask(cfg: DictConfig) -> None:
    if "root" not in cfg.mask:
        return
    mask = instantiate(cfg.mask)
    ratios = np.asarray(getattr(mask, "ratios", []), dtype=float)
    print(f"mask: {mask!r}")
    if ratios.size:
        print(f"  hole ratio: min {ratios.min():.3f}, median {np.median(ratios):.3f}, max {ratios.max():.3f}")
        for lo, hi in cfg.eval.buckets:
            n = int(((ratios >= lo) & (ratios < hi)).sum())
            print(f"  {bucket_name(lo, hi)} %: {n} masks")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in argv if a.startswith("--")]
    overrides = [a for a in argv if not a.startswith("--")]
    if "--help" in flags or "-h" in argv:
        print(__doc__)
        print("flags:\n" + "\n".join(f"  {k:15s} {v}" for k, v in FLAGS.items()))
        return 0
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        print(f"error: unknown flag {unknown[0]}; flags are {', '.join(FLAGS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        ready = prepare_data(cfg, download="--no-download" not in flags)
        prepare_mask(cfg)
    except (*USER_ERRORS, HydraException) as e:
        return report_user_error(e, "inpaint.prepare")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
