"""Data-loading throughput per loader worker, for every on-disk format at the papers' resolutions.

For each dataset the script writes a small copy in the dataset's true format (the test helpers'
writers in ``tests/fixtures_datasets.py``) from real photographs (scikit-image's sample photos, cropped and resized to the
format's native size), builds the real DataModule and times, in one process (= one loader worker):

- ``decode``: ``source.load(i)``, reading and decoding one image;
- ``sample``: ``dataset[i]``, a whole training sample (decode + crop/resize + mask + tensors);
- ``mask``: the mask generator alone at the training resolution.

It reports images per second per worker, and the mask's cost as a fraction of the decode cost, so a
reader can tell how many workers a GPU step needs. Each figure is the median over ``--repeats`` passes.

  python experiments/data_bench.py                                  # all formats, synthetic NVIDIA-style masks
  python experiments/data_bench.py --masks DATA/nvidia-irregular-masks-test/testing_mask_dataset
  python experiments/data_bench.py --only cifar10 lsun --n 200 --json out.json

| dataset | native files | training sample |
|---|---|---|
| cifar10 | pickled uint8 batches, 32x32 | 32x32 |
| celeba  | JPEG 178x218 | centre 178 crop -> 256 |
| places2 | JPEG 256x256 | 256 |
| lsdir   | PNG about 2040x1360 | random 256 crop |
| lsun    | WebP in LMDB, short side 256 | 256 crop |
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpaint.data.masks import BlockMask, FreeFormMask
from inpaint.data.sources import SampleSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the dataset writers are test helpers
import fixtures_datasets as fx  # noqa: E402

FORMATS = ("cifar10", "celeba", "places2", "lsdir", "lsun")
KINDS = ("nvidia", "nvidia_files", "freeform", "blocks")


def photos(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` real photographs at ``height x width``: random crops of the sample photos, resized."""
    rng = np.random.default_rng(seed)
    pool = [
        SampleSource(split).load(i)
        for split in ("train", "val", "test")
        for i in range(len(SampleSource(split)))
    ]
    out = []
    for k in range(n):
        img = pool[k % len(pool)]
        h, w = img.shape[:2]
        scale = rng.uniform(0.5, 1.0)
        ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(img[top : top + ch, left : left + cw])
        out.append(np.asarray(crop.resize((width, height), Image.Resampling.BICUBIC)))
    return out


def build(name: str, root: Path, n: int, mask, crops: int = 1) -> object:
    """Write ``n`` images of format ``name`` under ``root``; return the real DataModule over them."""
    if name == "cifar10":
        from inpaint.data.datasets import cifar10 as m

        fx.write_cifar10(root, photos(n, 32, 32), photos(10, 32, 32, seed=1))
        return m.CIFAR10DataModule(
            root=str(root), mask=mask, image_size=32, verify_checksums=False, val_size=5
        )
    if name == "celeba":
        from inpaint.data.datasets import celeba as m

        fx.write_celeba(root, photos(n, 218, 178))
        return m.CelebADataModule(
            root=str(root),
            mask=mask,
            image_size=256,
            center_crop=178,
            resize_short=256,
            verify_checksums=False,
        )
    if name == "places2":
        from inpaint.data.datasets import places2 as m

        fx.write_places2(root, photos(n, 256, 256), photos(5, 256, 256, seed=1), photos(5, 256, 256, seed=2))
        return m.Places2DataModule(root=str(root), mask=mask, image_size=256)
    if name == "lsdir":
        from inpaint.data.datasets import lsdir as m

        fx.write_lsdir(root, photos(n, 1356, 2040), photos(2, 1356, 2040, seed=1))
        return m.LSDIRDataModule(
            root=str(root), mask=mask, image_size=256, val_size=2, batch_size=16, train_crops_per_load=crops
        )
    if name == "lsun":
        from inpaint.data.datasets import lsun as m

        fx.write_lsun(root, photos(n, 256, 342), category="bedroom", split="train", fmt="webp")
        fx.write_lsun(
            root, photos(5, 256, 342, seed=1), category="bedroom", split="val", fmt="webp", seed=1
        )
        return m.LSUNDataModule(root=str(root), mask=mask, category="bedroom", image_size=256, val_size=5)
    raise ValueError(f"unknown format {name}; choose from {FORMATS}")


