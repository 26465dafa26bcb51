"""Small derived files (key lists, mask hole ratios) kept beside the data they describe.

A dataset root gets a hidden ``.inpaint-cache/`` folder. When the data lives on a read-only volume the
cache falls back to ``$XDG_CACHE_HOME/inpaint/<hash of the data path>/`` (``~/.cache`` by default).
Never the working directory: two runs started from different folders share one cache, and nothing is
left behind in a checkout.

Each cache file carries a *fingerprint* of what it was built from (sizes and modification times); a
mismatch rebuilds it, so a replaced LMDB or an added mask is never served from a stale list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("inpaint.data")

CACHE_DIRNAME = ".inpaint-cache"

__all__ = ["CACHE_DIRNAME", "cache_dir", "cached_json", "fingerprint"]


def _user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "inpaint"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_dir(data_root: str | os.PathLike[str]) -> Path:
    """The cache folder for the data under ``data_root`` (created): beside it, else in the user cache."""
    root = Path(data_root).expanduser().resolve()
    beside = root / CACHE_DIRNAME if root.is_dir() else root.parent / CACHE_DIRNAME
    if _writable(beside):
        return beside
    fallback = _user_cache_root() / hashlib.md5(str(root).encode()).hexdigest()[:16]
    fallback.mkdir(parents=True, exist_ok=True)
    log.info("'%s' is not writable: caching derived files in '%s'", beside.parent, fallback)
    return fallback


def fingerprint(*paths: str | os.PathLike[str]) -> list[list[Any]]:
    """Name, size and mtime (ns) of each path: changes whenever one of them is replaced or rewritten."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(Path(p).name), st.st_size, st.st_mtime_ns])
    return out


def cached_json(
    data_root: str | os.PathLike[str],
    name: str,
    key: Any,
    build: Callable[[], Any],
) -> Any:
    """``build()``'s JSON-serialisable result, stored as ``NAME.json`` in :func:`cache_dir` under ``key``.

    ``key`` (JSON-serialisable: typically a :func:`fingerprint` plus the options the result depends on)
    must equal the stored one, else the value is rebuilt and rewritten. Writes are atomic (temp file +
    rename), so concurrent DDP processes never read a half-written file."""
    folder = cache_dir(data_root)
    path = folder / f"{name}.json"
    key = json.loads(json.dumps(key))  # normalise tuples to lists, as they come back from disk
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["value"]
            log.info("cache '%s' is stale (its data changed): rebuilding", path)
        except (OSError, ValueError, KeyError):
            log.warning("cache '%s' is unreadable: rebuilding", path)
    value = build()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "value": value}, f)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value
