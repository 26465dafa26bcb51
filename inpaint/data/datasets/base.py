"""What every dataset shares: its on-disk layout, readiness check, official splits and DataModule.

A dataset is described by a :class:`DatasetLayout`: the files and folders its owners distribute
(:class:`Requirement`, with published checksums), the archives they come in (:class:`Archive`, with a URL
only where the owners allow anyone to download), and how to read each official split as an
:class:`~inpaint.data.sources.ImageSource`. :class:`DatasetDataModule` turns a layout into the shared
:class:`~inpaint.data.datamodule.InpaintDataModule`; where the owners publish no validation split it
carves a deterministic one out of train (by a hash of each image's name) and says so.

The same layout drives ``python -m inpaint.prepare`` (check, verify, extract, download) and the error a
training run gives when the data is not there, so both print the same message.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inpaint.data.cache import cache_dir
from inpaint.data.datamodule import InpaintDataModule
from inpaint.data.download import ChecksumError, check_md5, download_url, extract
from inpaint.data.sources import ImageSource

log = logging.getLogger("inpaint.data")

__all__ = [
    "Archive",
    "DatasetDataModule",
    "DatasetLayout",
    "DatasetNotReadyError",
    "Requirement",
    "SubsetSource",
    "carve_split",
]


class DatasetNotReadyError(FileNotFoundError):
    """The dataset is missing or incomplete; the message says what, where, and how to get it."""


@dataclass(frozen=True)
class Requirement:
    """A file or folder (relative to the dataset root) that a split needs."""

    path: str
    what: str
    kind: str = "file"  # file | dir
    md5: str | None = None  # published checksum, verified unless data.verify_checksums=false
    splits: tuple[str, ...] = ()  # the splits that read it (for the report)


@dataclass(frozen=True)
class Archive:
    """An archive the owners distribute, and the requirements it provides once extracted into the root."""

    filename: str
    provides: tuple[str, ...]
    md5: str | None = None
    url: str | None = None  # set only where the owners allow direct download
    extract_to: str = "."  # relative to the root


@dataclass
class PrepareReport:
    ready: bool
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


class DatasetLayout(abc.ABC):
    """One dataset's on-disk format, rooted at ``root`` (the ``data.root`` option)."""

    #: config name (``data=NAME``)
    name: ClassVar[str]
    #: human title and where the owners distribute it
    title: ClassVar[str]
    homepage: ClassVar[str]
    #: how to obtain the data when it cannot be downloaded here (terms, forms, mirrors)
    how_to_get: ClassVar[str] = ""
    #: size of the validation split carved from train when the owners publish none
    default_val_size: ClassVar[int] = 1000

    def __init__(
        self,
        root: str | os.PathLike[str],
        on_corrupt: str = "error",
        verify_checksums: bool = True,
    ) -> None:
        if root is None or str(root) in ("", "???"):
            raise ValueError(f"data.root is not set: give the folder holding {self.title}, e.g. data.root=/data/{self.name}")
        self.root = Path(root).expanduser()
        self.on_corrupt = on_corrupt
        self.verify_checksums = bool(verify_checksums)

    # -------------------------------------------------------------------------------- to implement

    @abc.abstractmethod
    def requirements(self) -> list[Requirement]:
        """Everything the official splits read, relative to ``root``."""

    @abc.abstractmethod
    def splits(self) -> dict[str, ImageSource]:
        """The official splits present (``train`` always; ``val``/``test`` when the owners publish them)."""

    def archives(self) -> list[Archive]:
        """The archives the requirements come in (extracted by ``prepare`` when found in the root)."""
        return []

    def build_indexes(self) -> list[str]:
        """Build and cache any index (key lists, file lists) beside the data; returns report lines."""
        return []

    # ----------------------------------------------------------------------------------- checking

    def path(self, rel: str) -> Path:
        return self.root / rel

    def problems(self, verify_checksums: bool | None = None) -> list[str]:
        """What is missing or wrong, one line each (empty when the dataset is ready)."""
        verify = self.verify_checksums if verify_checksums is None else verify_checksums
        if not self.root.exists():
            return [f"data.root='{self.root}' does not exist"]
        if not self.root.is_dir():
            return [f"data.root='{self.root}' is not a folder"]
        out = []
        for req in self.requirements():
            p = self.path(req.path)
            if req.kind == "dir" and not p.is_dir():
                out.append(f"missing folder '{p}' ({req.what})")
            elif req.kind == "file" and not p.is_file():
                out.append(f"missing file '{p}' ({req.what})")
            elif req.kind == "file" and req.md5 and verify:
                try:
                    check_md5(p, req.md5)
                except ChecksumError as e:
                    out.append(str(e))
        return out

    def layout_text(self) -> str:
        """The expected tree, one requirement per line."""
        rows = []
        for req in self.requirements():
            slash = "/" if req.kind == "dir" else ""
            used = f"  [{', '.join(req.splits)}]" if req.splits else ""
            rows.append(f"    {self.root}/{req.path}{slash}  : {req.what}{used}")
        return "\n".join(rows)

    def not_ready_message(self, problems: Sequence[str]) -> str:
        downloadable = [a for a in self.archives() if a.url]
        lines = [f"data={self.name}: {self.title} at data.root='{self.root}' is not ready:"]
        lines += [f"  - {p}" for p in problems]
        lines += ["Expected layout:", self.layout_text()]
        if downloadable:
            lines.append(
                f"Download and check it with: python -m inpaint.prepare data={self.name} data.root={self.root}"
                + self._option_args()
            )
        else:
            lines.append(f"Get it from {self.homepage}" + (f" ({self.how_to_get})" if self.how_to_get else ""))
            archives = ", ".join(a.filename for a in self.archives())
            if archives:
                lines.append(
                    f"Put the archives ({archives}) in the root and run "
                    f"python -m inpaint.prepare data={self.name} data.root={self.root}{self._option_args()} "
                    "to check and extract them."
                )
        return "\n".join(lines)

    def _option_args(self) -> str:
        """Layout options as CLI overrides (e.g. ' data.category=bedroom'), for copy-paste commands."""
        params = inspect.signature(type(self).__init__).parameters
        skip = {"self", "root", "on_corrupt", "verify_checksums"}
        out = ""
        for name in params:
            if name not in skip and hasattr(self, name):
                out += f" data.{name}={getattr(self, name)}"
        return out

    def ensure_ready(self) -> None:
        problems = self.problems()
        if problems:
            raise DatasetNotReadyError(self.not_ready_message(problems))

    # ---------------------------------------------------------------------------------- preparing

    def prepare(self, download: bool = True, val_size: int | None = None) -> PrepareReport:
        """Check the layout; extract archives found in the root; download what the owners allow; build
        the indexes; where the validation split is carved from train, write its list (one image name a
        line) to ``<cache>/<name>-carved-val-<size>.txt``."""
        lines = [f"data={self.name}: {self.title} at data.root='{self.root}'"]
        missing = {r.path for r in self.requirements() if not self.path(r.path).exists()}
        for arch in self.archives():
            if not missing.intersection(arch.provides):
                continue
            file = self.root / arch.filename
            if not file.is_file() and arch.url and download:
                download_url(arch.url, file, md5=arch.md5)
                lines.append(f"  downloaded {arch.url}")
            if file.is_file():
                if arch.md5 and self.verify_checksums:
                    check_md5(file, arch.md5)
                    lines.append(f"  {arch.filename}: md5 ok")
                extract(file, self.root / arch.extract_to)
                lines.append(f"  extracted {arch.filename}")
                missing.difference_update(arch.provides)
        problems = self.problems()
        if problems:
            return PrepareReport(False, lines + [self.not_ready_message(problems)])
        verified = [r.path for r in self.requirements() if r.md5 and self.verify_checksums]
        if verified:
            lines.append(f"  md5 ok: {', '.join(verified)}")
        lines += self.build_indexes()
        splits = self.splits()
        if "val" not in splits:
            size = int(val_size or self.default_val_size)
            try:
                splits["train"], splits["val"] = carve_split(splits["train"], size)
            except ValueError as e:  # a run would stop on the same error: say it here
                return PrepareReport(False, [*lines, f"  val: cannot carve a validation split: {e}"])
            path = cache_dir(self.root) / f"{self.name}-carved-val-{size}.txt"
            path.write_text("".join(f"{splits['val'].name(i)}\n" for i in range(size)))
            lines.append(f"  val: carved from train (data.val_size={size}); its list: {path}")
        for split in ("train", "val", "test"):
            if split in splits:
                lines.append(f"  {split}: {len(splits[split])} images")
        lines.append("ready")
        return PrepareReport(True, lines)


