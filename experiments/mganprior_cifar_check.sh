#!/usr/bin/env bash
# Real-data check of mGANprior on CIFAR-10 (CPU): a 32x32 PGGAN prior trained on the training split, then GAN
# inversion without attention, with self-attention and with CBAM on held-out images under the thesis's three block
# masks (12 / 25 / 40 % holes; the mask generators are size-relative, so they scale to 32 px), next to biharmonic:
# composite and raw PSNR/SSIM, time per image.
#
#   experiments/mganprior_cifar_check.sh CIFAR_IMAGES [OUT [PRIOR_STEPS [PHASE_IMAGES]]]
#   experiments/mganprior_cifar_check.sh data/train outputs/mganprior_long 12000 20000   # a longer-trained prior
#
# CIFAR_IMAGES: a folder of CIFAR-10 images as files; data=folder splits it by path hash (80/10/10), as the other
# CIFAR checks do. CPU-feasible settings, far below the thesis (a 19 M-image PGGAN, 3,000 iterations per image):
#   pggan      experiment=pggan_cifar's network, PRIOR_STEPS (2,000) steps of batch 16 (32,000 images):
#              PHASE_IMAGES (4 k) images per stabilise / fade phase, so the growing ends (lod 0) after 7 phases
#              (24 k images); the last checkpoint is used
#   mganprior  N = 20 codes, 100 iterations, the ImageNet VGG16 cannot be downloaded here: model.loss.vgg=random
#              (the perceptual term weighs 1e-4); the first 64 test images (4 batches of 16)
#   grid       the first 6 of those test images under Mask 2 (blocks_25), inverted by mGANprior / + sa / + cbam
#              (the same settings) and biharmonic: OUT/inversions.png (experiments/mganprior_inversions.py)
# The result tables are experiments/results/mganprior_cifar_check.md in the repository's history.
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES [OUT [PRIOR_STEPS [PHASE_IMAGES]]]}
out=${2:-outputs/mganprior_cifar_check}
steps=${3:-2000}       # PGGAN training steps of batch 16
phase=${4:-4000}       # real images per stabilise and per fade phase (7 phases grow 4x4 -> 32x32)
data=(data=folder "data.root=$images" data.image_size=32 data.resize_short=null data.batch_size=16
      data.num_workers=1 "paths.log_dir=$out")
python -m inpaint.run experiment=pggan_cifar "${data[@]}" trainer.max_steps="$steps" trainer.val_check_interval=500 \
    model.schedule.stabilise_images="$phase" model.schedule.fade_images="$phase" trainer.limit_val_batches=4 \
    model.swd.images=64 logger=csv test_after_fit=false hydra.run.dir="$out/pggan"
prior="$out/pggan/checkpoints/last.ckpt"
for mask in blocks_12 blocks_25 blocks_40; do
    for attention in none sa cbam; do
        python -m inpaint.run model=mganprior task=test "${data[@]}" mask=$mask trainer.limit_test_batches=4 \
            model.prior.official=null "model.prior.checkpoint=$prior" model.loss.vgg=random model.progress=false \
            +eval.inference.iterations=100 model.attention.type=$attention logger=none \
            hydra.run.dir="$out/mganprior_${mask}_${attention}"
    done
    python -m inpaint.run model=biharmonic task=test "${data[@]}" mask=$mask trainer.limit_test_batches=4 \
        logger=none hydra.run.dir="$out/biharmonic_$mask"
done
python experiments/mganprior_inversions.py --out "$out/inversions.png" --images 6 -- "${data[@]}" \
    mask=blocks_25 model.prior.official=null "model.prior.checkpoint=$prior" model.loss.vgg=random \
    +eval.inference.iterations=100
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| mask | method | composite PSNR | composite SSIM | raw PSNR | raw SSIM | s/image |")
print("|---|---|---|---|---|---|---|")
for mask in ("blocks_12", "blocks_25", "blocks_40"):
    for name in ("none", "sa", "cbam", "biharmonic"):
        d = out / (f"biharmonic_{mask}" if name == "biharmonic" else f"mganprior_{mask}_{name}")
        r = json.loads((d / "metrics.json").read_text())
        t = r["test"]
        raw = (f"{t['test/raw/psnr']:.2f} | {t['test/raw/ssim']:.4f}" if "test/raw/psnr" in t else "- | -")
        label = "biharmonic" if name == "biharmonic" else f"mGANprior + {name}" if name != "none" else "mGANprior"
        print(f"| {mask} | {label} | {t['test/psnr']:.2f} | {t['test/ssim']:.4f} | {raw} | "
              f"{r['seconds_per_image']:.3f} |")
PY
