"""Writers of tiny dataset copies in each dataset's true on-disk format, for the tests and experiments/.

They write what the owners distribute (CelebA's JPEG folder and partition file, CIFAR-10's pickled batches,
LSDIR's PNG blocks, LSUN's LMDB, Places365's folders and lists), from arrays the caller gives, so the real
layouts and loaders of :mod:`inpaint.data.datasets` read them. Not part of the library: nothing here
downloads or is needed to use a dataset.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path

import lmdb
import numpy as np
from PIL import Image

from inpaint.data.datasets import celeba, cifar10, lsdir, places2

_CELEBA_SPLIT = {code: split for split, code in celeba.SPLIT_CODES.items()}
_CIFAR_SIDE = 32
_CIFAR_ROW = 3 * _CIFAR_SIDE * _CIFAR_SIDE  # 3072 values per image
#: where :func:`write_lsdir` puts the training folders of each layout
LSDIR_LAYOUTS = {"flat": "", "hr": "HR/train", "shards": "shard-{shard:02d}"}
_LSDIR_PER_FOLDER = 1000
_LSDIR_FOLDERS_PER_SHARD = 5


def _save_rgb(path: Path, img: np.ndarray, what: str, **options) -> None:
    """Save an HxWx3 uint8 array (the format follows the suffix; ``options`` go to PIL, e.g. quality)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **options)


# ------------------------------------------------------------------------------------------------ CelebA


def _celeba_partition(n: int) -> list[int]:
    """Contiguous codes like the real file: about 80 % train, 10 % val, 10 % test, at least one each."""
    if n < 3:
        raise ValueError(f"write_celeba needs at least 3 images (one per split), got {n}")
    n_val = max(1, round(0.1 * n))
    n_test = max(1, round(0.1 * n))
    n_train = n - n_val - n_test
    return [0] * n_train + [1] * n_val + [2] * n_test


def write_celeba(
    root: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    partition: Sequence[int] | None = None,
) -> dict[str, list[Path]]:
    """Write a CelebA tree in the real format under ``root`` and return ``{split: [image paths]}``.

    ``images``: HxWx3 uint8 arrays (the real ones are 178 wide x 218 high), saved as
    ``img_align_celeba/000001.jpg, 000002.jpg, ...`` (JPEG, quality 95) in the given order.
    ``partition``: the split code of each image (0 train, 1 val, 2 test), written to
    ``list_eval_partition.txt`` as ``000001.jpg 0`` lines; by default the images are split contiguously
    like the real file, about 80/10/10 with at least one image per split."""
    root = Path(root)
    codes = list(partition) if partition is not None else _celeba_partition(len(images))
    if len(codes) != len(images):
        raise ValueError(f"partition has {len(codes)} codes for {len(images)} images")
    if any(c not in (0, 1, 2) for c in codes):
        raise ValueError(f"partition codes must be 0, 1 or 2, got {sorted(set(codes))}")
    folder = root / celeba.IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[Path]] = {split: [] for split in celeba.SPLIT_CODES}
    lines = []
    for i, (img, code) in enumerate(zip(images, codes, strict=True), start=1):
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"image {i - 1}: expected an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
        name = f"{i:06d}.jpg"
        Image.fromarray(arr).save(folder / name, quality=95)
        lines.append(f"{name} {code}\n")
        out[_CELEBA_SPLIT[code]].append(folder / name)
    (root / celeba.PARTITION_FILE).write_text("".join(lines))
    return out


# ------------------------------------------------------------------------------------------------ CIFAR-10

_CIFAR_README = """<html><head><title>CIFAR-10 example</title></head><body>
<p>A small stand-in for cifar-10-batches-py written by the inpaint tests (tests/fixtures_datasets.py), in the
same format as the official python version of CIFAR-10; its images are not CIFAR-10 images.</p>
</body></html>
"""