class SubsetSource(ImageSource):
    """Some of another source's images, by index."""

    def __init__(self, source: ImageSource, indices: Sequence[int], label: str = "") -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.label = label
        self.in_memory = source.in_memory

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"SubsetSource({self.source!r}, n={len(self)}{', ' + self.label if self.label else ''})"

    def name(self, index: int) -> str:
        return self.source.name(int(self.indices[self._check_index(index)]))

    def load(self, index: int) -> np.ndarray:
        return self.source.load(int(self.indices[self._check_index(index)]))


def carve_split(source: ImageSource, size: int) -> tuple[SubsetSource, SubsetSource]:
    """Split ``source`` into (rest, carved) where ``carved`` holds the ``size`` images whose names have the
    smallest md5: deterministic, independent of list order, and stable when images are added."""
    n = len(source)
    if not 0 < size < n:
        raise ValueError(f"data.val_size={size} must be between 1 and {n - 1} (the train split has {n} images)")
    keys = [hashlib.md5(source.name(i).encode()).hexdigest() for i in range(n)]
    order = np.argsort(np.asarray(keys), kind="stable")
    carved = np.sort(order[:size])
    rest = np.sort(order[size:])
    return SubsetSource(source, rest, "train minus carved val"), SubsetSource(source, carved, "carved val")


