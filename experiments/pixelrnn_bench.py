"""Training-step time of the PixelRNN nets (issue 19): the implementation before issue 19 against the current one,
side by side in one process.

For each net (``row``: Row LSTM, ``diag``: Diagonal BiLSTM) at the configs' size (``hidden`` 96, 4 blocks), on a batch
of 32 random 32x32 images in float32 on the CPU, a *step* is what training does: the forward, the mean cross-entropy
over the sub-pixels, the backward and an Adam step. The implementations start from the same weights (the current net
loads the reference's state dict) and their first losses are checked to agree. After ``--warmup`` steps of each, the
steps alternate (reference, current, [public,] reference, current, ...) ``--repeats`` times, so a load that comes and
goes on the machine hits them alike; the report gives each one's median step and the ratio of the medians (and the
median of the per-round ratios).

* ``reference``: ``ReferenceRowLSTMNet`` / ``ReferenceDiagonalBiLSTMNet``, the code before issue 19 as kept in
  ``tests/test_pixelrnn_fast.py`` (the tests hold the current nets to its outputs and gradients).
* ``current``: :class:`inpaint.nets.pixelrnn.RowLSTMNet` / ``DiagonalBiLSTMNet``.
* ``public`` (``--reference-impl PATH``, optional): a public PyTorch implementation of the layers, from a checkout
  at ``PATH`` of DanielMinaya1/PixelRNN-PixelCNN (``PixelRNN/RowLSTM.py``, ``PixelRNN/DiagLSTM.py``; GPL-3.0, so it is
  imported from outside this repository, never copied in). Its recurrent layers are put in the same net as ours
  (our L0, 1x1 output convolutions, residual stream and head, see :class:`PublicLayerNet`) at the same ``hidden``.
  Its ``RowLSTM`` needs as many input channels as hidden units, so a 1x1 convolution 2h -> h feeds it; its
  ``DiagonalLSTM`` is one direction (with five gates: two forget gates), so the net runs two of them, the second
  on the mirrored map, mirrored back and shifted down one row, as ours.

  python experiments/pixelrnn_bench.py --repeats 5 \\
      --json experiments/results/pixelrnn_bench.json --md experiments/results/pixelrnn_bench.md \\
      --reference-impl /tmp/public_pixelrnn

Threads: torch's default (``--threads`` to set). The machine's load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
from bench import write_json  # noqa: E402

from inpaint.nets.autoregressive import LEVELS, MaskedConv2d, quantize, to_levels  # noqa: E402
from inpaint.nets.pixelrnn import DiagonalBiLSTMNet, RowLSTMNet  # noqa: E402

NETS = {"row": ("RowLSTMNet", RowLSTMNet), "diag": ("DiagonalBiLSTMNet", DiagonalBiLSTMNet)}
REFERENCE_FILE = ROOT / "tests" / "test_pixelrnn_fast.py"
PUBLIC_REPO = "DanielMinaya1/PixelRNN-PixelCNN"


def load_reference() -> object:
    """The module holding the reference nets (the implementation before issue 19)."""
    spec = importlib.util.spec_from_file_location("pixelrnn_reference", REFERENCE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PublicLayerNet(nn.Module):
    """Our net around the public recurrent layers: L0 (7x7 mask A, 3 -> 2h), ``layers`` residual blocks (the public
    layer(s) on the block input, a 1x1 mask-B convolution h -> 2h added to it), our head (ReLU, 1x1 mask B, twice).
    ``row``: a 1x1 convolution 2h -> h, then the public ``RowLSTM(h, h)``; ``diag``: the public ``DiagonalLSTM(2h, h)``
    on the map and a second one on the mirrored map, mirrored back and shifted down one row, added."""

    def __init__(self, kind: str, hidden: int, layers: int, width: int, root: Path) -> None:
        super().__init__()
        sys.path.insert(0, str(root))
        from PixelRNN.DiagLSTM import DiagonalLSTM
        from PixelRNN.RowLSTM import RowLSTM

        self.kind = kind
        h = hidden
        self.l0 = MaskedConv2d(3, 2 * h, 7, "A")
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.Module()
            if kind == "row":
                block.proj = nn.Conv2d(2 * h, h, 1)
                block.lstm = RowLSTM(h, h, width, device=torch.device("cpu"))
            else:
                block.fwd = DiagonalLSTM(2 * h, h, device=torch.device("cpu"))
                block.rev = DiagonalLSTM(2 * h, h, device=torch.device("cpu"))
            block.out = MaskedConv2d(h, 2 * h, 1, "B")
            self.blocks.append(block)
        self.head1 = MaskedConv2d(2 * h, 2 * h, 1, "B")
        self.head2 = MaskedConv2d(2 * h, 3 * LEVELS, 1, "B")

    def forward(self, x: Tensor) -> Tensor:
        feats = self.l0(x)
        for block in self.blocks:
            if self.kind == "row":
                hs = block.lstm(block.proj(feats))
            else:
                rev = block.rev(feats.flip(-1)).flip(-1)
                hs = block.fwd(feats) + F.pad(rev, (0, 0, 1, 0))[:, :, :-1]
            feats = feats + block.out(hs)
        out = self.head2(F.relu(self.head1(F.relu(feats))))
        return out.view(out.shape[0], 3, LEVELS, *out.shape[2:])


def make_step(net: nn.Module, x: Tensor, target: Tensor) -> Callable[[], float]:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> float:
        loss = F.cross_entropy(net(x).transpose(1, 2), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def timed(step: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    loss = step()
    return time.perf_counter() - start, loss


def bench_net(kind: str, args: argparse.Namespace, reference: object) -> dict:
    name, cls = NETS[kind]
    torch.manual_seed(args.seed)
    ref = getattr(reference, f"Reference{name}")(args.hidden, args.layers)
    new = cls(args.hidden, args.layers)
    new.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(args.seed)
    x = quantize(torch.rand(args.batch, 3, args.size, args.size, generator=g))
    target = to_levels(x)
    impls = {"reference": ref, "current": new}
    if args.reference_impl:
        torch.manual_seed(args.seed)
        impls["public"] = PublicLayerNet(kind, args.hidden, args.layers, args.size, Path(args.reference_impl))
    steps = {k: make_step(net, x, target) for k, net in impls.items()}
    times: dict[str, list[float]] = {k: [] for k in impls}
    first = {k: timed(s)[1] for k, s in steps.items()}  # the first step, from the shared initial weights
    if abs(first["reference"] - first["current"]) > 1e-4 * abs(first["reference"]):
        raise SystemExit(f"{kind}: first losses differ: {first}")
    for _ in range(args.warmup - 1):
        for s in steps.values():
            s()
    for _ in range(args.repeats):
        for k, s in steps.items():
            times[k].append(timed(s)[0])
            print(f"{kind} {k:9s} {times[k][-1]:7.3f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "net": name,
        "median_step_s": med,
        "steps_s": times,
        "first_loss": first,
        "speedup_current_vs_reference": med["reference"] / med["current"],
        "speedup_median_of_rounds": statistics.median(
            r / c for r, c in zip(times["reference"], times["current"], strict=True)),
    }
    if "public" in impls:
        result["speedup_current_vs_public"] = med["public"] / med["current"]
        result["params"] = {k: sum(p.numel() for p in net.parameters()) for k, net in impls.items()}
    return result


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        "# PixelRNN training-step time (issue 19)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {results['machine']['cpu']} ({results['machine']['cores']} cores), torch "
        f"{results['machine']['torch']}, {results['machine']['threads']} threads; load average (1/5/15 min) "
        f"{results['load_before']} before, {results['load_after']} after.",
        "",
        f"A step: forward + mean cross-entropy + backward + Adam, batch {cfg['batch']} of {cfg['size']}x{cfg['size']} "
        f"images, hidden {cfg['hidden']}, {cfg['layers']} blocks, float32, CPU. {cfg['warmup']} warm-up step(s) "
        f"each, then {cfg['repeats']} rounds, the implementations interleaved; medians.",
        "",
        "| net | reference (before issue 19) s/step | current s/step | speedup | speedup (median of rounds) |",
        "|---|---|---|---|---|",
    ]
    for r in results["nets"].values():
        m = r["median_step_s"]
        lines.append(f"| {r['net']} | {m['reference']:.3f} | {m['current']:.3f} | "
                     f"{r['speedup_current_vs_reference']:.2f}x | {r['speedup_median_of_rounds']:.2f}x |")
    lines += ["", "## A public implementation", ""]
    if any("public" in r["median_step_s"] for r in results["nets"].values()):
        lines += [
            f"`--reference-impl`: {results['public']['repo']} at {results['public']['commit']} "
            "(`PixelRNN/RowLSTM.py`, `PixelRNN/DiagLSTM.py`), imported from a checkout outside this repository. "
            "Its layers sit in our net (`PublicLayerNet`: our L0, 1x1 output convolutions, residual stream and "
            "head) at the same hidden size. Differences: its Row LSTM needs as many inputs as hidden units, so a 1x1 "
            "convolution 2h -> h feeds it (its i-s is then h -> 4h with 3 taps; ours 2h -> 4h), it has no colour "
            "masks; its Diagonal LSTM is one direction with five gates (two forget gates), run twice as our two "
            "directions.",
            "",
            "| net | public s/step | current s/step | current vs public | parameters (reference / current / "
            "public) |",
            "|---|---|---|---|---|",
        ]
        for r in results["nets"].values():
            if "public" in r["median_step_s"]:
                m, p = r["median_step_s"], r["params"]
                lines.append(f"| {r['net']} | {m['public']:.3f} | {m['current']:.3f} | "
                             f"{r['speedup_current_vs_public']:.2f}x | {p['reference']} / {p['current']} / "
                             f"{p['public']} |")
    else:
        lines.append("Not measured in this run (no `--reference-impl`).")
    spread = {r["net"]: max(r["steps_s"]["reference"]) / min(r["steps_s"]["reference"]) for r in results["nets"].values()}
    if max(spread.values()) > 1.3:
        lines += ["", "The reference's step time varies between rounds of the same process ("
                  + ", ".join(f"{k}: max/min {v:.1f}" for k, v in spread.items()) + "). Its backward slices one row "
                  "(one skewed column) of the gate map per step, and autograd gives each slice a zero-filled gradient "
                  "of the full map (50 MB, 100 MB for the skewed map, at this size), 128 (504) of them per step: the step's cost then depends on "
                  "whether that memory comes back from the allocator or fresh from the kernel. The medians and the "
                  "interleaving take that as it comes."]
    lines += ["", "Per-step times (s), in the order they ran:", ""]
    for r in results["nets"].values():
        for k, v in r["steps_s"].items():
            lines.append(f"* {r['net']} {k}: " + ", ".join(f"{t:.3f}" for t in v))
    return "\n".join(lines) + "\n"


def checkout_commit(path: Path) -> str:
    """The commit of a checkout: ``git rev-parse HEAD``, or a ``COMMIT`` file (an exported tree)."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = path / "COMMIT"
        return commit.read_text().strip() if commit.exists() else "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", choices=list(NETS), default=list(NETS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=96)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1, help="steps of each implementation before timing (>= 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (one step of each implementation)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-impl", default=None, metavar="PATH",
                   help=f"checkout of {PUBLIC_REPO} to time its layers too")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--md", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = load_reference()
    results = {
        "command": "python experiments/pixelrnn_bench.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "config": {k: getattr(args, k) for k in ("batch", "size", "hidden", "layers", "warmup", "repeats", "seed")},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "load_before": [round(v, 2) for v in os.getloadavg()],
    }
    if args.reference_impl:
        results["public"] = {"repo": PUBLIC_REPO, "path": str(args.reference_impl),
                             "commit": checkout_commit(Path(args.reference_impl))}
    results["nets"] = {kind: bench_net(kind, args, reference) for kind in args.nets}
    results["load_after"] = [round(v, 2) for v in os.getloadavg()]
    for r in results["nets"].values():
        print(f"{r['net']}: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["median_step_s"].items())
              + f"; speedup {r['speedup_current_vs_reference']:.2f}x")
    write_json(args.json, results)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(results))
    return results


if __name__ == "__main__":
    main()
