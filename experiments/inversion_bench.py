"""mGANprior inversion throughput: our batched ``invert`` against the official loop, side by side.

One :class:`~inpaint.models.mganprior.MGANPriorModule` is built from ``conf/model/mganprior.yaml`` with an
untrained prior (``prior.random=true``; the work of an inversion does not depend on the weights' values) of
small sizes by default (32 px, z 128, ``fmap_base=512``, ``fmap_max=128``, the CPU-sized PGGAN of
``inpaint.nets.pggan``), so a CPU run finishes; every size is a flag. The same images, masks, generator,
loss, optimiser, iteration count and per-image seeds are inverted three ways:

* ``batched``: our procedure, :meth:`MGANPriorModule.invert`, on ``--images`` images in batches of
  ``--batch``: the ``B*N`` codes of a batch go through ``G1`` as one batch, the VGG features of the masked
  target are computed once per batch, no history is kept.
* ``official``: the official ``inpainting.py`` loop (spec §1.7, ``genforce/mganprior``) re-implemented here
  (:func:`official_invert`), with its default ``--video True``: one image at a time; every iteration runs the
  ``N`` codes through ``G1`` one by one (a Python loop of batch-1 passes), scales each code's features by its
  ``alpha`` row, adds them up with Python's ``sum`` and divides by ``N``, runs ``G2``, computes the masked loss
  (the VGG features of the masked target are recomputed every iteration: the official loss takes the target
  image, not its features), steps the optimiser, and appends a deep copy of the latents ``[z, alpha]`` to a
  history. After the loop it renders the result, then re-renders every history entry (one frame per
  iteration, through the same per-code loop, autograd on as in the official code) and converts each frame to
  8-bit on the host; writing the frames into an AVI file with OpenCV is the one step left out (not available
  here, and not the inversion's cost). The seconds of that re-render are reported on their own too.
* ``official_history_off``: the same loop with ``video=False``: no history, no re-render.

What is faithful. The objective is the same object: both procedures call
:meth:`MGANPriorModule.image_losses` (MSE + L1 + VGG terms on ``x * (1 - m)`` and ``y * (1 - m)``), with the
same weights; the optimiser is ``torch.optim.Adam`` / ``SGD`` with the model's ``lr`` / ``betas`` /
``momentum`` on ``[z, alpha]`` (``z ~ N(0, 1)``, ``alpha = 1/N``, the official initial values); the
composition is the official one (``(1/N) * sum_n alpha_n F_n``). What is not: (1) the codes are drawn from
the per-image generators of :meth:`~inpaint.models.base.InpaintModule.sample_generators` (the ones our
``invert`` uses), not from the global RNG as the official code does, so that the two procedures start from
the same point; (2) the official loss resizes the VGG input to ``--image_size`` 256 (nearest), a no-op for
its 256 px priors; ``image_losses`` does not resize, and for a small prior both procedures therefore compute
VGG features at the prior's resolution; (3) no PNG or AVI is written; (4) only ``alpha_init=const`` (the
official initialisation) is supported here.

Equivalence check. Image 0's raw output (``clamp((x + 1) / 2, 0, 1)``) of the official loop with history off
is compared with its raw output from the batched procedure. They compute the same function in a different op
order (one ``G1`` pass of ``B*N`` codes vs ``N`` passes of one; ``Tensor.sum`` over the codes vs Python's
left-to-right ``sum``), so in float32 they agree only up to rounding, and the optimiser amplifies rounding
over many steps (Adam at lr 1.0 normalises every step, so a 1e-7 difference in a small gradient becomes a
full-size step): on a tiny prior the float32 outputs differed by ~2e-6 after 10 steps but by ~0.04 after 300.
So the check that decides ``outputs_agree`` runs in float64 (``--check-float64``, default on; untimed): image
0 alone through both procedures, on the benchmark's device, for ``--check-iterations`` steps (default: the
run's, at most 100), where rounding stays far below ``--atol64`` (1e-9; seen: 0 to 6e-15). The timed
float32 runs' difference is reported as ``max_abs_diff`` with ``float32_within_atol`` (``--atol``, 1e-3);
with ``--no-check-float64`` that float32 comparison decides ``outputs_agree``.

Masks: ``conf/mask/blocks_25.yaml`` (the thesis's "Mask 2": one fixed block mask hiding 24-26 % of the
pixels, drawn once per image size with seed 0 and used for every image, as the official script uses one
mask file per run). Images: smooth random colour fields in [0, 1].

Arithmetic: ``--flops-only`` counts the operations per image and step of each procedure (convolutions and
matrix products, forward and backward: :func:`flops_per_image_iteration`) instead of timing; the full run
reports them too. Their ratio (``compute_bound_speedup``, 1.5x at 32 and 64 px with N = 20) is all a machine
bound by arithmetic could gain; a larger measured speedup is per-call overhead removed by batching.

Timing: the three procedures run one after the other on all images, and ``--repeats`` rounds alternate
their order; each procedure's time is the median over rounds. One untimed warm-up (2 iterations of every
procedure on one image) comes first. On CUDA the clock reads wait for the GPU. The speedups are
``batched_images_per_hour / official*_images_per_hour``; the issue's target is >= 10x the official loop.

  python experiments/inversion_bench.py --json experiments/results/inversion_bench_cpu.json
  python experiments/inversion_bench.py --flops-only --iterations 50 --json experiments/results/inversion_flops_32px.json
  python experiments/inversion_bench.py --device cuda --resolution 256 --z-dim 512 --fmap-base 8192 \\
      --fmap-max 512 --codes 20 --iterations 200 --images 16 --batch 16 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import sync, write_json  # noqa: E402

from inpaint.cli import CONF_DIR  # noqa: E402
from inpaint.models.mganprior import MGANPriorModule  # noqa: E402

PROCEDURES = ("batched", "official", "official_history_off")
TARGET_SPEEDUP = 10.0



def build_model(args) -> MGANPriorModule:
    """``conf/model/mganprior.yaml`` with a random prior of the benchmark's sizes and the run's budget."""
    cfg = OmegaConf.load(CONF_DIR / "model" / "mganprior.yaml")
    cfg.prior.official = None
    cfg.prior.random = True
    cfg.prior.resolution, cfg.prior.z_dim = args.resolution, args.z_dim
    cfg.prior.fmap_base, cfg.prior.fmap_max = args.fmap_base, args.fmap_max
    cfg.num_codes, cfg.iterations, cfg.progress = args.codes, args.iterations, False
    if args.compose_res:
        cfg.compose_res = args.compose_res
    cfg.loss.vgg = args.vgg
    cfg.optimizer.name = args.optimizer
    if args.lr is not None:
        cfg.optimizer.lr = args.lr
    opts = OmegaConf.to_container(cfg, resolve=True)
    opts.pop("_target_")
    model = MGANPriorModule(**opts)
    if model.alpha_init != "const" or model.attention_type != "none" or model.early_stop or model.seconds:
        raise ValueError("the benchmark reproduces plain mGANprior: alpha_init=const, no attention, no budget")
    return model


def make_data(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` smooth images ``[n,3,size,size]`` in [0, 1] and the fixed 25 % block mask ``[n,1,size,size]``."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(1, size // 8), max(1, size // 8), generator=g)
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    mask_gen = instantiate(OmegaConf.load(CONF_DIR / "mask" / "blocks_25.yaml"))
    mask = torch.from_numpy(mask_gen(size, size, np.random.default_rng(0)))
    return images.contiguous(), mask[None, None].expand(n, 1, size, size).contiguous()


# ----------------------------------------------------------------------------------- the official loop
def official_forward(model: MGANPriorModule, z: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The official multi-code generator: ``z`` ``[1, N, z_dim]``, ``alpha`` ``[1, N, C]``; each code through
    ``G1`` on its own, scaled by its ``alpha`` row, summed left to right, divided by ``N``, through ``G2``."""
    g, layer, n = model.generator, model.layer, z.shape[1]
    scaled = []
    for j in range(n):
        features = g.g1(z[:, j, :].reshape(-1, g.z_dim, 1, 1), layer)
        scaled.append(features * alpha[:, j, :].reshape(-1, features.shape[1], 1, 1))
    return g.g2(sum(scaled) / n, layer)


