#!/usr/bin/env bash
# Real-data check: ISNet trained briefly on CIFAR-10 images with NVIDIA irregular masks at 32x32, tested per
# hole-ratio bucket on the held-out images of experiments/cifar_nvidia_check.sh (same split, same masks, same
# pairing), so its table sits next to that script's scnn and biharmonic numbers; then ISNet with and without
# PRA side by side on the first 1,024 test images of every bucket.
#
#   experiments/isnet_cifar_check.sh CIFAR_IMAGES NVIDIA_MASKS [OUT [ISNET OVERRIDES...]]
#   experiments/isnet_cifar_check.sh DATA/train MASKS outputs/isnet_std02 model.generator.init_std=0.02
#
# Objective: the authors' journal-branch example weights (L1 1, adversarial 1, nsgan; spec 4.2), which need
# no VGG: the ImageNet VGG19 of Eq. (5)'s perceptual and style terms cannot be downloaded on the machine that
# produced experiments/results/isnet_cifar_check.md. PRA's dilation is scaled with the image: 15 px at 256
# is about 2 px at 32, so kernel 3 (1 px per side and pass).
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT]}
masks=${2:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT]}
out=${3:-outputs/isnet_cifar_check}
shift $(( $# < 3 ? $# : 3 ))
common=(data=folder "data.root=$images" data.image_size=32 data.batch_size=32 data.num_workers=1
        mask=nvidia "mask.root=$masks" eval.per_bucket=true "paths.log_dir=$out")
isnet=(model=isnet model.loss.gan=nsgan "model.loss.weights={l1:1,adv:1,perc:0,style:0,fm:0}" model.pra.kernel=3 "$@")
python -m inpaint.prepare mask=nvidia "mask.root=$masks"
python -m inpaint.run "${common[@]}" "${isnet[@]}" trainer.max_steps=400 trainer.val_check_interval=100 \
    trainer.limit_val_batches=10 logger=csv hydra.run.dir="$out/isnet_fit"
ckpt="$out/isnet_fit/checkpoints/best.ckpt"
python -m inpaint.run "${common[@]}" "${isnet[@]}" task=test ckpt_path="$ckpt" model.pra.enabled=true \
    trainer.limit_test_batches=32 logger=none hydra.run.dir="$out/isnet_pra"
python -m inpaint.run "${common[@]}" model=biharmonic task=test logger=none hydra.run.dir="$out/biharmonic"
