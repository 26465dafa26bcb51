#!/usr/bin/env bash
# The "Beyond CNNs" comparisons with real training on a CPU, each one `-m` sweep with three seeds a cell, its table
# written by the sweep itself (inpaint.sweeps.TrialsTable, <sweep dir>/tables.md):
#   ce_table1       Table 1: CE-AE bottleneck 256/512/1024/2048 x max-pool/strided encoder (24 jobs)
#   ce_overlap      CE-AE vs CE-AE-ov, the overlap trick (6 jobs)
#   ce_adversarial  L2 (CE-AE-ov) vs CE-GAN vs CE-WGAN from scratch, the same generator iterations (9 jobs)
#
#   experiments/ce_sweeps.sh CIFAR_IMAGES [STEPS [ADV_STEPS [OUT [RESULTS]]]]
#
# CIFAR_IMAGES: a folder of the CIFAR-10 images as files (train/<class>/NNNN.jpg). STEPS (default 300) is every
# L2 job's budget (batch 64, the rate cosine-annealed to 0 over it: experiment=floor_ce's schedule); ADV_STEPS
# (default 300) the generator iterations of the adversarial sweep (batch 32, each model's own optimizers). The
# sweep directories (with checkpoints) go to OUT (default outputs/ce_sweeps); the tables are copied to RESULTS
# (default experiments/results/ce_sweeps).
set -euo pipefail
images=${1:?usage: $0 CIFAR_IMAGES [STEPS [ADV_STEPS [OUT [RESULTS]]]]}
steps=${2:-300}
adv_steps=${3:-300}
out=${4:-outputs/ce_sweeps}
results=${5:-experiments/results/ce_sweeps}
mkdir -p "$results"
for sweep in ce_table1 ce_overlap ce_adversarial; do
    budget=$steps
    [[ $sweep == ce_adversarial ]] && budget=$adv_steps
    cmd=(python -m inpaint.run -m "experiment=$sweep" "data.root=$images" "trainer.max_steps=$budget" logger=csv
         "hydra.sweep.dir=$out/$sweep")
    echo "${cmd[*]}"
    start=$(date +%s)
    "${cmd[@]}"
    {
        echo "Command: \`${cmd[*]}\` ($(( ($(date +%s) - start) / 60 )) minutes on $(nproc) cores)"
        echo
        cat "$out/$sweep/tables.md"
        echo
        cat "$out/$sweep/trials.md"
    } | sed "s|$PWD/||g" > "$results/$sweep.md"  # the committed table names no directory of this machine
done
