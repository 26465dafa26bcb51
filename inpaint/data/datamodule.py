"""The DataModule every method trains on: an image source per split, a mask generator, crops.

Batch contract (DESIGN.md section 3): a dict with
  ``image`` float32 ``[B,3,H,W]`` in [0,1], ``mask`` float32 ``[B,1,H,W]`` with 1 = hole, 0 = known,
  and ``index`` (int64 ``[B]``, the sample's index in its split).

Evaluation (val/test) samples are a pure function of (config, seed, index): the crop position and the
mask of sample ``i`` come from ``np.random.default_rng([seed, split_id, i])``, so two runs, two models or
two processes of a DDP job score identical holes. Training crops and masks are a pure function of (seed, epoch, position in
the epoch) through :mod:`inpaint.data.resumable`, whose loader is part of the checkpoint: a resumed run
continues the interrupted epoch with exactly the batches it would have seen, whatever ``num_workers``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from inpaint.data.io import list_images, resize_short, resize_to_cover
from inpaint.data.masks import MaskGenerator, call_mask
from inpaint.data.resumable import ResumableDataLoader, ResumableSampler, SampleKey, train_sample_rng
from inpaint.data.sources import FolderSource, ImageSource

log = logging.getLogger(__name__)

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class InpaintDataset(Dataset):
    """Crops of one split's images, each paired with a mask.

    ``train=True``: a random crop (and optional horizontal flip) of image ``index % len(source)`` and a
    random mask. ``train=False``: ``crops_per_image`` fixed crops per image (one = centre crop) and a
    deterministic mask per sample.
    """

    def __init__(
        self,
        source: ImageSource,
        mask: MaskGenerator,
        image_size: int | Sequence[int],
        train: bool,
        seed: int = 0,
        split: str = "train",
        length: int | None = None,
        crops_per_image: int = 1,
        resize_short: int | None = None,
        hflip: bool = False,
        center_crop: int | Sequence[int] | None = None,
        crops_per_load: int = 1,
        upscale: float = 2.0,
    ) -> None:
        if len(source) == 0:
            raise ValueError(f"the {split} image source is empty")
        self.source = source
        self.mask = mask
        self.size = _pair(image_size)
        self.train = train
        self.seed = int(seed)
        self.split = split
        self.crops_per_image = max(1, int(crops_per_image))
        self.resize_short = resize_short
        self.hflip = hflip
        self.center_crop = _pair(center_crop) if center_crop else None
        self.crops_per_load = int(crops_per_load) if train else 1
        self.upscale = check_upscale(upscale)
        self._enlarged = 0  # images enlarged to cover the crop so far (in this process)
        if self.crops_per_load < 1:
            raise ValueError(f"data.train_crops_per_load must be >= 1, got {crops_per_load}")
        default_len = len(source) if train else len(source) * self.crops_per_image
        # training items are loads of `crops_per_load` crops each: `length` samples need fewer loads
        self.length = -(-int(length) // self.crops_per_load) if length else default_len
        # resized images of an in-memory source, so the resize is done once per image, not per sample
        self._prepared: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _enlarging(self, idx: int, shape: tuple[int, ...], factor: float) -> None:
        """The rule for images smaller than the crop (after ``resize_short``): enlarged up to ``data.upscale``
        times, with a warning at the 1st, 10th, 100th, ... such image of the split (the count so far); beyond
        that, refused with the file named (``data.upscale`` or a smaller ``data.image_size`` lets it through)."""
        h, w = shape[:2]
        name = self.source.name(idx)
        if factor > self.upscale:
            raise ValueError(
                f"{self.split} image {name} is {w}x{h}: it would be enlarged {factor:.1f}x to fill the "
                f"{self.size[1]}x{self.size[0]} crop (data.image_size), more than data.upscale={self.upscale:g} allows. "
                "Use larger images or a smaller data.image_size, or raise data.upscale to train on enlarged pixels"
            )
        self._enlarged += 1
        if math.log10(self._enlarged).is_integer():
            log.warning("%s image %s (%dx%d) is enlarged %.2fx to fill the %dx%d crop (%d such image load(s) in "
                        "the %s split so far; data.upscale=%g allows up to %gx)", self.split, name, w, h, factor,
                        self.size[1], self.size[0], self._enlarged, self.split, self.upscale, self.upscale)

    def eval_rng(self, index: int) -> np.random.Generator:
        """The generator that fixes evaluation sample ``index`` (crop and mask)."""
        return np.random.default_rng([self.seed, _SPLIT_IDS.get(self.split, 3), index])

    def _image(self, idx: int) -> np.ndarray:
        """Image ``idx`` resized as configured and at least the crop size."""
        if idx in self._prepared:
            return self._prepared[idx]
        img = self.source.load(idx)
        if self.center_crop is not None:
            ch, cw = min(self.center_crop[0], img.shape[0]), min(self.center_crop[1], img.shape[1])
            top, left = (img.shape[0] - ch) // 2, (img.shape[1] - cw) // 2
            img = img[top : top + ch, left : left + cw]
        img = resize_short(img, self.resize_short)
        factor = max(self.size[0] / img.shape[0], self.size[1] / img.shape[1])
        if factor > 1.0:
            self._enlarging(idx, img.shape, factor)
        img = resize_to_cover(img, *self.size)
        if self.source.in_memory:
            self._prepared[idx] = img
        return img

    def __getitem__(self, index: int | SampleKey) -> dict[str, torch.Tensor | int]:
        if self.train:
            if isinstance(index, tuple):  # from the ResumableSampler: a pure function of (seed, epoch, position)
                rng = train_sample_rng(self.seed, index)
                index = index[0]
            else:
                rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            img = self._image(index % len(self.source))
            if self.crops_per_load > 1:  # several crops of one decoded image: stacked, flattened by the collate
                samples = [self._crop_and_mask(img, rng, index) for _ in range(self.crops_per_load)]
                return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}
            return self._crop_and_mask(img, rng, index)
        return self._crop_and_mask(self._image(index // self.crops_per_image), self.eval_rng(index), index)

    def _crop_and_mask(self, img: np.ndarray, rng: np.random.Generator, index: int) -> dict[str, torch.Tensor | int]:
        th, tw = self.size
        h, w = img.shape[:2]
        if self.train or self.crops_per_image > 1:
            top = int(rng.integers(0, h - th + 1))
            left = int(rng.integers(0, w - tw + 1))
        else:
            top, left = (h - th) // 2, (w - tw) // 2
        crop = img[top : top + th, left : left + tw]
        if self.train and self.hflip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        mask = call_mask(self.mask, th, tw, rng, None if self.train else index)
        image = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255.0)
        sample = {"image": image, "mask": torch.from_numpy(mask).float()[None], "index": index}
        region = getattr(self.mask, "region", None)
        if callable(region):  # e.g. the context encoders' overlap window around a centre hole
            sample["region"] = torch.from_numpy(region(th, tw)).float()[None]
        return sample


def collate_flat(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate items that each hold ``k`` stacked samples into one batch of ``len(samples) * k``."""
    return {k: torch.cat([s[k] for s in samples]) for k in samples[0]}


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"data.image_size must be an int or [height, width], got {size}")
    return size  # type: ignore[return-value]


