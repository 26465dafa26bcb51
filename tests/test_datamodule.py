"""The DataModule: batch contract, deterministic evaluation samples, folder splits, bad folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_skip_report, write_photos
from PIL import Image

from inpaint.data.datamodule import InpaintDataModule, hash_split
from inpaint.data.io import ImageReadError, list_images
from inpaint.data.masks import FreeFormMask
from inpaint.data.sources import FolderSource, SampleSource


def _dm(seed=0, **kw) -> InpaintDataModule:
    args = dict(
        train=SampleSource("train"), val=SampleSource("val"), test=SampleSource("test"),
        mask=FreeFormMask(ratio=(0.1, 0.5)), image_size=32, batch_size=4, eval_crops_per_image=3,
        resize_short=64, seed=seed, train_samples_per_epoch=8,
    )
    args.update(kw)
    return InpaintDataModule(**args)


def test_batch_contract():
    dm = _dm()
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        batch = next(iter(loader))
        img, mask = batch["image"], batch["mask"]
        assert img.dtype == torch.float32 and img.shape == (4, 3, 32, 32)
        assert mask.dtype == torch.float32 and mask.shape == (4, 1, 32, 32)
        assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.01
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        ratios = mask.mean(dim=(1, 2, 3))
        assert ((ratios >= 0.1) & (ratios <= 0.5)).all()


def test_eval_samples_are_a_function_of_seed_and_index():
    a, b, c = _dm(seed=3), _dm(seed=3), _dm(seed=4)
    for dm in (a, b, c):
        dm.setup("fit")
    for i in (0, 1, 5):
        sa, sb, sc = a.val_dataset[i], b.val_dataset[i], c.val_dataset[i]
        assert torch.equal(sa["mask"], sb["mask"]) and torch.equal(sa["image"], sb["image"])
        assert not torch.equal(sa["mask"], sc["mask"])
    # the same index twice, in another order, in a fresh epoch: identical
    first = [a.val_dataset[i]["mask"] for i in range(4)]
    torch.manual_seed(123)
    again = [a.val_dataset[i]["mask"] for i in reversed(range(4))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    # different samples get different holes
    assert not torch.equal(first[0], first[1])


def test_training_samples_vary():
    dm = _dm()
    dm.setup("fit")
    ds = dm.datasets["train"]
    masks = [ds[0]["mask"] for _ in range(3)]
    assert not torch.equal(masks[0], masks[1])


def test_small_images_are_resized_up(tmp_path):
    write_photos(tmp_path / "small", 3, size=(12, 20))
    src = FolderSource(tmp_path / "small")
    dm = _dm(train=src, val=src, test=src, resize_short=None, upscale=3)  # 2.7x: past the default rule of 2x
    dm.setup("fit")
    assert dm.val_dataset[0]["image"].shape == (3, 32, 32)
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 3, 32, 32)


def test_grayscale_rgba_16bit_files_become_rgb(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA").save(root / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16)).save(root / "deep.png")
    src = FolderSource(root)
    dm = _dm(train=src, val=src, test=src, resize_short=None, eval_crops_per_image=1)
    dm.setup("fit")
    for i in range(3):
        item = dm.val_dataset[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].max() <= 1.0


def test_from_folder_splits_deterministically(photos):
    dm1 = InpaintDataModule.from_folder(str(photos), mask=FreeFormMask(), image_size=32)
    dm2 = InpaintDataModule.from_folder(str(photos), mask=FreeFormMask(), image_size=32)
    names = {k: [s.name(i) for i in range(len(s))] for k, s in dm1.sources.items()}
    assert names == {k: [s.name(i) for i in range(len(s))] for k, s in dm2.sources.items()}
    assert len(names["val"]) == 1 and len(names["test"]) == 1 and len(names["train"]) == 6
    assert not set(names["train"]) & (set(names["val"]) | set(names["test"]))


def test_hash_split_is_stable_when_files_are_added(tmp_path):
    files = write_photos(tmp_path / "p", 20)
    before = hash_split(files, tmp_path / "p", 0.1, 0.1)
    more = files + write_photos(tmp_path / "p" / "new", 2, seed=9)
    after = hash_split(more, tmp_path / "p", 0.1, 0.1)
    # a test image never moves into training when the folder grows
    assert not set(before["test"]) & set(after["train"])


def test_from_folder_with_file_lists(photos):
    files = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.*"))
    (photos / "train.txt").write_text("\n".join(f"{f} 0" for f in files[:6]) + "\n")
    (photos / "val.txt").write_text("# validation\n" + "\n".join(files[6:]) + "\n")
    dm = InpaintDataModule.from_folder(
        str(photos), train_list=str(photos / "train.txt"), val_list=str(photos / "val.txt"), mask=FreeFormMask()
    )
    assert len(dm.sources["train"]) == 6 and len(dm.sources["val"]) == 2
    with pytest.raises(ValueError, match="val_list"):
        InpaintDataModule.from_folder(str(photos), train_list=str(photos / "train.txt"), mask=FreeFormMask())


def test_missing_and_empty_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        InpaintDataModule.from_folder(str(tmp_path / "nowhere"), mask=FreeFormMask())
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"empty.*\.png"):
        InpaintDataModule.from_folder(str(tmp_path / "empty"), mask=FreeFormMask())
    write_photos(tmp_path / "two", 2)
    with pytest.raises(ValueError, match="too few"):
        InpaintDataModule.from_folder(str(tmp_path / "two"), mask=FreeFormMask())


def test_corrupt_image_is_named_or_skipped(tmp_path, caplog):
    root = tmp_path / "bad"
    write_photos(root, 3)
    (root / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    src = FolderSource(root)
    dm = _dm(train=src, val=src, test=src, resize_short=None, eval_crops_per_image=1)
    with pytest.raises(ImageReadError, match=r"img_001.png.*data\.on_corrupt=skip"):
        dm.val_dataset[1]
    skip = FolderSource(root, on_corrupt="skip")
    dm = _dm(train=skip, val=skip, test=skip, resize_short=None, eval_crops_per_image=1)
    with one_skip_report(caplog, "img_001.png"):
        item = dm.val_dataset[1]
    assert item["image"].shape == (3, 32, 32)
    assert len(list_images(root)) == 3


def test_several_crops_per_decoded_image_keep_the_batch_contract():
    """train_crops_per_load=k: each decode yields k crops (each with its own mask), batches keep their size."""
    loads = []

    class Counting(SampleSource):
        def load(self, index):
            loads.append(index)
            return super().load(index)

    dm = _dm(train=Counting("train"), batch_size=8, train_crops_per_load=4, train_samples_per_epoch=16)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2 and all(b["image"].shape == (8, 3, 32, 32) for b in batches)
    b = batches[0]
    assert b["mask"].shape == (8, 1, 32, 32) and b["index"].shape == (8,)
    assert torch.equal(b["index"][:4], b["index"][:1].repeat(4))  # 4 crops of one image ...
    assert not torch.equal(b["image"][0], b["image"][1]) and not torch.equal(b["mask"][0], b["mask"][1])
    assert len(loads) == 4  # ... from one decode each (16 samples, 4 loads)
    with pytest.raises(ValueError, match="train_crops_per_load=3 must be >= 1 and divide data.batch_size=8"):
        _dm(batch_size=8, train_crops_per_load=3)
