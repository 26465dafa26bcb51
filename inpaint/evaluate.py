"""``python -m inpaint.evaluate``: score inpainting outside training, ours or any codebase's, on our protocols.

  python -m inpaint.evaluate export --out DIR [OVERRIDES]
      Write a protocol's exact test inputs, e.g. ``protocol=cifar_center data=cifar10 data.root=...``:
      DIR/masked/NAME.png (the image with its hole zeroed), DIR/mask/NAME.png (255 = hole), DIR/gt/NAME.png (the
      ground truth) and DIR/protocol.json (the protocol, its fingerprint and a digest of every file). NAME is
      the test sample's index (000042). With ``eval.per_bucket=true`` each bucket gets its own folder (DIR/10-20/...).
  python -m inpaint.evaluate score --inputs DIR --outputs FILLED [--name NAME] [--source TEXT] [--out RUN_DIR]
      Score the filled images FILLED/NAME.{png,jpg,...,npy} (one per exported sample, same layout) with the
      protocol's metrics, buckets and fingerprint, and write a results card (RUN_DIR/card.json, card.md,
      metrics.md) that ``python -m inpaint.report`` ranks next to our runs of the same protocol.
      --gt DIR --masks DIR score folders that were not exported here (their own protocol then).

Options of score:
  --metrics M ...         field metrics to add: lpips_vgg lpips_alex fid kid ids (default: the export's eval.metrics)
  --feature-weights W     pretrained (default: the published files, see the README) or random (tests only)
  --as-is                 score the files as given; by default the known pixels are pasted back from the ground
                          truth (our protocol scores composites) and any the method changed are counted
  --known-tolerance T     a known pixel counts as changed when a channel differs by more than T (default 1/255)
  --hole-metrics          with --gt/--masks: also the hole-only metrics
  --batch-size N          images per scoring batch (default 64)

Refused, naming the files: a missing or extra output, two outputs of one sample, another size, a mask or
ground truth that differs from the exported protocol's, an unreadable image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait for a subcommand: --help stays instant
    import numpy as np
    import torch

log = logging.getLogger("inpaint.evaluate")

MANIFEST = "protocol.json"
FORMAT = "inpaint-export/1"
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy")
MAX_NAMED = 8  # files named in an error before "and N more"


def _named(items: Sequence[str]) -> str:
    items = sorted(items)
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return ", ".join(items[:MAX_NAMED]) + more


# ------------------------------------------------------------------------------------------- files
def _array_digest(arr: np.ndarray) -> str:
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()[:16]


def _on_grid(image: torch.Tensor) -> bool:
    """Whether ``[0, 1]`` values are exactly 8-bit levels (then a PNG holds them without loss)."""
    return bool((image * 255.0).round().div(255.0).eq(image).all())


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


def _levels(image: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` in [0, 1] -> ``HxWx3`` uint8: the levels the protocol digest hashes."""
    import torch

    from inpaint.evaluation.protocol import image_levels

    return image_levels(image).to(torch.uint8).permute(1, 2, 0).numpy()


def _read_rgb(path: Path) -> np.ndarray:
    """An output, ground truth or masked image as ``HxWx3`` float32 in [0, 1] (``.npy``: stored floats,
    ``HxWx3`` or ``3xHxW``, or uint8 levels)."""
    import numpy as np

    from inpaint.data.io import read_image

    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"{path}: not a readable .npy array ({e})") from e
        if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
            arr = arr.transpose(1, 2, 0)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{path}: an image array must be HxWx3 (or 3xHxW), got shape {arr.shape}")
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / np.float32(255.0)
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: holds NaN or Inf values")
        return arr
    return read_image(path).rgb.astype(np.float32) / np.float32(255.0)


def _read_mask(path: Path) -> np.ndarray:
    """A mask file as ``HxW`` float32, 1 = hole (an image: white = hole, read like the training masks by
    :func:`inpaint.data.mask_files.read_mask_file`; ``.npy``: as stored)."""
    import numpy as np

    from inpaint.data.mask_files import read_mask_file

    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        return arr.reshape(arr.shape[-2:]) if arr.ndim == 3 and arr.shape[0] == 1 else arr
    return read_mask_file(path).astype(np.float32)


