"""LSUN scenes: one category's training and validation LMDB environments.

On-disk format (as distributed by the LSUN owners: one zip per category and split, fetched by
``download.py`` of github.com/fyu/lsun from ``http://dl.yf.io/lsun/scenes/``)::

    {category}_train_lmdb/data.mdb, lock.mdb     e.g. bedroom: 3,033,042 images (43 GB)
    {category}_val_lmdb/data.mdb, lock.mdb       300 images per category

Each LMDB environment maps an image id (40 hex characters as ASCII bytes, e.g.
``0001c44e5f5175a7e6358d207660f971d90abaf4``) to the encoded image bytes. The LSUN README says JPEG
(short side resized to 256, quality 75); the scene LMDBs commonly hold WebP. Values are decoded with PIL,
which recognises either from the bytes. Only ``data.mdb`` is needed: environments are opened read-only
without locking, so ``lock.mdb`` is neither read nor written.

The 10 scene categories: bedroom, bridge, church_outdoor, classroom, conference_room, dining_room,
kitchen, living_room, restaurant and tower (``data.category``).

Splits, and how they depart from the owners' naming: LSUN's own test set (``test_lmdb``) is unlabelled
and mixes all categories, so it cannot serve as one category's test set. Here **test is the official
val LMDB** (300 images) and **val is carved out of train** by
:class:`~inpaint.data.datasets.base.DatasetDataModule` (``data.val_size``, default 1,000 images whose ids
have the smallest md5); the rest of train is for training.

Key lists: an LMDB cannot be indexed by position, so the sorted list of its keys is built once with a
cursor scan and cached as JSON in ``<root>/.inpaint-cache/lsun-keys-<lmdb dir>.json`` (beside the data;
the user cache dir when the root is read-only; never the working directory). The cache records the size
and modification time of ``data.mdb`` and is rebuilt when they change. ``python -m inpaint.prepare``
builds it ahead of training.

Processes: an LMDB environment must not be used across ``fork``, and py-lmdb refuses to open one twice
in a process. :class:`LMDBSource` opens its environment lazily in each process that reads (it remembers
the process id; a forked child closes the inherited copy and opens its own), shares it between the sources
of the same folder within a process, and drops it when pickled, so DataLoader workers and DDP processes
each get their own. Without locking, readers assume nothing writes to the LMDB while training runs.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from PIL import Image

from inpaint.data.cache import cache_dir, cached_json, fingerprint
from inpaint.data.datasets.base import Archive, DatasetDataModule, DatasetLayout, Requirement
from inpaint.data.io import ImageReadError, to_rgb_uint8
from inpaint.data.sources import BadItems, ImageSource, load_skipping_corrupt

__all__ = [
    "LSUN_CATEGORIES",
    "LSUN_URL",
    "LMDBSource",
    "LSUNDataModule",
    "LSUNLayout",
]

log = logging.getLogger("inpaint.data")

LSUN_CATEGORIES: tuple[str, ...] = (
    "bedroom",
    "bridge",
    "church_outdoor",
    "classroom",
    "conference_room",
    "dining_room",
    "kitchen",
    "living_room",
    "restaurant",
    "tower",
)

#: where the owners' download script fetches each zip. Module-level so that tests can point it at
#: local ``file://`` copies.
LSUN_URL = "http://dl.yf.io/lsun/scenes/{category}_{split}_lmdb.zip"

_ON_CORRUPT_CHOICES = ("error", "skip")

# open read-only environments: (real path of the LMDB folder, device, inode of its data.mdb) ->
# (id of the process that opened it, environment)
_ENVS: dict[tuple[str, int, int], tuple[int, lmdb.Environment]] = {}


class LMDBSource(ImageSource):
    """The images stored as values of an LMDB environment, in sorted key order.

    Args:
        path: the environment directory (holding ``data.mdb``).
        on_corrupt: ``"error"`` raises :class:`ImageReadError` naming the LMDB and the key of an entry that
            is missing or cannot be decoded; ``"skip"`` warns once (logger ``inpaint.data``) naming them
            and loads the next readable entry (``index + 1``,
            wrapping around), remembering bad entries, as :class:`~inpaint.data.sources.FolderSource` does.

    ``name(i)`` is the key (the LSUN image id). The key list comes from the cache described in the module
    docstring, built on first use.
    """

    in_memory = False

    def __init__(self, path: str | os.PathLike[str], on_corrupt: str = "error") -> None:
        if on_corrupt not in _ON_CORRUPT_CHOICES:
            raise ValueError(f"data.on_corrupt must be one of {_ON_CORRUPT_CHOICES}, got {on_corrupt!r}")
        self.path = Path(path).expanduser()
        self.on_corrupt = on_corrupt
        data = self.path / "data.mdb"
        if not data.is_file():
            raise FileNotFoundError(f"'{self.path}' is not an LMDB environment: it has no data.mdb")
        keys = cached_json(self.path.parent, self.cache_name, key=fingerprint(data), build=self._scan_keys)
        # one contiguous array instead of millions of Python strings: small, and forked DataLoader workers
        # share its pages instead of copying them as reference counts change
        self._keys: np.ndarray = np.array([k.encode("latin-1") for k in keys], dtype=bytes)
        self.bad_indices = BadItems(len(self._keys))
        self._env: lmdb.Environment | None = None
        self._pid: int | None = None

    @property
    def cache_name(self) -> str:
        return f"lsun-keys-{self.path.name}"

    @property
    def cache_path(self) -> Path:
        """The JSON file holding the key list."""
        return cache_dir(self.path.parent) / f"{self.cache_name}.json"

    def _open(self) -> lmdb.Environment:
        try:
            # lock=False: read-only use needs no reader table (and none is written to lock.mdb);
            # max_readers is then irrelevant, 1 keeps the environment small
            return lmdb.open(
                str(self.path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1
            )
        except lmdb.Error as e:
            raise ImageReadError(
                f"cannot open LMDB environment '{self.path}': {e} (is it complete? it comes from "
                f"{self.path.name}.zip)",
                path=str(self.path),
                reason=str(e),
            ) from e

    def _scan_keys(self) -> list[str]:
        log.info("listing the keys of '%s' (once; cached beside the data)", self.path)
        shared = _ENVS.get(self._env_key())
        own = shared is None or shared[0] != os.getpid()
        env = self.env() if not own else self._open()
        try:
            with env.begin(write=False) as txn:
                keys = [bytes(k).decode("latin-1") for k in txn.cursor().iternext(keys=True, values=False)]
        except lmdb.Error as e:
            raise ImageReadError(
                f"cannot list the keys of LMDB '{self.path}': {e}", path=str(self.path)
            ) from e
        finally:
            if own:
                env.close()
        if not keys:
            raise ValueError(f"LMDB environment '{self.path}' holds no entries")
        return sorted(keys)

    def _env_key(self) -> tuple[str, int, int]:
        """The folder and the identity of its data.mdb (a re-extracted LMDB is a different environment)."""
        st = os.stat(self.path / "data.mdb")
        return os.path.realpath(self.path), st.st_dev, st.st_ino

    def env(self) -> lmdb.Environment:
        """This process's read-only environment, opened on first use and again in a forked child.

        LMDB allows one open environment per file and process, so every source of the same folder in a
        process shares one (kept in a module-level table by process id). A child process inherits its
        parent's environments through ``fork`` but must not use them: it closes the inherited one (which
        leaves the parent's untouched) and opens its own."""
        if self._env is not None and self._pid == os.getpid():
            return self._env
        key, pid = self._env_key(), os.getpid()
        entry = _ENVS.get(key)
        if entry is None or entry[0] != pid:
            if entry is not None:  # inherited through fork
                try:
                    entry[1].close()
                except lmdb.Error:
                    pass
            entry = (pid, self._open())
            _ENVS[key] = entry
        self._pid, self._env = entry
        return self._env

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None  # an environment cannot cross processes: the receiver opens its own
        state["_pid"] = None
        return state

    def value(self, index: int) -> bytes:
        """The stored (encoded) bytes of entry ``index``; ImageReadError when its key is gone."""
        key = self._keys[self._check_index(index)]
        try:
            with self.env().begin(write=False) as txn:
                value = txn.get(key)
        except lmdb.Error as e:
            raise ImageReadError(
                f"cannot read {self._where(key)}: {e}", path=str(self.path), reason=str(e)
            ) from e
        if value is None:
            raise ImageReadError(
                f"cannot read {self._where(key)}: the key is not in the LMDB (it changed after its key list "
                "was cached; the list is rebuilt on the next start)",
                path=str(self.path),
                reason="missing key",
            )
        return value

    def _where(self, key: bytes) -> str:
        return f"entry '{key.decode('latin-1')}' of LMDB '{self.path}'"

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"LMDBSource('{self.path}', n={len(self)}, on_corrupt='{self.on_corrupt}')"

    def name(self, index: int) -> str:
        return self._keys[self._check_index(index)].decode("latin-1")

    def _read(self, index: int) -> np.ndarray:
        value = self.value(index)
        where = self._where(self._keys[index])
        try:
            with Image.open(io.BytesIO(value)) as img:
                img.load()
                return to_rgb_uint8(img, name=where)
        except ImageReadError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # PIL: UnidentifiedImageError, OSError (truncated), ValueError, ...
            reason = f"{e or 'undecodable'} ({type(e).__name__})"
            raise ImageReadError(
                f"cannot decode {where} ({len(value)} bytes) as an image: {reason}",
                path=str(self.path),
                reason=reason,
            ) from e

    def load(self, index: int) -> np.ndarray:
        return load_skipping_corrupt(
            self,
            index,
            self._read,
            lambda i: f"entry '{self.name(i)}' of LMDB '{self.path}'",
            f"entries of LMDB '{self.path}'",
            self.path,
        )