def official_init(model: MGANPriorModule, index: int, dtype: torch.dtype, device: torch.device):
    """The official initial values (``z ~ N(0, 1)``, ``alpha = 1/N``), ``z`` drawn from image ``index``'s
    generator exactly as the batched procedure draws it, so both start from the same point."""
    gen = model.sample_generators(torch.tensor([index]))[0]
    n, c = model.num_codes, model.feature_shape[0]
    z = torch.randn(n, model.generator.z_dim, generator=gen, dtype=torch.float64).to(device, dtype)
    alpha = torch.full((n, c), 1.0 / n, dtype=dtype, device=device)
    return z[None], alpha[None]


def to_frame(image: torch.Tensor) -> np.ndarray:
    """A rendered frame as the official video writer receives it: HxWx3 uint8 on the host."""
    x = ((image[0].detach() + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


def official_invert(model: MGANPriorModule, image: torch.Tensor, mask: torch.Tensor, index: int,
                    history: bool) -> tuple[torch.Tensor, float]:
    """One image (``[1,3,H,W]`` in [0, 1], mask ``[1,1,H,W]``, 1 = hole) through the official loop; returns
    the raw output in [0, 1] and the seconds spent re-rendering the history (0 without it)."""
    device, dtype = image.device, image.dtype
    z, alpha = official_init(model, index, dtype, device)
    latents = [z.requires_grad_(True), alpha.requires_grad_(True)]
    if model.optimizer_name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(latents, lr=model.lr, betas=model.betas)
    else:
        opt = torch.optim.SGD(latents, lr=model.lr, momentum=model.momentum)
    target, known = image * 2.0 - 1.0, 1.0 - mask
    frames: list[list[torch.Tensor]] = []
    with torch.enable_grad():
        for _ in range(model.iterations):
            out = official_forward(model, *latents)
            opt.zero_grad()
            loss = model.image_losses(out, target, known).sum()  # target features recomputed every time
            loss.backward()
            opt.step()
            if history:
                frames.append(copy.deepcopy(latents))
        raw = ((official_forward(model, *latents).detach() + 1.0) / 2.0).clamp(0.0, 1.0)
        rerender = 0.0
        if history:
            sync(device)
            start = time.perf_counter()
            for sample in frames:
                to_frame(official_forward(model, *sample))
            sync(device)
            rerender = time.perf_counter() - start
    return raw, rerender


# ----------------------------------------------------------------------------------- timing
def run_batched(model, images, masks, batch: int) -> tuple[torch.Tensor, float]:
    raws = []
    for start in range(0, images.shape[0], batch):
        stop = min(start + batch, images.shape[0])
        model.invert(images[start:stop], masks[start:stop], torch.arange(start, stop))
        raws.append(model.last_raw)
    return torch.cat(raws), 0.0


def run_official(model, images, masks, history: bool) -> tuple[torch.Tensor, float]:
    raws, rerender = [], 0.0
    for i in range(images.shape[0]):
        raw, seconds = official_invert(model, images[i : i + 1], masks[i : i + 1], i, history)
        raws.append(raw)
        rerender += seconds
    return torch.cat(raws), rerender


def run(name: str, model, images, masks, batch: int) -> tuple[torch.Tensor, float]:
    if name == "batched":
        return run_batched(model, images, masks, batch)
    return run_official(model, images, masks, history=name == "official")


def timed(name, model, images, masks, batch, device) -> tuple[float, torch.Tensor, float]:
    sync(device)
    start = time.perf_counter()
    raw, rerender = run(name, model, images, masks, batch)
    sync(device)
    return time.perf_counter() - start, raw, rerender


class FlopCount(TorchDispatchMode):
    """Sums the operations of every aten call that torch's FLOP formulas cover (convolutions and matrix
    products, forward and backward). ``FlopCounterMode`` itself is not used: its module tracker refuses the
    generator calls made under ``no_grad`` (the official history's re-render)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def flops_per_image_iteration(model: MGANPriorModule, images: torch.Tensor, masks: torch.Tensor,
                               batch: int) -> dict[str, float]:
    """Floating-point operations (convolutions and matrix products, forward and backward, as counted by
    torch's FLOP formulas, :class:`FlopCount`) per image and optimisation step of each procedure.

    Each procedure is counted on ``batch`` images with 2 and with 4 iterations; the difference over 2 steps
    leaves out the one-off work (the batched target's VGG features, the final render). Their ratio is the
    speedup a machine bound by arithmetic alone could give: what remains above it in the timings is per-call
    overhead that batching removes (small kernels, Python, the latent history's copies)."""
    budget, n = model.iterations, min(batch, images.shape[0])
    counts: dict[str, float] = {}
    for name in PROCEDURES:
        totals = []
        for steps in (2, 4):
            model.configure_inference(iterations=steps)
            with FlopCount() as counter:
                run(name, model, images[:n], masks[:n], n)
            totals.append(counter.total)
        counts[name] = (totals[1] - totals[0]) / 2 / n
    model.configure_inference(iterations=budget)
    return counts


def float64_check(model: MGANPriorModule, image: torch.Tensor, mask: torch.Tensor, iterations: int) -> float:
    """Max abs difference of image 0's raw outputs, batched vs official (history off), in float64, after
    ``iterations`` steps."""
    m64 = copy.deepcopy(model).double()
    m64.configure_inference(iterations=iterations)
    img, msk = image.double(), mask.double()
    m64.invert(img, msk, torch.arange(1))
    official, _ = official_invert(m64, img, msk, 0, history=False)
    return float((m64.last_raw - official).abs().max())


def setup(args, model: MGANPriorModule, images: torch.Tensor, masks: torch.Tensor, device: torch.device) -> dict:
    """The settings and machine a result was measured with."""
    return {
        "resolution": args.resolution, "z_dim": args.z_dim, "fmap_base": args.fmap_base,
        "fmap_max": args.fmap_max, "codes": model.num_codes, "layer": model.layer,
        "feature_shape": list(model.feature_shape), "iterations": args.iterations, "images": args.images,
        "batch": args.batch, "vgg": args.vgg, "perceptual_weight": model.w_perceptual,
        "optimizer": model.optimizer_name, "lr": model.lr, "repeats": args.repeats,
        "masks": "conf/mask/blocks_25.yaml (one fixed block mask, seed 0)",
        "hole_ratio": float(masks[0].mean()), "dtype": str(images.dtype), "device": str(device),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
        "processor": platform.processor(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--resolution", type=int, default=32, help="prior resolution (power of two)")
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--fmap-base", type=int, default=512)
    p.add_argument("--fmap-max", type=int, default=128)
    p.add_argument("--compose-res", type=int, default=None,
                   help="composition resolution (default: the config's, resolution / 8, at least 4)")
    p.add_argument("--codes", type=int, default=20, help="N codes per image (thesis 20)")
    p.add_argument("--iterations", type=int, default=100, help="optimisation steps per image (official 3000)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch", type=int, default=8, help="images per batch of the batched procedure")
    p.add_argument("--vgg", choices=["random", "none"], default="random",
                   help="perceptual term with an untrained VGG16 (same cost as ImageNet weights), or none")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="adam: thesis; sgd: official")
    p.add_argument("--lr", type=float, default=None, help="default: the config's (1.0)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three procedures, order alternating")
    p.add_argument("--atol", type=float, default=1e-3, help="tolerance of the float32 output check ([0, 1] scale)")
    p.add_argument("--check-float64", action=argparse.BooleanOptionalAction, default=True,
                   help="decide outputs_agree by comparing image 0's outputs in float64 (untimed)")
    p.add_argument("--check-iterations", type=int, default=None,
                   help="steps of the float64 check (default: --iterations, at most 100)")
    p.add_argument("--atol64", type=float, default=1e-9, help="tolerance of the float64 output check")
    p.add_argument("--flops-only", action="store_true",
                   help="count the arithmetic per image and step of each procedure (no timing) and stop")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = build_model(args).to(device)
    model.ensure_prior()
    images, masks = make_data(args.images, args.resolution)
    images, masks = images.to(device), masks.to(device)

    if args.flops_only:
        flops = flops_per_image_iteration(model, images, masks, args.batch)
        results = {"flops_per_image_iteration": flops, "compute_bound_speedup": flops["official"] / flops["batched"],
                   "_setup": setup(args, model, images, masks, device)}
        print("FLOPs per image and step: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in flops.items())
              + f"; arithmetic alone allows {results['compute_bound_speedup']:.2f}x", flush=True)
        write_json(args.json, results)
        return results

    budget = model.iterations
    model.configure_inference(iterations=min(2, budget))  # warm-up: one-time costs (VGG build, kernels) out of the timings
    for name in PROCEDURES:
        run(name, model, images[:1], masks[:1], 1)
    model.configure_inference(iterations=budget)

    seconds: dict[str, list[float]] = {name: [] for name in PROCEDURES}
    rerender: list[float] = []
    outputs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        for name in (PROCEDURES if r % 2 == 0 else PROCEDURES[::-1]):
            s, raw, rr = timed(name, model, images, masks, args.batch, device)
            seconds[name].append(s)
            outputs.setdefault(name, raw)
            if name == "official":
                rerender.append(rr)
            print(f"round {r + 1}/{args.repeats} {name:21s} {s:9.3f} s  ({s / args.images:.3f} s/image)",
                  flush=True)

    flops = flops_per_image_iteration(model, images, masks, args.batch)
    per_hour = {name: 3600.0 * args.images / statistics.median(v) for name, v in seconds.items()}
    diff = float((outputs["batched"][0] - outputs["official_history_off"][0]).abs().max())
    diff_history = float((outputs["official"][0] - outputs["official_history_off"][0]).abs().max())
    results: dict = {
        "batched_images_per_hour": per_hour["batched"],
        "official_images_per_hour": per_hour["official"],
        "official_history_off_images_per_hour": per_hour["official_history_off"],
        "speedup": per_hour["batched"] / per_hour["official"],
        "speedup_vs_history_off": per_hour["batched"] / per_hour["official_history_off"],
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": per_hour["batched"] / per_hour["official"] >= TARGET_SPEEDUP,
        "flops_per_image_iteration": flops,
        "compute_bound_speedup": flops["official"] / flops["batched"],
        "official_rerender_s_per_image": statistics.median(rerender) / args.images,
        "seconds": seconds,
        "outputs_agree": diff <= args.atol,
        "max_abs_diff": diff,
        "atol": args.atol,
        "float32_within_atol": diff <= args.atol,
        "max_abs_diff_history_on_vs_off": diff_history,
        "_setup": setup(args, model, images, masks, device),
    }
    if args.check_float64:
        steps = min(budget, 100) if args.check_iterations is None else args.check_iterations
        diff64 = float64_check(model, images[:1], masks[:1], steps)
        results.update(outputs_agree=diff64 <= args.atol64, max_abs_diff_float64=diff64, atol64=args.atol64,
                       check_iterations=steps)
    print(f"images/hour: batched {per_hour['batched']:.1f}, official {per_hour['official']:.1f} "
          f"(history off {per_hour['official_history_off']:.1f}); speedup {results['speedup']:.1f}x "
          f"({results['speedup_vs_history_off']:.1f}x vs history off; arithmetic alone would allow "
          f"{results['compute_bound_speedup']:.2f}x); outputs agree: {results['outputs_agree']} "
          f"(max abs diff float32 {diff:.3g}"
          + (f", float64 {results['max_abs_diff_float64']:.3g} after {results['check_iterations']} steps)"
             if args.check_float64 else ")"), flush=True)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