def _index_files(folder: Path, what: str) -> dict[str, Path]:
    """``{stem: path}`` of the images (and ``.npy``) in ``folder``; two files of one stem are refused (a
    ``.npy`` next to a PNG of the same name wins: the exported exact floats)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in OUTPUT_SUFFIXES:
            found.setdefault(path.stem, []).append(path)
    out = {}
    for stem, paths in found.items():
        npy = [p for p in paths if p.suffix.lower() == ".npy"]
        if len(paths) > 1 and not (len(npy) == 1 and len(paths) == 2 and what != "outputs"):
            raise ValueError(f"{what}: {len(paths)} files for sample {stem!r} in {folder} "
                             f"({', '.join(p.name for p in paths)}): keep one")
        out[stem] = npy[0] if npy else paths[0]
    return out


# ------------------------------------------------------------------------------------------- export
def _compose_config(overrides: Sequence[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from inpaint.config_dir import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    choices = {str(k): str(v) for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _bucket_parts(cfg) -> list[tuple[str, Any]]:
    """``[(folder, datamodule)]``: one part, or one per bucket with ``eval.per_bucket=true``."""
    from inpaint.cli import build_datamodule, build_mask
    from inpaint.data.datamodule import InpaintDataModule
    from inpaint.evaluation.metrics import bucket_name

    datamodule = build_datamodule(cfg)
    if not cfg.eval.get("per_bucket"):
        return [("", datamodule)]
    parts = []
    for lo, hi in cfg.eval.buckets:
        dm = (datamodule.with_mask(build_mask(cfg, (lo, hi))) if isinstance(datamodule, InpaintDataModule)
              else build_datamodule(cfg, (lo, hi)))
        parts.append((bucket_name(lo, hi), dm))
    return parts


def export(overrides: Sequence[str], out: Path, command: str | None = None) -> dict[str, Any]:
    """Write the test inputs of the protocol ``overrides`` compose into ``out`` (see the module docstring)."""
    import numpy as np
    import torch

    from inpaint.evaluation.card import _container, protocol_of
    from inpaint.evaluation.protocol import DigestAccumulator, combine_digests, fingerprint_of, without_paths

    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out} exists and is not empty: give a new folder (nothing was written)")
    cfg, choices = _compose_config(overrides)
    files: dict[str, dict[str, str]] = {}
    digests: dict[str, dict] = {}
    for part, datamodule in _bucket_parts(cfg):
        datamodule.setup("test")
        acc = DigestAccumulator()
        folder = out / part if part else out
        for sub in ("masked", "mask", "gt"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for batch in datamodule.test_dataloader():
            image, mask = batch["image"], batch["mask"]
            index = batch.get("index", torch.arange(image.shape[0]))
            acc.add(image, mask)
            for img, msk, idx in zip(image, mask, index.tolist(), strict=True):
                name = f"{int(idx):06d}"
                key = f"{part}/{name}" if part else name
                hole = (msk[0] > 0.5).numpy()
                _save_png(_levels(img), folder / "gt" / f"{name}.png")
                _save_png(np.where(hole, 255, 0).astype(np.uint8), folder / "mask" / f"{name}.png")
                _save_png(_levels(img * (1.0 - msk)), folder / "masked" / f"{name}.png")
                if not _on_grid(img):  # resized in float: keep the exact values for scoring
                    np.save(folder / "gt" / f"{name}.npy", img.permute(1, 2, 0).numpy().astype(np.float32))
                if not bool(((msk == 0) | (msk == 1)).all()):
                    np.save(folder / "mask" / f"{name}.npy", msk[0].numpy().astype(np.float32))
                files[key] = {"gt": _array_digest(_levels(img)), "mask": _array_digest(hole)}
        digests[part] = DigestAccumulator.finish([acc.sums])
    digest = combine_digests(digests) if cfg.eval.get("per_bucket") else digests[""]
    protocol = protocol_of(cfg, digest, choices)  # the field metrics' part is added by whoever scores
    manifest = {
        "format": FORMAT,
        "command": command,
        "overrides": list(overrides),
        "data": {"name": choices.get("data") or str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1],
                 "config": without_paths(_container(cfg.data))},
        "eval": {"metrics": list(cfg.eval.get("metrics") or []),
                 "feature_weights": str(cfg.eval.get("feature_weights", "pretrained")),
                 "kid_subsets": int(cfg.eval.get("kid_subsets", 100)),
                 "kid_subset_size": int(cfg.eval.get("kid_subset_size", 1000))},
        "parts": [p for p in digests],
        "protocol": protocol,
        "fingerprint_without_field_metrics": fingerprint_of(protocol),
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("exported %d sample(s) of protocol %s to %s", len(files), fingerprint_of(protocol), out)
    return manifest


# ------------------------------------------------------------------------------------------- score
def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def score_part(outputs: Mapping[str, Path], gts: Mapping[str, Path], masks: Mapping[str, Path],
               expected: Mapping[str, Mapping[str, str]] | None, spec, part: str, as_is: bool,
               tolerance: float, batch_size: int) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Score one folder of outputs: ``(results, digest, checks)``."""
    import numpy as np
    import torch

    from inpaint.evaluation.evaluator import Evaluator
    from inpaint.evaluation.protocol import DigestAccumulator

    where = f" in {part}/" if part else ""
    names = sorted(gts)
    position = {n: i for i, n in enumerate(names)}  # the sample identity of a name that is not an index
    missing_masks = sorted(set(names) - set(masks))
    if missing_masks:
        raise ValueError(f"no mask{where} for ground truth(s) {_named(missing_masks)}")
    missing, extra = sorted(set(names) - set(outputs)), sorted(set(outputs) - set(names))
    if missing or extra:
        raise ValueError("the outputs do not match the test set" + where + ": "
                         + "; ".join(([f"{len(missing)} missing ({_named(missing)})"] if missing else [])
                                     + ([f"{len(extra)} extra ({_named(extra)})"] if extra else []))
                         + ". Fill exactly the exported samples, one file per sample named like its mask.")
    evaluator = Evaluator(spec)
    acc = DigestAccumulator()
    changed_images, changed_pixels, clamped, differing_masks, differing_gts = [], 0, 0, [], []
    sizes: set[tuple[int, int]] = set()
    for chunk in _batches(names, batch_size):
        outs, gt_list, mask_list = [], [], []
        for name in chunk:
            gt = _read_rgb(gts[name])
            sizes.add((int(gt.shape[0]), int(gt.shape[1])))
            mask = _read_mask(masks[name])
            out = _read_rgb(outputs[name])
            if out.shape != gt.shape:
                raise ValueError(f"{outputs[name]}: size {out.shape[1]}x{out.shape[0]}, but the ground truth "
                                 f"{gts[name].name} is {gt.shape[1]}x{gt.shape[0]}: write outputs at the input size")
            if mask.shape != gt.shape[:2]:
                raise ValueError(f"{masks[name]}: mask size {mask.shape[1]}x{mask.shape[0]} does not match the image "
                                 f"{gt.shape[1]}x{gt.shape[0]}")
            if expected is not None:
                key = f"{part}/{name}" if part else name
                levels = np.round(np.clip(gt, 0, 1) * 255).astype(np.uint8)
                if _array_digest(levels) != expected[key]["gt"]:
                    differing_gts.append(gts[name].name)
                if _array_digest(mask > 0.5) != expected[key]["mask"]:
                    differing_masks.append(masks[name].name)
            out_of_range = (out < 0) | (out > 1)
            clamped += int(out_of_range.sum())
            out = np.clip(out, 0.0, 1.0)
            known = mask[:, :, None] <= 0.5
            changed = (np.abs(out - gt) > tolerance).any(axis=2, keepdims=True) & known
            if changed.any():
                changed_images.append(outputs[name].name)
                changed_pixels += int(changed.sum())
            outs.append(out)
            gt_list.append(gt)
            mask_list.append(mask)
        if differing_masks or differing_gts:
            raise ValueError(
                "the inputs differ from the exported protocol's"
                + (f": mask(s) {_named(differing_masks)}" if differing_masks else "")
                + (f"; ground truth(s) {_named(differing_gts)}" if differing_gts else "")
                + ". Score against the exported files (or export again)."
            )
        to_t = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        out_t, gt_t = to_t(outs), to_t(gt_list)
        mask_t = torch.from_numpy(np.stack(mask_list))[:, None]
        composite = out_t if as_is else out_t * mask_t + gt_t * (1.0 - mask_t)
        index = torch.tensor([int(n) if n.isdigit() else position[n] for n in chunk])
        evaluator.update(composite, gt_t, mask_t, index)
        acc.add(gt_t, mask_t)
    results, _ = evaluator.compute("test")
    checks = {"known_pixels_changed": {"images": len(changed_images), "pixels": changed_pixels,
                                       "tolerance": tolerance, "examples": sorted(changed_images)[:MAX_NAMED]},
              "clamped_values": clamped, "image_sizes": sorted(list(hw) for hw in sizes)}
    if changed_images:
        log.warning("%d output(s)%s change %d known pixel(s) by more than %.4g (e.g. %s): %s", len(changed_images),
                    where, changed_pixels, tolerance, _named(changed_images),
                    "scored as given (--as-is)" if as_is else "pasted back from the ground truth before scoring")
    if clamped:
        log.warning("%d output value(s)%s outside [0, 1] were clamped", clamped, where)
    return results, DigestAccumulator.finish([acc.sums]), checks


