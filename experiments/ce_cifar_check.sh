#!/usr/bin/env bash
# Real-data check of the context encoders on CIFAR-10 with the 8x8 centre hole ("Beyond CNNs" protocol), next to
# biharmonic and SC-NN on the same held-out images: hole MSE, l2_paper, MAEM on the hole, PSNR.
#
#   experiments/ce_cifar_check.sh CIFAR_IMAGES [OUT]
#
# CIFAR_IMAGES: a folder of CIFAR-10 images as files (e.g. train/<class>/NNNN.jpg); data=folder splits it by a
# hash of each path into 80 % train / 10 % val / 10 % test; every model is tested on the same first 2,048 test
# images (32 batches of 64). CPU-feasible schedules (a few minutes each on 2 cores), far below the paper's:
#   context_encoder  L2 autoencoder with the overlap trick and the G-VGG decoder (the GANs' generator), 1,500 steps
#   ce_gan           from that checkpoint (init_from), 400 iterations of the DCGAN objective (alpha 0.999)
#   ce_wgan          from that checkpoint, 60 generator iterations x 10 critic steps (warm-up off: its 2,500
#                    warm-up critic steps alone would exceed the budget)
#   scnn             300 steps (its default schedule), and biharmonic (no training)
# The result tables are experiments/results/ce_cifar_check.md in the repository's history.
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES [OUT]}
out=${2:-outputs/ce_cifar_check}
val_batches=8
# shellcheck source=experiments/cifar_check_common.sh
source "$(dirname "$0")/cifar_check_common.sh"
ce=(model.overlap=4 model.generator.decoder=deconv)
python -m inpaint.run "${common[@]}" model=context_encoder "${ce[@]}" trainer.max_steps=1500 \
    trainer.val_check_interval=500 hydra.run.dir="$out/context_encoder"
ckpt="$out/context_encoder/checkpoints/best.ckpt"
python -m inpaint.run "${common[@]}" model=ce_gan init_from="$ckpt" trainer.max_steps=400 \
    trainer.val_check_interval=200 hydra.run.dir="$out/ce_gan"
python -m inpaint.run "${common[@]}" model=ce_wgan init_from="$ckpt" model.gan.critic_warmup=null \
    trainer.max_steps=60 trainer.val_check_interval=300 hydra.run.dir="$out/ce_wgan"
python -m inpaint.run "${common[@]}" model=scnn trainer.max_steps=300 trainer.val_check_interval=100 \
    hydra.run.dir="$out/scnn"
python -m inpaint.run "${common[@]}" model=biharmonic task=test logger=none hydra.run.dir="$out/biharmonic"
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| model | n | hole MSE | l2_paper | l2_paper (0-255) | MAEM hole (%) | MAEM channel (%) | PSNR | SSIM |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ("context_encoder", "ce_gan", "ce_wgan", "scnn", "biharmonic"):
    t = json.loads((out / name / "metrics.json").read_text())["test"]
    print(f"| {name} | {int(t['test/count'])} | {t['test/mse_hole']:.5f} | {t['test/l2_paper']:.4f} | "
          f"{t['test/l2_paper_255']:.0f} | {t['test/maem_hole']:.2f} | {t['test/maem_channel']:.2f} | "
          f"{t['test/psnr']:.2f} | {t['test/ssim']:.4f} |")
PY
