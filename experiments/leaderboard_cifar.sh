#!/usr/bin/env bash
# The CIFAR-10 leaderboard, end to end on a CPU: every method of the framework trained and tested on the same
# CIFAR-10 images at 32x32 (experiment=leaderboard_cifar) under two protocols, then `python -m inpaint.report`.
#
#   experiments/leaderboard_cifar.sh CIFAR_IMAGES NVIDIA_MASKS [OUT [REPORT_DIR [OVERRIDES...]]]
#
# CIFAR_IMAGES: a folder of the CIFAR-10 images as files (e.g. train/<class>/NNNN.jpg), read with data=folder,
# split by path hash 80/10/10 as the other CIFAR checks do (for the python-format archive use data=cifar10
# data.root=... as OVERRIDES instead). NVIDIA_MASKS: .../testing_mask_dataset. OVERRIDES go to every run
# (e.g. trainer.max_steps=2 trainer.limit_test_batches=1 for a smoke run).
#
# Protocols: center = the paper's 8x8 centre hole (protocol=cifar_center); nvidia = the NVIDIA masks, one test
# per hole-ratio bucket (protocol=nvidia_buckets). The first 128 test images (4 batches of 32), per bucket.
# CPU schedules (the report's steps column says how long), batch 32 unless said:
#   biharmonic                            no training
#   scnn                                  experiment=floor_scnn trainer.max_steps=4000 per protocol: cosine-annealed
#                                         Adam, hole loss (about 23 minutes), tested in the leaderboard's frame
#   context_encoder                       experiment=floor_ce (CE-AE, no overlap): 3,000 steps of batch 64,
#                                         cosine-annealed Adam 2e-3 (about 10 minutes); under nvidia it fails
#                                         (centre hole only)
#   isnet                                 100 steps per protocol; L1 + adversarial (nsgan) only: the ImageNet
#                                         VGG19 of its perceptual/style terms cannot be downloaded here; PRA on
#   context_encoder_ov (overlap 4)        300 steps; ce_gan, ce_wgan: 200 / 40 steps from it (init_from, the
#                                         GAN tricks), the WGAN's 2,500-step critic warm-up off. The context
#                                         encoders fill the centre hole only: under nvidia they fail with that
#                                         message, and the report lists them as failed
#   pixelcnn 150, row_lstm 100 (h 48, K 2), diag_bilstm 30 (h 48, K 1), flat_row_lstm 150 steps: unconditional
#                                         densities (the mask plays no part in training), trained once and
#                                         tested under both protocols from the same checkpoint
#   pggan                                 the 32 px prior of experiment=pggan_cifar, 1,500 steps of batch 16,
#                                         grown to 32x32 after 21,000 images; not ranked (it does not inpaint)
#   mganprior none / sa                   inversion of 50 iterations from that prior, random VGG16 (1e-4)
# About 100 minutes on 2 cores (42 before the time-to-floor schedules of SC-NN and the CE-AE). The committed
# output is experiments/results/leaderboard_cifar/ (the report and
# every run's card under runs/).
set -uo pipefail
images=${1:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT [REPORT_DIR [OVERRIDES...]]]}
masks=${2:?usage: $0 CIFAR_IMAGES NVIDIA_MASKS [OUT [REPORT_DIR [OVERRIDES...]]]}
out=${3:-outputs/leaderboard_cifar}
report=${4:-experiments/results/leaderboard_cifar}
shift $(( $# < 4 ? $# : 4 ))
extra=("$@")
data=(data=folder "data.root=$images" data.num_workers=1)
declare -A protocol=([center]="protocol=cifar_center" [nvidia]="protocol=nvidia_buckets mask.root=$masks")
failed=0

lb() {  # name protocol overrides...: one run of the leaderboard experiment; a failure is recorded, not fatal
    local name=$1 p=$2; shift 2
    # shellcheck disable=SC2086
    if ! python -m inpaint.run experiment=leaderboard_cifar "${data[@]}" ${protocol[$p]} "$@" "${extra[@]}" \
            hydra.run.dir="$out/$p/$name"; then
        echo "leaderboard: $p/$name failed (its run directory says why)" >&2
        failed=$((failed + 1))
    fi
}

floor() {  # name protocol experiment overrides...: train with the method's time-to-floor schedule
    # (experiment=floor_*, experiments/time_to_floor.py), then test its best checkpoint in the leaderboard's frame
    local name=$1 p=$2 exp=$3; shift 3
    # shellcheck disable=SC2086
    if ! python -m inpaint.run experiment="$exp" "data.root=$images" ${protocol[$p]} "$@" callbacks.floor_watch=null \
            "${extra[@]}" hydra.run.dir="$out/$p/train_$name"; then
        echo "leaderboard: $p/train_$name failed (its run directory says why)" >&2
        failed=$((failed + 1))
    fi
    lb "$name" $p "$@" task=test ckpt_path="$out/$p/train_$name/checkpoints/best.ckpt"
}

python -m inpaint.prepare mask=nvidia "mask.root=$masks"
isnet=(model=isnet model.loss.gan=nsgan "model.loss.weights={l1:1,adv:1,perc:0,style:0,fm:0}" model.pra.kernel=3)
ce=(model.overlap=4 model.generator.decoder=deconv)
for p in center nvidia; do
    lb biharmonic $p model=biharmonic task=test
    floor scnn $p floor_scnn model=scnn trainer.max_steps=4000
    lb isnet $p "${isnet[@]}" trainer.max_steps=100
    floor context_encoder $p floor_ce model=context_encoder
    lb context_encoder_ov $p model=context_encoder "${ce[@]}"
    init=()  # the GANs start from the overlap L2 context encoder when it trained (it cannot under nvidia: see above)
    [[ -f "$out/$p/context_encoder_ov/checkpoints/best.ckpt" ]] && init=("init_from=$out/$p/context_encoder_ov/checkpoints/best.ckpt")
    lb ce_gan $p model=ce_gan "${init[@]}" trainer.max_steps=200
    lb ce_wgan $p model=ce_wgan "${init[@]}" model.gan.critic_warmup=null trainer.max_steps=40
done

density=(callbacks.model_checkpoint.monitor=val/nll_bpd callbacks.model_checkpoint.mode=min)
clip=(trainer.gradient_clip_val=1.0 +trainer.gradient_clip_algorithm=value)
lb pixelcnn center model=pixelcnn "${density[@]}" trainer.max_steps=150
lb row_lstm center model=row_lstm model.net.hidden=48 model.net.layers=2 "${density[@]}" "${clip[@]}" \
    trainer.max_steps=100
lb diag_bilstm center model=diag_bilstm model.net.hidden=48 model.net.layers=1 "${density[@]}" "${clip[@]}" \
    trainer.max_steps=30
lb flat_row_lstm center model=flat_row_lstm "${density[@]}" trainer.gradient_clip_val=1.0 trainer.max_steps=150
for name in pixelcnn row_lstm diag_bilstm flat_row_lstm; do
    # the same checkpoint under the other protocol: its own model and schedule overrides, then the protocol's
    overrides=$(python - "$out/center/$name/.hydra/overrides.yaml" "${extra[@]}" <<'PY'
import sys, yaml
given = {a.partition("=")[0].lstrip("+~") for a in sys.argv[2:]}
keep = [a for a in yaml.safe_load(open(sys.argv[1])) or []
        if not a.startswith(("experiment=", "protocol=", "mask.root=", "data=", "data."))
        and a.partition("=")[0].lstrip("+~") not in given]
print(" ".join(keep))
PY
) || overrides=""
    lb $name nvidia $overrides task=test ckpt_path="$out/center/$name/checkpoints/best.ckpt"
done

# the GAN prior (not an inpainting method: listed by the report, not ranked), then mGANprior from it
if ! python -m inpaint.run experiment=pggan_cifar "${data[@]}" data.image_size=32 data.resize_short=null \
        data.batch_size=16 trainer.max_steps=1500 trainer.val_check_interval=750 trainer.limit_val_batches=4 \
        model.schedule.stabilise_images=3000 model.schedule.fade_images=3000 model.swd.images=64 \
        test_after_fit=false "${extra[@]}" hydra.run.dir="$out/prior/pggan"; then
    echo "leaderboard: the pggan prior failed; mganprior runs will fail too" >&2
    failed=$((failed + 1))
fi
prior="$out/prior/pggan/checkpoints/last.ckpt"
for p in center nvidia; do
    for attention in none sa; do
        lb "mganprior_$attention" $p model=mganprior task=test model.prior.official=null \
            "model.prior.checkpoint=$prior" model.loss.vgg=random model.progress=false \
            +eval.inference.iterations=50 model.attention.type=$attention
    done
done

# the cards travel with the report (REPORT_DIR/runs/PROTOCOL/NAME/card.json), so it can be re-rendered and
# checked without the run directories: python -m inpaint.report REPORT_DIR/runs --out REPORT_DIR
for card in "$out"/{center,nvidia}/*/card.json; do  # the prior is not an inpainting run: not in the report
    run=${card%/card.json}
    [[ ${run##*/} == train_* ]] && continue  # a time-to-floor training run: its test is on other images
    mkdir -p "$report/runs/${run#"$out"/}"
    cp "$card" "$report/runs/${run#"$out"/}/card.json"
done
python -m inpaint.report "$report/runs" --out "$report"
echo "leaderboard: $failed run(s) failed; the report lists them" >&2