def score(args: argparse.Namespace) -> dict[str, Any]:
    """``score``: see the module docstring. Returns the card."""
    from inpaint.evaluation.card import metrics_markdown, write_score_card
    from inpaint.evaluation.evaluator import EvalSpec, merge_bucket_runs
    from inpaint.evaluation.metrics import DEFAULT_BUCKETS
    from inpaint.evaluation.protocol import build_protocol, combine_digests, metric_options

    outputs_root = Path(args.outputs)
    if args.inputs:
        inputs = Path(args.inputs)
        manifest_path = inputs / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"--inputs {inputs} has no {MANIFEST}: give a folder written by "
                                    "`python -m inpaint.evaluate export`, or use --gt and --masks")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: format {manifest.get('format')!r} is not {FORMAT!r}: export again")
        protocol = json.loads(json.dumps(manifest["protocol"]))
        exported = manifest["eval"]
        options = protocol["metric_options"]
        spec = EvalSpec(buckets=tuple(tuple(b) for b in options["buckets"]), hole_metrics=options["hole_metrics"],
                        metrics=tuple(args.metrics if args.metrics is not None else exported["metrics"]),
                        feature_weights=args.feature_weights or exported["feature_weights"],
                        kid_subsets=exported["kid_subsets"], kid_subset_size=exported["kid_subset_size"])
        field = spec.field_options()
        if field:
            options["field"] = field
        else:
            options.pop("field", None)
        parts = manifest["parts"]
        expected = manifest["files"]
        data = manifest["data"]

        def folders(part: str) -> tuple[Path, Path, Path]:
            base = inputs / part if part else inputs
            gt = Path(args.gt) / part if args.gt else base / "gt"
            masks = Path(args.masks) / part if args.masks else base / "mask"
            return gt, masks, outputs_root / part if part else outputs_root
    else:
        if not (args.gt and args.masks):
            raise ValueError("score needs --inputs EXPORT_DIR (written by `inpaint.evaluate export`), or both --gt "
                             "DIR and --masks DIR")
        spec = EvalSpec(buckets=DEFAULT_BUCKETS, hole_metrics=bool(args.hole_metrics),
                        metrics=tuple(args.metrics or ()), feature_weights=args.feature_weights or "pretrained")
        parts, expected, manifest, protocol = [""], None, None, None
        data = {"name": "folder", "config": {"gt": str(args.gt)}}

        def folders(part: str) -> tuple[Path, Path, Path]:
            return Path(args.gt), Path(args.masks), outputs_root

    runs, digests, checks_all, sizes = [], {}, {}, set()
    for part in parts:
        gt_dir, mask_dir, out_dir = folders(part)
        gts, masks = _index_files(gt_dir, "ground truth"), _index_files(mask_dir, "masks")
        outputs = _index_files(out_dir, "outputs")
        if expected is not None:
            want = {k.rsplit("/", 1)[-1] for k in expected if (k.rsplit("/", 1)[0] if "/" in k else "") == part}
            if set(gts) != want:
                raise ValueError(f"ground truth folder {gt_dir} does not hold the exported samples: "
                                 f"{_named(sorted(want ^ set(gts)))} differ")
        results, digest, checks = score_part(outputs, gts, masks, expected, spec, part, args.as_is,
                                             args.known_tolerance, args.batch_size)
        runs.append((part, results))
        digests[part] = digest
        checks_all[part or "all"] = checks
        sizes.update(tuple(hw) for hw in checks["image_sizes"])
    results = merge_bucket_runs(runs) if parts != [""] else runs[0][1]
    digest = combine_digests(digests) if parts != [""] else digests[""]
    if protocol is None:
        size = sorted(sizes)[0] if len(sizes) == 1 else None
        protocol = build_protocol(digest, [int(size[0]), int(size[1])] if size else None, "folder", {},
                                  metric_options(spec.buckets, False, spec.hole_metrics, spec.field_options()))
    elif (digest.get("images"), digest.get("masks"), digest.get("count")) != (
            protocol["images"]["hash"], protocol["masks"]["hash"], protocol["images"]["count"]):
        raise ValueError("the scored ground truths and masks do not digest to the exported protocol's; export again")
    changed = {"images": sum(c["known_pixels_changed"]["images"] for c in checks_all.values()),
               "pixels": sum(c["known_pixels_changed"]["pixels"] for c in checks_all.values()),
               "tolerance": args.known_tolerance}
    source = {"outputs": str(outputs_root), "description": args.source, "inputs": args.inputs,
              "as_is": bool(args.as_is), "known_pixels_changed": changed,
              "clamped_values": sum(c["clamped_values"] for c in checks_all.values()), "checks": checks_all}
    name = args.name or outputs_root.resolve().name
    out = Path(args.out) if args.out else Path("outputs") / "scored" / name
    card = write_score_card(out, name, results, protocol, source, getattr(args, "command_line", None), data,
                            spec.random_weights if spec.metrics else None)
    (out / "metrics.md").write_text(metrics_markdown(card))
    (out / "metrics.json").write_text(json.dumps({"model": name, "task": "score", "test": results}, indent=2))
    log.info("scored %s: %d image(s), card in %s (fingerprint %s)", name, int(results.get("test/count", 0)), out,
             card["fingerprint"])
    return card


