#!/usr/bin/env bash
# Real-data check: SC-NN trained briefly on CIFAR-10 images with NVIDIA irregular masks resized to 32x32,
# tested per hole-ratio bucket on a held-out part of the images, next to the biharmonic baseline.
#
#   experiments/cifar_nvidia_check.sh CIFAR_IMAGES NVIDIA_MASKS [OUT]
#
# CIFAR_IMAGES: a folder of the CIFAR-10 images as files (e.g. train/<class>/NNNN.jpg); data=folder splits
# it by a hash of each path into 80 % train / 10 % val / 10 % test. NVIDIA_MASKS: .../testing_mask_dataset.
# The result tables are experiments/results/cifar_nvidia_check.md in the repository's history.
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT]}
masks=${2:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT]}
out=${3:-outputs/cifar_nvidia_check}
common=(data=folder "data.root=$images" data.image_size=32 data.batch_size=32 data.num_workers=1
        mask=nvidia "mask.root=$masks" eval.per_bucket=true "paths.log_dir=$out")
python -m inpaint.prepare mask=nvidia "mask.root=$masks"
python -m inpaint.run "${common[@]}" model=scnn trainer.max_steps=400 trainer.val_check_interval=100 \
    trainer.limit_val_batches=10 logger=csv
python -m inpaint.run "${common[@]}" model=biharmonic task=test logger=none