class LSUNLayout(DatasetLayout):
    """One LSUN scene category under ``data.root``: see the module docstring for the format and splits.

    ``category`` is one of :data:`LSUN_CATEGORIES` (``data.category``); an unknown one raises ValueError
    listing them.
    """

    name = "lsun"
    title = "LSUN scenes"
    homepage = "https://www.yf.io/p/lsun"
    how_to_get = (
        "download.py of github.com/fyu/lsun fetches {category}_train_lmdb.zip and {category}_val_lmdb.zip, "
        "e.g. `python download.py -c bedroom`; `python -m inpaint.prepare data=lsun` fetches the same zips"
    )
    default_val_size = 1000

    def __init__(
        self,
        root: str | os.PathLike[str],
        category: str = "bedroom",
        on_corrupt: str = "error",
        verify_checksums: bool = True,
    ) -> None:
        super().__init__(root, on_corrupt=on_corrupt, verify_checksums=verify_checksums)
        if category not in LSUN_CATEGORIES:
            raise ValueError(
                f"data.category={category} is not an LSUN scene category; choose one of: {', '.join(LSUN_CATEGORIES)}"
            )
        if on_corrupt not in _ON_CORRUPT_CHOICES:
            raise ValueError(f"data.on_corrupt must be one of {_ON_CORRUPT_CHOICES}, got {on_corrupt!r}")
        self.category = category

    def lmdb_dir(self, split: str) -> str:
        """``{category}_{split}_lmdb`` (``split``: the owners' ``train`` or ``val``)."""
        return f"{self.category}_{split}_lmdb"

    def requirements(self) -> list[Requirement]:
        return [
            Requirement(
                f"{self.lmdb_dir('train')}/data.mdb",
                f"LMDB of the {self.category} training images, from {self.lmdb_dir('train')}.zip",
                splits=("train", "val"),
            ),
            Requirement(
                f"{self.lmdb_dir('val')}/data.mdb",
                f"LMDB of the 300 {self.category} validation images (our test split), from {self.lmdb_dir('val')}.zip",
                splits=("test",),
            ),
        ]

    def archives(self) -> list[Archive]:
        # the owners publish no checksums for the zips
        return [
            Archive(
                f"{self.lmdb_dir(split)}.zip",
                provides=(f"{self.lmdb_dir(split)}/data.mdb",),
                md5=None,
                url=LSUN_URL.format(category=self.category, split=split),
            )
            for split in ("train", "val")
        ]

    def _source(self, split: str) -> LMDBSource:
        return LMDBSource(self.root / self.lmdb_dir(split), on_corrupt=self.on_corrupt)

    def splits(self) -> dict[str, ImageSource]:
        return {"train": self._source("train"), "test": self._source("val")}

    def build_indexes(self) -> list[str]:
        lines = []
        for split in ("train", "val"):
            src = self._source(split)
            lines.append(f"  {self.lmdb_dir(split)}: {len(src)} keys cached in {src.cache_path}")
        return lines


class LSUNDataModule(DatasetDataModule):
    """``data=lsun``: one category; train minus a carved validation split, and the official val as test."""

    layout_class = LSUNLayout