class InpaintDataModule(L.LightningDataModule):
    """Image sources for train/val/test + one mask generator -> batches of the contract above."""

    def __init__(
        self,
        train: ImageSource,
        val: ImageSource,
        test: ImageSource | None = None,
        mask: MaskGenerator | None = None,
        image_size: int | Sequence[int] = 64,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_samples_per_epoch: int | None = None,
        eval_crops_per_image: int = 1,
        resize_short: int | None = None,
        hflip: bool = True,
        seed: int = 0,
        pin_memory: bool = False,
        center_crop: int | Sequence[int] | None = None,
        train_crops_per_load: int = 1,
        upscale: float = 2.0,
    ) -> None:
        super().__init__()
        if mask is None:
            raise ValueError("InpaintDataModule needs a mask generator (the `mask` config group)")
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.sources = {"train": train, "val": val, "test": test if test is not None else val}
        self.mask = mask
        self.image_size = _pair(image_size)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = usable_workers(int(num_workers))
        self.train_samples_per_epoch = train_samples_per_epoch
        self.eval_crops_per_image = eval_crops_per_image
        self.resize_short = resize_short
        self.hflip = hflip
        self.seed = int(seed)
        self.pin_memory = pin_memory
        self.center_crop = center_crop
        self.train_crops_per_load = int(train_crops_per_load)
        self.upscale = check_upscale(upscale)
        if self.train_crops_per_load < 1 or self.batch_size % self.train_crops_per_load:
            raise ValueError(
                f"data.train_crops_per_load={train_crops_per_load} must be >= 1 and divide "
                f"data.batch_size={batch_size}"
            )
        self.datasets: dict[str, InpaintDataset] = {}

    @classmethod
    def from_folder(
        cls,
        root: str,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        on_corrupt: str = "error",
        **kwargs,
    ) -> InpaintDataModule:
        """A folder of images. With file lists each split reads its list; without, the files are split
        deterministically by a hash of their relative path (stable when files are added)."""
        lists = {"train": train_list, "val": val_list, "test": test_list}
        if any(lists.values()):
            missing = [k for k, v in lists.items() if v is None and k != "test"]
            if missing:
                raise ValueError(
                    f"data.{missing[0]}_list is not set: give train_list and val_list (test_list optional), "
                    "or none of them to split the folder automatically"
                )
            srcs = {k: FolderSource(root, file_list=v, on_corrupt=on_corrupt) for k, v in lists.items() if v}
            return cls(train=srcs["train"], val=srcs["val"], test=srcs.get("test"), **kwargs)
        files = list_images(root)
        splits = hash_split(files, Path(root), val_fraction, test_fraction)
        log.info(
            "data.root=%s has no file lists: split %d images by path hash into %d train / %d val / %d test",
            root, len(files), *(len(splits[k]) for k in ("train", "val", "test")),
        )
        srcs = {k: FolderSource(root, files=v, on_corrupt=on_corrupt) for k, v in splits.items()}
        return cls(train=srcs["train"], val=srcs["val"], test=srcs["test"], **kwargs)

    def _dataset(self, split: str) -> InpaintDataset:
        if split not in self.datasets:
            train = split == "train"
            self.datasets[split] = InpaintDataset(
                self.sources[split],
                self.mask,
                self.image_size,
                train=train,
                seed=self.seed,
                split=split,
                length=self.train_samples_per_epoch if train else None,
                crops_per_image=1 if train else self.eval_crops_per_image,
                resize_short=self.resize_short,
                hflip=self.hflip and train,
                center_crop=self.center_crop,
                crops_per_load=self.train_crops_per_load if train else 1,
                upscale=self.upscale,
            )
        return self.datasets[split]

    def with_mask(self, mask: MaskGenerator) -> InpaintDataModule:
        """The same images and options with another mask generator (sources are shared, not reloaded)."""
        other = copy.copy(self)
        other.mask = mask
        other.datasets = {}
        return other

    @property
    def val_dataset(self) -> InpaintDataset:
        return self._dataset("val")

    @property
    def test_dataset(self) -> InpaintDataset:
        return self._dataset("test")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
            self._dataset("val")
        if stage in (None, "validate"):
            self._dataset("val")
        if stage in (None, "test", "predict"):
            self._dataset("test")

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        dataset = self._dataset(split)
        per_load = dataset.crops_per_load
        options = dict(
            collate_fn=collate_flat if per_load > 1 else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            # the loader's own generator: creating an iterator never draws from the global torch RNG
            generator=torch.Generator().manual_seed(self.seed + _SPLIT_IDS[split]),
        )
        if train:
            drop_last = len(dataset) * per_load >= self.batch_size
            sampler = ResumableSampler(dataset, seed=self.seed, drop_last=drop_last)
            return ResumableDataLoader(
                dataset, sampler=sampler, batch_size=self.batch_size // per_load, drop_last=drop_last, **options
            )
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = EvalShardSampler(dataset) if distributed else None
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def check_upscale(upscale: float) -> float:
    """``data.upscale``: how many times an image smaller than the crop may be enlarged (>= 1)."""
    value = float(upscale)
    if not value >= 1.0:
        raise ValueError(f"data.upscale={upscale} must be >= 1 (1: never enlarge an image to fill the crop)")
    return value


