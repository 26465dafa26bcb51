#!/usr/bin/env bash
# Real-data check of the density models on CIFAR-10 with the 8x8 centre hole ("Beyond CNNs" protocol), next to the
# L2 context encoder and biharmonic on the same held-out images: hole MSE, MAEM, hole NLL, fill time per image;
# the `sample` decoding with several seeds (fills differ per seed, and are identical when a seed is repeated).
#
#   experiments/density_cifar_check.sh CIFAR_IMAGES [OUT]
#
# CIFAR_IMAGES: a folder of CIFAR-10 images as files (e.g. train/<class>/NNNN.jpg); data=folder splits it by a hash
# of each path into 80 % train / 10 % val / 10 % test, as experiments/ce_cifar_check.sh does; every model is tested
# on the same first 2,048 test images (32 batches of 64). CPU-feasible schedules on 2 cores, batch 32, far below
# the experiment=*_cifar ones (20-40 epochs); the PixelRNNs at reduced size (their training steps cost 5 s and
# 22 s at h = 96, K = 4 on this CPU):
#   pixelcnn        default size (width 128), 600 steps
#   row_lstm        h = 48, K = 2, 500 steps
#   diag_bilstm     h = 48, K = 2, 100 steps
#   flat_row_lstm   default size (hidden 64), 400 steps
#   context_encoder overlap 0 (CE-AE), 1,500 steps; biharmonic (no training)
# Each density model's test scores argmax (the paper's decoding) with `mean` side by side (eval.compare=[mean]).
# The result tables are experiments/results/density_cifar_check.md in the repository's history.
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES [OUT]}
out=${2:-outputs/density_cifar_check}
val_batches=4
# shellcheck source=experiments/cifar_check_common.sh
source "$(dirname "$0")/cifar_check_common.sh"
density=(callbacks.model_checkpoint.monitor=val/nll_bpd callbacks.model_checkpoint.mode=min
         "eval.compare=[mean]")
fit() {  # name steps model overrides...
    local name=$1 steps=$2; shift 2
    python -m inpaint.run "${common[@]}" "$@" trainer.max_steps="$steps" \
        trainer.val_check_interval=$((steps / 2)) hydra.run.dir="$out/$name"
}
fit pixelcnn 600 model=pixelcnn "${density[@]}"
fit row_lstm 500 model=row_lstm model.net.hidden=48 model.net.layers=2 "${density[@]}" \
    trainer.gradient_clip_val=1.0 +trainer.gradient_clip_algorithm=value
fit diag_bilstm 100 model=diag_bilstm model.net.hidden=48 model.net.layers=2 "${density[@]}" \
    trainer.gradient_clip_val=1.0 +trainer.gradient_clip_algorithm=value
fit flat_row_lstm 400 model=flat_row_lstm "${density[@]}" trainer.gradient_clip_val=1.0
fit context_encoder 1500 model=context_encoder model.overlap=0
python -m inpaint.run "${common[@]}" model=biharmonic task=test logger=none hydra.run.dir="$out/biharmonic"
# sampling: seeds 1, 2, 3 and seed 1 again, from the trained checkpoints
for name in pixelcnn flat_row_lstm; do
    overrides=$(python -c "import yaml,sys; print(' '.join(yaml.safe_load(open(sys.argv[1]))))" \
        "$out/$name/.hydra/overrides.yaml")
    for run in 1 2 3 1b; do
        # shellcheck disable=SC2086
        python -m inpaint.run $overrides task=test ckpt_path="$out/$name/checkpoints/best.ckpt" \
            eval.procedure=sample "eval.compare=[]" seed="${run%b}" logger=none \
            hydra.run.dir="$out/${name}_sample_$run"
    done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def row(name, t, report, prefix="test/"):
    nll = t.get(f"{prefix}nll_bpd_hole")
    return (f"| {name} | {int(t['test/count'])} | {t[prefix + 'mse_hole']:.5f} | {t[prefix + 'maem_hole']:.2f} | "
            f"{t[prefix + 'maem_channel']:.2f} | {t[prefix + 'psnr']:.2f} | "
            f"{'-' if nll is None else f'{nll:.3f}'} | {report['seconds_per_image'] * 1e3:.2f} |")
print("| model (decoding) | n | hole MSE | MAEM hole (%) | MAEM channel (%) | PSNR | hole NLL (bits/dim) | fill ms/image |")
print("|---|---|---|---|---|---|---|---|")
for name in ("pixelcnn", "row_lstm", "diag_bilstm", "flat_row_lstm", "context_encoder", "biharmonic"):
    report = json.loads((out / name / "metrics.json").read_text())
    t = report["test"]
    print(row(f"{name} ({report['procedure'] or 'forward'})", t, report))
    if "test/mean/psnr" in t:
        t = {**t, **{k.replace("test/mean/", "test/"): v for k, v in t.items() if k.startswith("test/mean/")}}
        print(row(f"{name} (mean)", t, report).rsplit("|", 2)[0] + "| - |")
print()
print("| sampled fills | seed | hole MSE | MAEM hole (%) | PSNR |")
print("|---|---|---|---|---|")
for name in ("pixelcnn", "flat_row_lstm"):
    for run in ("1", "2", "3", "1b"):
        t = json.loads((out / f"{name}_sample_{run}" / "metrics.json").read_text())["test"]
        print(f"| {name} | {run} | {t['test/mse_hole']:.6f} | {t['test/maem_hole']:.3f} | {t['test/psnr']:.4f} |")
PY
