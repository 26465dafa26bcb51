#!/usr/bin/env bash
# GPU check of inpaint in under 8 minutes (experiments/gpu_check.py says what it measures): ISNet latency per
# precision with and without PRA, ISNet training-iteration time and peak memory at batch 8, 20 iterations
# under 16-mixed with a moving loss scale, Lightning's overhead on the GPU, the density models' training step
# and fill, mGANprior's batched-vs-official inversion throughput and batched == one-by-one check, and the
# environment. Writes gpu_check.json, gpu_check.md and gpu_check.log to $OUT if set, else to
# experiments/results/.
#
#   experiments/gpu_check.sh [extra gpu_check.py arguments, e.g. --only latency train]
#
# On any machine with an NVIDIA GPU and this project installed (`make setup`, or torch for its CUDA and then
# `pip install -e ".[dev]"`), run it from the checkout:
#
#   bash experiments/gpu_check.sh --no-budgets        # every case to its end, no time limits
#
# With the per-section budgets (the default) the whole check fits a lent machine's few minutes; below is how the
# project's remote GPU tool runs it.
#
# The lent GPU machine has torch, lightning and torchmetrics but not hydra-core, omegaconf, antlr4 or kornia: they
# travel as wheels in .whl/ at the repository root (ignored by git). Fill it here, once, from the repo root
# (antlr4-python3-runtime 4.9.3 exists only as a source archive, so it is built into a wheel here):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     hydra-core==1.3.8 omegaconf==2.3.1 kornia==0.9.0 kornia_rs==0.2.0
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
#
# Then the device call (the device tool's `run`), with a timeout that leaves room for the install:
#
#   run(command="bash experiments/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# The results come back under the call's files_at; copy them to experiments/results/ and commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-experiments/results}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
python3 -c "import hydra, omegaconf, kornia" || {
    echo "hydra-core, omegaconf or kornia missing: fill .whl/ as this script's header says and carry it" >&2
    exit 1
}
# every section has its own budget inside gpu_check.py (445 s together) and 470 s is the backstop; with
# --no-budgets (a maintainer's own machine) nothing is timed out
backstop=(timeout 470)
for arg in "$@"; do [[ $arg == --no-budgets ]] && backstop=(); done
"${backstop[@]}" python3 experiments/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