_LAYOUT_BASE_OPTIONS = ("on_corrupt", "verify_checksums")


class DatasetDataModule(InpaintDataModule):
    """:class:`InpaintDataModule` over a :class:`DatasetLayout`: ``data.root`` plus the layout's options.

    Every keyword the layout's constructor takes (``category``, ``variant``, ``on_corrupt``, ...) goes
    to the layout; the rest to :class:`InpaintDataModule`. ``val_size`` is the size of the validation
    split carved out of train when the dataset has none (``None``: the layout's default)."""

    layout_class: ClassVar[type[DatasetLayout]]

    def __init__(self, root: str, val_size: int | None = None, **kwargs: Any) -> None:
        layout_params = set(inspect.signature(self.layout_class.__init__).parameters) - {"self", "root"}
        dm_params = set(inspect.signature(InpaintDataModule.__init__).parameters) - {"self", "train", "val", "test"}
        unknown = sorted(set(kwargs) - layout_params - dm_params)
        if unknown:
            options = ", ".join(sorted({"root", "val_size"} | layout_params | dm_params))
            raise ValueError(
                f"data.{unknown[0]} is not an option of data={self.layout_class.name}; its options are: {options}"
            )
        layout_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in layout_params}
        self.layout = self.layout_class(root, **layout_kw)
        self.layout.ensure_ready()
        splits = self.layout.splits()
        if "val" not in splits:
            size = int(val_size or self.layout.default_val_size)
            splits["train"], splits["val"] = carve_split(splits["train"], size)
            log.info(
                "data=%s: %s publishes no validation split; carved %d train images as validation "
                "(those whose names have the smallest md5; data.val_size to change), %d left for training",
                self.layout.name, self.layout.title, size, len(splits["train"]),
            )
        elif val_size:
            log.warning("data.val_size=%s is ignored: data=%s has an official validation split", val_size, self.layout.name)
        self.split_sizes = {k: len(v) for k, v in splits.items()}
        super().__init__(train=splits["train"], val=splits["val"], test=splits.get("test"), **kwargs)
