"""Training-step throughput of a model through Lightning vs a plain PyTorch loop, side by side.

Both loops train the same model (identical initial weights) with the same optimizer on the same
pre-built batches held in memory, so the difference is the framework's per-step overhead (hooks,
logging, the NaN check, the progress machinery). The runs alternate (plain, Lightning, plain, ...) and
every step's start-to-start time is recorded; each repeat is summarised by its median step (robust to
the machine's spikes) and the report gives the median of the per-repeat ratios, so slow drifts cancel.

  python experiments/bench.py                         # scnn, batch 8, 64x64, 30 timed steps x 3 repeats
  python experiments/bench.py --size 128 --batch 16 --steps 20 --repeats 5 --json out.json
  python experiments/bench.py --device cuda --size 256   # batches live on the GPU; every step is synchronised
  python experiments/bench.py --model context_encoder --size 32 --batch 64
  python experiments/bench.py --model ce_wgan --size 32 --batch 64 --steps 60   # a step = one critic step

Masks: free-form holes, except for the context encoders, which fill the 8x8 centre hole of 32x32 images
(``--size 32``; their overlap window is the mask's ``region``). The plain loops are written out by hand
below, one per kind of model: SC-NN's (forward, loss, backward, step), the L2 context encoder's, and the
GAN critic/generator schedule of the adversarial context encoder (the same ``n_critic`` and clipping; the
warm-up is off in the benchmark so every cycle is the steady-state 10 critic steps + 1 generator step).

The overhead ratio is time_per_step(Lightning) / time_per_step(plain); 1.00 means no overhead.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from inpaint.data.masks import CenterMask, FreeFormMask
from inpaint.run import CONF_DIR, build_model


def make_batches(n: int, batch: int, size: int, seed: int = 0, masks=None) -> list[dict[str, torch.Tensor]]:
    """Smooth random images with holes from ``masks`` (free-form by default; content does not change the
    cost of a dense net)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    masks = masks or FreeFormMask(ratio=(0.1, 0.5))
    out = []
    for _ in range(n):
        low = torch.rand(batch, 3, max(1, size // 8), max(1, size // 8), generator=g)
        image = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        mask = torch.stack([torch.from_numpy(masks(size, size, rng)) for _ in range(batch)])[:, None]
        out.append({"image": image.contiguous(), "mask": mask.float()})
    return out


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work, so a host clock read after it times the work itself."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def write_json(path: Path | None, results: dict) -> None:
    """Write a benchmark's results (``--json PATH``), creating the folder."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")


def to_device(batches: list[dict[str, torch.Tensor]], device: torch.device | str) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


class _StepTimer(L.Callback):
    """Start-to-start time of every step after ``warmup`` (so work between steps counts too); on CUDA each
    clock read waits for the GPU, so a step is the GPU's time, not the time to queue it."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            sync(pl_module.device)
            self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.starts.append(time.perf_counter())


def time_lightning(
    model: L.LightningModule, batches: list, warmup: int, accelerator: str = "cpu", precision: str = "32-true",
    callbacks: tuple = (), plugins: list | None = None,
) -> list[float]:
    """Step times of ``trainer.fit`` over ``batches``; ``plugins`` (e.g. a precision plugin with its own
    AMP scaler) replace ``precision``; ``callbacks`` run beside the timer."""
    timer = _StepTimer(warmup)
    trainer = L.Trainer(  # one epoch: every batch once, whatever a step counts (a GAN counts G iterations)
        accelerator=accelerator, devices=1, max_epochs=1, max_steps=-1, logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, callbacks=[timer, *callbacks],
        **({"plugins": plugins} if plugins else {"precision": precision}),
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return list(np.diff(timer.starts))


def _plain_scnn(model):
    opt = model.configure_optimizers()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        prediction = model(batch["image"], batch["mask"])
        model.loss(prediction, batch["image"], batch["mask"]).backward()
        opt.step()

    return step


def _plain_context_encoder(model):
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt

    def step(batch):
        opt.zero_grad(set_to_none=True)
        window = model.predict_window(batch["image"], batch["mask"])
        model.reconstruction_loss(window, batch["image"]).backward()
        opt.step()

    return step


def _plain_gan_context_encoder(model):
    """The critic/generator schedule written out: critic step on every batch (clipped), a G step after
    every n_critic of them, G's adversarial term against the updated critic."""
    opt_g, opt_d = model.configure_optimizers()
    state = {"critic": 0, "g": 0}
    D, adv, alpha = model.discriminator, model.adversarial, model.alpha

    def step(batch):
        image, mask = batch["image"], batch["mask"]
        g_turn = state["critic"] + 1 >= model.schedule.critic_steps(state["g"])
        with torch.set_grad_enabled(g_turn):
            window = model.predict_window(image, mask)
        real, fake = model.critic_inputs(batch, window.detach())
        opt_d.zero_grad(set_to_none=True)
        adv.discriminator_loss(D(real), D(fake)).backward()
        opt_d.step()
        if model.clip is not None:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-model.clip, model.clip)
        state["critic"] += 1
        if g_turn:
            D.requires_grad_(False)
            _, fake = model.critic_inputs(batch, window)
            loss = alpha * model.reconstruction_loss(window, image) + (1 - alpha) * adv.generator_loss(D(fake))
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            D.requires_grad_(True)
            state["critic"], state["g"] = 0, state["g"] + 1

    return step


#: the hand-written loop of each benchmarked model
PLAIN_LOOPS = {"scnn": _plain_scnn, "context_encoder": _plain_context_encoder, "ce_gan": _plain_gan_context_encoder,
               "ce_wgan": _plain_gan_context_encoder}


def time_plain(model: L.LightningModule, batches: list, warmup: int, device: str = "cpu", kind: str = "scnn") -> list[float]:
    """The loop a person would write by hand for ``kind`` (see :data:`PLAIN_LOOPS`; ``batches`` on ``device``)."""
    model.to(device).train()
    step = PLAIN_LOOPS[kind](model)
    starts = []
    for i, batch in enumerate(batches):
        if i >= warmup:
            sync(device)
            starts.append(time.perf_counter())
        step(batch)
    sync(device)
    starts.append(time.perf_counter())
    return list(np.diff(starts))


def overhead(
    model: str = "scnn", batch: int = 8, size: int = 64, steps: int = 30, warmup: int = 5, repeats: int = 3,
    device: str = "cpu", log=print,
) -> dict:
    """Lightning vs plain-loop step time of ``model=MODEL`` on ``device`` (see the module docstring)."""
    if model not in PLAIN_LOOPS:
        raise ValueError(f"--model {model}: the benchmark has plain loops for {', '.join(PLAIN_LOOPS)}")
    overrides = [f"model={model}", f"data.image_size={size}"]
    masks = None
    if model in ("context_encoder", "ce_gan", "ce_wgan"):
        overrides += ["mask=cifar_center"]
        masks = CenterMask(size // 4, overlap=4)
    if model in ("ce_gan", "ce_wgan"):
        overrides += ["model.gan.critic_warmup=null"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(0)
    base = build_model(cfg)
    batches = to_device(make_batches(steps + warmup, batch, size, masks=masks), device)
    accelerator = "gpu" if torch.device(device).type == "cuda" else "cpu"
    plain, light = [], []  # per repeat: the median step time (robust to the machine's spikes)
    for r in range(repeats):
        plain.append(statistics.median(time_plain(copy.deepcopy(base), batches, warmup, device, model)))
        light.append(statistics.median(time_lightning(copy.deepcopy(base), batches, warmup, accelerator)))
        log(f"repeat {r}: plain {plain[-1] * 1e3:.1f} ms/step, lightning {light[-1] * 1e3:.1f} ms/step, "
            f"ratio {light[-1] / plain[-1]:.3f}")
    ratios = [lt / p for lt, p in zip(light, plain, strict=True)]
    return {
        "model": model, "batch": batch, "size": size, "steps": steps, "device": device,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "lightning": L.__version__,
        "cpu": platform.processor() or platform.machine(),
        "plain_ms_per_step": statistics.median(plain) * 1e3,
        "lightning_ms_per_step": statistics.median(light) * 1e3,
        "plain_images_per_s": batch / statistics.median(plain),
        "lightning_images_per_s": batch / statistics.median(light),
        "overhead_ratio_median": statistics.median(ratios),
        "overhead_ratio_of_best": min(light) / min(plain),
        "overhead_ratios": ratios,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="scnn", help=f"a model= config with a plain loop here: {', '.join(PLAIN_LOOPS)}")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = overhead(args.model, args.batch, args.size, args.steps, args.warmup, args.repeats, args.device,
                      log=lambda line: print(line, flush=True))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