def usable_workers(requested: int) -> int:
    """``data.num_workers`` capped by the CPU cores this process may use (more workers than cores only compete
    with the training process; DataLoader warns about it on every run). The cap is logged; the data order does
    not depend on the worker count."""
    if requested < 0:
        raise ValueError(f"data.num_workers={requested} must be >= 0")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested > cores:
        log.info("data.num_workers=%d capped at %d: this process may use %d CPU core(s)", requested, cores, cores)
        return cores
    return requested


class EvalShardSampler(DistributedSampler):
    """Each evaluation sample on exactly one process: rank r takes indices r, r+W, r+2W, ...

    Lightning's default DistributedSampler pads the last shard with repeated samples so every process
    gets as many; for metrics that would count some images twice. Being a DistributedSampler, this one
    is left in place by Lightning."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, shuffle=False, drop_last=False)

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def hash_split(
    files: Sequence[Path], root: Path, val_fraction: float, test_fraction: float
) -> dict[str, list[Path]]:
    """Deterministic train/val/test split of ``files`` by the md5 of each path relative to ``root``.

    Each of val and test gets ``max(1, round(fraction * n))`` files (0 when its fraction is 0), so even a
    handful of photos yields all three splits; fewer than 3 files cannot be split and raise."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"data.{name} must be in [0, 1), got {frac}")
    n = len(files)
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(
            f"data.root={root} holds {n} image(s): too few to split into train/val/test "
            f"({n_val} val + {n_test} test). Add images, or give data.train_list / data.val_list."
        )

    def key(p: Path) -> str:
        # hash the path relative to the root, so 'photos' and './photos' or '/abs/photos' split alike
        try:
            rel = p.relative_to(root)
        except ValueError:
            rel = p
        return hashlib.md5(rel.as_posix().encode()).hexdigest()

    ordered = sorted(files, key=key)
    val, test, train = ordered[:n_val], ordered[n_val : n_val + n_test], ordered[n_val + n_test :]
    if n_val == 0:
        val = test
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test or val)}