# ------------------------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inpaint.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a protocol's test inputs (masked image, mask, ground truth)")
    ex.add_argument("--out", required=True, help="a new folder")
    ex.add_argument("overrides", nargs="*", help="config overrides, as for inpaint.run (protocol=..., data=...)")
    sc = sub.add_parser("score", help="score a folder of filled images and write a results card")
    sc.add_argument("--outputs", required=True, help="the filled images, one per sample (NAME.png, or NAME.npy)")
    sc.add_argument("--inputs", help="the folder `export` wrote (protocol.json, gt/, mask/)")
    sc.add_argument("--gt", help="ground-truth folder (default: the export's gt/)")
    sc.add_argument("--masks", help="mask folder, white (>= 128) = hole, .npy: 1 = hole (default: the export's mask/)")
    sc.add_argument("--name", help="the method's name on the leaderboard (default: the outputs folder's name)")
    sc.add_argument("--source", help="where the outputs came from (codebase, commit, checkpoint), for the card")
    sc.add_argument("--out", help="the run directory for the card (default: outputs/scored/NAME)")
    sc.add_argument("--metrics", nargs="*", help="field metrics: lpips_vgg lpips_alex fid kid ids")
    sc.add_argument("--feature-weights", choices=("pretrained", "random"))
    sc.add_argument("--as-is", action="store_true", help="do not paste the known pixels back")
    sc.add_argument("--known-tolerance", type=float, default=1.0 / 255.0)
    sc.add_argument("--hole-metrics", action="store_true")
    sc.add_argument("--batch-size", type=int, default=64)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.command_line = "python -m inpaint.evaluate " + shlex.join(argv)  # for the card and the manifest
    from hydra.errors import HydraException

    from inpaint.cli import USER_ERRORS, report_user_error

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "export":
            bad = [o for o in args.overrides if "=" not in o]
            if bad:
                raise ValueError(f"not a config override: {bad[0]!r} (write key=value, e.g. protocol=cifar_center)")
            export(args.overrides, Path(args.out), args.command_line)
            print(f"exported to {args.out}")
        else:
            if args.batch_size < 1:
                raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
            card = score(args)
            from inpaint.evaluation.card import metric_tables

            print(metric_tables(card))
            print(f"\nresults card: {Path(args.out or Path('outputs') / 'scored' / card['model']) / 'card.json'}")
    except (*USER_ERRORS, FileExistsError, HydraException) as e:
        return report_user_error(e, "inpaint.evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