def per_second(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """Calls per second of ``fn(i)`` for i in range(n): median over ``repeats`` passes (after a warm-up)."""
    fn(0)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def synth_masks(folder: Path, n: int, size: int = 512) -> Path:
    """NVIDIA-style mask files: ``size``x``size`` mode-L PNGs, 255 = hole, hole ratios 1-60 %."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        lo = 0.01 + 0.1 * (i % 6)
        m = FreeFormMask(ratio=(lo, lo + 0.09))(size, size, rng)
        Image.fromarray((m * 255).astype(np.uint8), mode="L").save(folder / f"{i:05d}.png")
    return folder


def mask_generators(mask_dir: Path) -> dict[str, object]:
    from inpaint.data.mask_files import NvidiaMask

    return {
        "nvidia": NvidiaMask(root=str(mask_dir)),
        "nvidia_files": NvidiaMask(root=str(mask_dir), packed=False),  # baseline: decode the PNG every time
        "freeform": FreeFormMask(ratio=(0.1, 0.5)),
        "blocks": BlockMask(ratio=(0.1, 0.5)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--n", type=int, default=100, help="images per format (LSDIR uses n/10: they are 2K)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--masks", type=Path, default=None, help="a folder of NVIDIA masks (default: 120 synthetic)"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)  # a loader worker is one thread

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mask_dir = args.masks or synth_masks(Path(tmp) / "masks", 120)
        gens = mask_generators(mask_dir)
        rng = np.random.default_rng(0)
        for name in args.only:
            n = max(4, args.n // 10) if name == "lsdir" else args.n
            dm = build(name, Path(tmp) / name, n, gens["nvidia"])
            dm.setup("fit")
            ds = dm.datasets["train"]
            src = ds.source
            m = len(src)
            decode = per_second(lambda i, src=src, m=m: src.load(i % m), min(n, m), args.repeats)
            sample = per_second(lambda i, ds=ds: ds[i], min(n, m), args.repeats)
            multi = None
            if name == "lsdir":  # the lsdir config's default: 4 crops per decoded 2K photo
                ds.crops_per_load = 4
                multi = 4 * per_second(lambda i, ds=ds: ds[i], min(n, m), args.repeats)
                ds.crops_per_load = 1
            th, tw = ds.size
            mask_rates = {
                k: per_second(lambda i, g=g, th=th, tw=tw: g(th, tw, rng), 50, args.repeats)
                for k, g in gens.items()
            }
            row = {
                "dataset": name,
                "size": f"{th}x{tw}",
                "decode_per_s": decode,
                "sample_per_s": sample,
                "sample_4_crops_per_decode_per_s": multi,
                **{f"mask_{k}_per_s": v for k, v in mask_rates.items()},
                **{f"mask_{k}_over_decode": decode / v for k, v in mask_rates.items()},
            }
            rows.append(row)
            print(
                f"{name:8s} {th}x{tw}: decode {decode:7.0f}/s  sample {sample:7.0f}/s  "
                + "  ".join(
                    f"{k} mask {v:6.0f}/s ({decode / v:.2f} x decode)" for k, v in mask_rates.items()
                ),
                flush=True,
            )

    print(
        "\n| dataset | sample size | decode img/s/worker | full sample img/s/worker | "
        "mask us (nvidia / nvidia unpacked / freeform / blocks) | mask / decode (same order) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        multi = r["sample_4_crops_per_decode_per_s"]
        sample = f"{r['sample_per_s']:.0f}" + (f" ({multi:.0f} with 4 crops/decode)" if multi else "")
        print(
            f"| {r['dataset']} | {r['size']} | {r['decode_per_s']:.0f} | {sample} | "
            + " / ".join(f"{1e6 / r[f'mask_{k}_per_s']:.0f}" for k in KINDS)
            + " | "
            + " / ".join(f"{r[f'mask_{k}_over_decode']:.2f}" for k in KINDS)
            + " |"
        )
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