def _cifar_batch(
    images: np.ndarray, labels: list[int], filenames: list[str], label: str, key_type: str
) -> dict:
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), _CIFAR_ROW))
    if key_type == "bytes":  # as the original Python 2 pickles load with encoding="bytes"
        return {
            b"batch_label": label.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f.encode() for f in filenames],
        }
    return {"batch_label": label, "labels": labels, "data": data, "filenames": filenames}


def write_cifar10(
    root: str | os.PathLike[str],
    train_images: Sequence[np.ndarray],
    test_images: Sequence[np.ndarray],
    key_type: str = "bytes",
) -> Path:
    """Write ``root/cifar-10-batches-py/`` in the real CIFAR-10 python format; return that folder.

    Args:
        root: the dataset root (created if needed); the batches go into its ``cifar-10-batches-py/``.
        train_images: 32x32x3 uint8 RGB arrays, spread in order over ``data_batch_1..5`` (as evenly as
            possible; a batch may be empty when there are fewer than five).
        test_images: 32x32x3 uint8 RGB arrays for ``test_batch``.
        key_type: ``"bytes"`` writes ``bytes`` keys and strings, as the original Python-2 pickles load
            with ``encoding="bytes"``; ``"str"`` writes ``str`` keys, as a Python-3 re-pickle would.

    Each batch is a protocol-2 pickle of ``data`` (N x 3072 uint8, R, G, B planes), ``labels``
    (``i % 10``), ``filenames`` and ``batch_label``; ``batches.meta`` and ``readme.html`` are written too.
    The files cannot match the published md5s: read them with ``verify_checksums=False``.
    """
    if key_type not in ("bytes", "str"):
        raise ValueError(f"key_type must be 'bytes' or 'str', got {key_type!r}")
    folder = Path(root) / cifar10.CIFAR10_DIRNAME
    folder.mkdir(parents=True, exist_ok=True)

    def stack(images: Sequence[np.ndarray], what: str) -> np.ndarray:
        for i, img in enumerate(images):
            if img.shape != (_CIFAR_SIDE, _CIFAR_SIDE, 3) or img.dtype != np.uint8:
                raise ValueError(f"{what}[{i}] must be a 32x32x3 uint8 array, got {img.dtype} {img.shape}")
        return np.stack(images) if len(images) else np.zeros((0, _CIFAR_SIDE, _CIFAR_SIDE, 3), np.uint8)

    train = stack(train_images, "train_images")
    test = stack(test_images, "test_images")
    batches = [
        (f, c, f"training batch {i + 1} of 5")
        for i, (f, c) in enumerate(zip(cifar10.TRAIN_BATCHES, np.array_split(train, 5), strict=True))
    ]
    batches.append(("test_batch", test, "testing batch 1 of 1"))
    offset = 0  # position in the split: train images are numbered across the five batches
    for fname, chunk, label in batches:
        offset = 0 if fname == "test_batch" else offset
        idx = range(offset, offset + len(chunk))
        offset += len(chunk)
        labels = [i % 10 for i in idx]
        filenames = [f"{cifar10.LABEL_NAMES[i % 10]}_s_{i:06d}.png" for i in idx]
        with open(folder / fname, "wb") as f:
            pickle.dump(_cifar_batch(chunk, labels, filenames, label, key_type), f, protocol=2)
    per_batch = max(len(c) for _, c, _ in batches)
    meta: dict = {
        "num_cases_per_batch": per_batch,
        "label_names": list(cifar10.LABEL_NAMES),
        "num_vis": _CIFAR_ROW,
    }
    if key_type == "bytes":
        meta = {k.encode(): v for k, v in meta.items()}
        meta[b"label_names"] = [n.encode() for n in cifar10.LABEL_NAMES]
    with open(folder / cifar10.META_FILE, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    (folder / "readme.html").write_text(_CIFAR_README)
    return folder


def write_cifar10_tarball(folder: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Pack a ``cifar-10-batches-py`` folder (e.g. from :func:`write_cifar10`) as ``dest``, a
    ``.tar.gz`` laid out like ``cifar-10-python.tar.gz``."""
    folder, dest = Path(folder), Path(dest)
    with tarfile.open(dest, "w:gz") as tf:
        for p in sorted(folder.iterdir()):
            data = p.read_bytes()
            info = tarfile.TarInfo(f"{cifar10.CIFAR10_DIRNAME}/{p.name}")
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return dest


# ------------------------------------------------------------------------------------------------ LSDIR


def write_lsdir(
    root: str | os.PathLike[str],
    train_images: Sequence[np.ndarray],
    val_images: Sequence[np.ndarray],
    layout: str = "flat",
) -> dict[str, list[Path]]:
    """Write an LSDIR tree in the real format under ``root``; returns ``{"train": [...], "test": [...]}``
    (``test``: the official validation images, which this loader tests on).

    ``train_images`` / ``val_images``: HxWx3 uint8 arrays, saved as PNG. Train image ``i`` (from 1) is
    ``NNNNNNN/<i as 7 digits>.png`` where the folder is the highest index of its block of 1,000
    (``0001000/0000001.png`` ... ``0001000/0001000.png``, ``0002000/0001001.png``, ...). ``layout``:
    ``"flat"`` puts those folders directly under ``root``, ``"hr"`` under ``HR/train/``, ``"shards"``
    under ``shard-00/``, ``shard-01/`` ... (five folders per shard). Validation images go to
    ``val1/HR/val/0000001.png ...``."""
    if layout not in LSDIR_LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {', '.join(LSDIR_LAYOUTS)}")
    root = Path(root)
    out: dict[str, list[Path]] = {"train": [], "test": []}
    for i, img in enumerate(train_images, start=1):
        block = (i - 1) // _LSDIR_PER_FOLDER
        base = root / LSDIR_LAYOUTS[layout].format(shard=block // _LSDIR_FOLDERS_PER_SHARD)
        path = base / f"{(block + 1) * _LSDIR_PER_FOLDER:07d}" / f"{i:07d}.png"
        _save_rgb(path, img, f"train image {i}")
        out["train"].append(path)
    for i, img in enumerate(val_images, start=1):
        path = root / lsdir.VAL_DIR / f"{i:07d}.png"
        _save_rgb(path, img, f"val image {i}")
        out["test"].append(path)
    return out


# ------------------------------------------------------------------------------------------------ LSUN


def lsun_key(index: int, seed: int = 0) -> str:
    """The 40-hex key :func:`write_lsun` stores image ``index`` under."""
    return hashlib.sha1(f"lsun-example:{seed}:{index}".encode()).hexdigest()


def write_lsun(
    root: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    category: str = "bedroom",
    split: str = "train",
    fmt: str = "webp",
    seed: int = 0,
) -> Path:
    """Write ``images`` into ``root/{category}_{split}_lmdb/`` in the LSUN format; return that folder.

    Args:
        root: the dataset root (created if needed).
        images: HxWx3 uint8 RGB arrays (any size; LSUN's have short side 256).
        category: the category part of the folder name.
        split: ``"train"`` or ``"val"`` (the folder name's split part).
        fmt: ``"webp"`` or ``"jpeg"``, both at quality 75, as the value encoding.
        seed: varies the keys; image ``i`` is stored under ``lsun_key(i, seed)`` (40 hex characters).

    An existing environment is added to (use another ``seed`` for new keys), so a test can grow it.
    """
    formats = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}
    if fmt not in formats:
        raise ValueError(f"fmt must be one of {sorted(formats)}, got {fmt!r}")
    folder = Path(root) / f"{category}_{split}_lmdb"
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"images[{i}] must be an HxWx3 uint8 array, got {img.dtype} {img.shape}")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, formats[fmt], quality=75)
        entries.append((lsun_key(i, seed).encode("ascii"), buf.getvalue()))
    existing = (folder / "data.mdb").stat().st_size if (folder / "data.mdb").is_file() else 0
    # room for the values, their overflow-page rounding and the B-tree; the map is only an upper bound
    map_size = existing + 2 * sum(len(k) + len(v) + 8192 for k, v in entries) + (1 << 20)
    env = lmdb.open(str(folder), map_size=map_size, subdir=True)
    try:
        with env.begin(write=True) as txn:
            for k, v in entries:
                txn.put(k, v)
    finally:
        env.close()
    return folder


# ------------------------------------------------------------------------------------------------ Places365


def write_places2(
    root: str | os.PathLike[str],
    train_images: Sequence[np.ndarray],
    val_images: Sequence[np.ndarray],
    test_images: Sequence[np.ndarray] = (),
    variant: str = "standard",
    resolution: str | int = "256",
    categories: Sequence[str] = ("a/abbey", "b/bedroom", "s/swimming_pool/indoor"),
) -> dict[str, list[Path]]:
    """Write a Places365 tree in the real format under ``root``; returns ``{split: [image paths]}``.

    ``train_images`` / ``val_images`` / ``test_images``: HxWx3 uint8 arrays, saved as JPEG (quality 95).
    The real ``*_256`` images are 256x256, but any size is written as given. Train image ``i`` goes to
    category ``categories[i % len(categories)]`` (label = its position) and is numbered from 1 within it:
    ``data_256/a/abbey/00000001.jpg``; the list ``places365_train_<variant>.txt`` names them grouped by
    category, as ``/a/abbey/00000001.jpg 0``. Validation images become
    ``val_256/Places365_val_00000001.jpg ...`` listed in ``places365_val.txt`` with a label; test images
    (only when given) ``test_256/Places365_test_00000001.jpg ...`` listed in ``places365_test.txt``.
    ``categories_places365.txt`` lists ``/a/abbey 0`` .... ``resolution="large"`` writes ``data_large/``,
    ``val_large/``, ``test_large/`` instead."""
    root = Path(root)
    variant = places2._choice("variant", variant, places2.VARIANTS)
    res = places2._choice("resolution", resolution, places2.RESOLUTIONS)
    if not categories:
        raise ValueError("write_places2 needs at least one category")
    root.mkdir(parents=True, exist_ok=True)
    per_category: list[list[tuple[str, np.ndarray]]] = [[] for _ in categories]
    for i, img in enumerate(train_images):
        k = i % len(categories)
        rel = f"{categories[k]}/{len(per_category[k]) + 1:08d}.jpg"
        per_category[k].append((rel, img))
    out: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    lines = []
    for label, items in enumerate(per_category):
        for rel, img in items:
            path = root / f"data_{res}" / rel
            _save_rgb(path, img, f"train image {rel}", quality=95)
            lines.append(f"/{rel} {label}\n")
            out["train"].append(path)
    (root / f"places365_train_{variant}.txt").write_text("".join(lines))

    out["val"] = _places_eval_split(
        root / f"val_{res}", root / places2.VAL_LIST, "val", val_images, len(categories)
    )
    if len(test_images):
        out["test"] = _places_eval_split(
            root / f"test_{res}", root / places2.TEST_LIST, "test", test_images, 0
        )

    (root / places2.CATEGORIES_FILE).write_text(
        "".join(f"/{c} {label}\n" for label, c in enumerate(categories))
    )
    return out


def _places_eval_split(
    folder: Path, list_file: Path, split: str, images: Sequence[np.ndarray], labels: int
) -> list[Path]:
    """``folder/Places365_<split>_00000001.jpg ...`` listed in ``list_file``, one name a line, followed by a
    label (cycling over ``labels`` categories) when ``labels`` > 0, as the val list has and the test list not."""
    lines, paths = [], []
    for i, img in enumerate(images, start=1):
        name = f"Places365_{split}_{i:08d}.jpg"
        _save_rgb(folder / name, img, f"{split} image {name}", quality=95)
        lines.append(f"{name} {(i - 1) % labels}\n" if labels else f"{name}\n")
        paths.append(folder / name)
    list_file.write_text("".join(lines))
    return paths
