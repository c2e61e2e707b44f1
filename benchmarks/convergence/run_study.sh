#!/usr/bin/env bash
# Equal-budget convergence study (issue 14): does FroSSL converge faster than SimCLR, Barlow
# Twins and VICReg in the same trainer, on the same data, with the same minutes?
#
# Trains, strictly one after another: frossl (2 views), simclr, barlow, vicreg, frossl with 4
# and with 8 views; same stem (--arch), batch size and wall-clock budget (--max-minutes, which
# counts evaluations too). kNN top-1 every quarter epoch on a fixed test subset gives the
# convergence curve. Each run is then probed with `python -m train.linear --random-baseline`
# (cached features; includes the probe of an untrained backbone). Runs live in
# runs/convergence[-DATASET]/<name> (git-ignored); their metrics.jsonl, config.json and
# linear.json (never checkpoints or feature caches) are copied into RESULTS/runs/<name>, then
# `python -m benchmarks.convergence` writes RESULTS/RESULTS.md and RESULTS/plots/.
#
# PRESET=stems (issue 19) trains FroSSL with each registered ResNet18 stem instead, and
# PRESET=recipe the batch size and base lr of one stem (STEM); both spend an equal budget of
# *training* minutes: each run's throughput is first measured alone for a few steps
# (CALIBRATE_STEPS) and its cosine schedule spans MINUTES of that throughput, with no
# --max-minutes cut. Evaluations add wall-clock time but take no training away, and a busy
# machine slows such a study down without changing what it learns.
#
# Usage (from anywhere; it works in the repository root):
#   benchmarks/convergence/run_study.sh                       # Fashion-MNIST, 20 min per run
#   MINUTES=5 ONLY="frossl simclr" benchmarks/convergence/run_study.sh
#   DATASET=cifar10 DATA_DIR=.data/cifar-10-jpeg benchmarks/convergence/run_study.sh
#   PRESET=stems DATASET=cifar10 DATA_DIR=.data/cifar-10-jpeg MINUTES=30 benchmarks/convergence/run_study.sh
#   PRESET=recipe STEM=frossl_resnet18_s2 DATASET=cifar10 DATA_DIR=.data/cifar-10-jpeg MINUTES=30 \
#     benchmarks/convergence/run_study.sh
#   PRESET=recipe STEM=frossl_resnet18 REFERENCE=benchmarks/convergence/cifar10/stems/runs/standard \
#     DATASET=cifar10 DATA_DIR=.data/cifar-10-jpeg MINUTES=30 benchmarks/convergence/run_study.sh
#
# Environment (defaults in brackets):
#   PRESET [methods]   methods: the objectives below; stems: one FroSSL run per stem
#                      (standard s2 s1pool small); recipe: batch 128 and base lr 0.15/0.6 with
#                      STEM, beside batch 256 / lr 0.3.
#   MINUTES [20]       wall-clock budget per run, evaluations included.
#   EPOCHS [derived]   length of the cosine schedule of the 2-view runs. A run that stops at
#                      the budget long before its schedule ends never anneals, one whose
#                      schedule ends early idles at a tiny lr: both bias the comparison. The
#                      default makes the schedule span about the budget:
#                        EPOCHS = MINUTES*60 * IMAGES_PER_S * 0.85 / NUM_IMAGES
#                      (0.85: share of the wall clock left after the quarter-epoch evaluations).
#                      V-view runs cost about V/2 times more per image, so they get
#                      EPOCHS*2/V epochs: every run's schedule spans about the same minutes.
#                      Warm-up is a tenth of each run's schedule.
#   IMAGES_PER_S [280] 2-view training throughput assumed for EPOCHS; 280 is what
#                      frossl_resnet18 at batch 256 measured on the 2-thread AMD EPYC box
#                      (runs/stem-compare). On other hardware, measure it (images/s in a
#                      short run's metrics.jsonl) or set EPOCHS directly.
#   NUM_IMAGES         pretraining images per epoch [fashion-mnist 60000, cifar10/100 50000].
#   BATCH_SIZE [256]   ARCH [frossl_resnet18]   THREADS [torch default]   DEVICE [auto]
#   DATASET [fashion-mnist]   DATA_DIR [the system copy for Fashion-MNIST; required otherwise]
#   RUNS_ROOT [runs/convergence, runs/convergence-DATASET for other data sets]
#   RESULTS [benchmarks/convergence, benchmarks/convergence/DATASET for other data sets]
#   ONLY [all]         space-separated subset of: frossl simclr barlow vicreg frossl-4views
#                      frossl-8views
#   REFERENCE [none]   recipe preset: the stem study's finished run of STEM (its folder under
#                      RESULTS/runs, with calibration.json and config.json), which becomes the
#                      batch BATCH/lr LR row. Its minutes were measured on the machine it ran on,
#                      so the recipe runs are budgeted in that machine's minutes: a run with the
#                      reference's batch size does the same work per step and takes the
#                      reference's throughput as is (the very same schedule, no calibration); a
#                      run with another batch size is timed back to back with the reference's
#                      set-up here and takes the reference's images/s times their ratio.
#   CALIBRATE_STEPS [12] steps (a multiple of 4) timed alone (after 4 warm-up steps) for the stems and recipe
#                      presets; the measured images/s is kept in RUN/calibration.json.
#   ALLOW_BUSY [0]     1: start even when another `python -m train` is running (the minutes
#                      and images/s are then not comparable).
#   DRY_RUN [0]        1: print the commands instead of running them.
#
# Re-running is safe: a run with linear.json is skipped; a trained run without one is only
# probed; an interrupted run continues with --resume (its budget counts across sessions).
# Delete runs/convergence/<name> to redo a run.
set -euo pipefail

cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
DATASET=${DATASET:-fashion-mnist}
DATA_DIR=${DATA_DIR:-}
MINUTES=${MINUTES:-20}
BATCH_SIZE=${BATCH_SIZE:-256}
ARCH=${ARCH:-frossl_resnet18}
IMAGES_PER_S=${IMAGES_PER_S:-280}
DEVICE=${DEVICE:-auto}
ALLOW_BUSY=${ALLOW_BUSY:-0}
DRY_RUN=${DRY_RUN:-0}
PRESET=${PRESET:-methods}
CALIBRATE_STEPS=${CALIBRATE_STEPS:-12}
REFERENCE=${REFERENCE:-}
(( CALIBRATE_STEPS % 4 == 0 && CALIBRATE_STEPS > 0 )) || { echo "error: CALIBRATE_STEPS must be a positive multiple of 4" >&2; exit 2; }
case $PRESET in
  methods) suffix="" ;;
  stems|recipe) suffix="-$PRESET" ;;
  *) echo "error: PRESET must be methods, stems or recipe, got '$PRESET'" >&2; exit 2 ;;
esac
if [[ $DATASET == fashion-mnist ]]; then
  RUNS_ROOT=${RUNS_ROOT:-runs/convergence$suffix}
  RESULTS=${RESULTS:-benchmarks/convergence${suffix:+/${suffix#-}}}
else
  RUNS_ROOT=${RUNS_ROOT:-runs/convergence-$DATASET$suffix}
  RESULTS=${RESULTS:-benchmarks/convergence/$DATASET${suffix:+/${suffix#-}}}
  [[ -n $DATA_DIR ]] || { echo "error: DATASET=$DATASET needs DATA_DIR=<folder of the data set>" >&2; exit 2; }
fi
case $DATASET in
  fashion-mnist) NUM_IMAGES=${NUM_IMAGES:-60000} ;;
  cifar10|cifar100) NUM_IMAGES=${NUM_IMAGES:-50000} ;;
  *) NUM_IMAGES=${NUM_IMAGES:-} ;;
esac
if [[ -z ${EPOCHS:-} && $PRESET == methods ]]; then
  [[ -n $NUM_IMAGES ]] || { echo "error: set EPOCHS (or NUM_IMAGES) for DATASET=$DATASET" >&2; exit 2; }
  EPOCHS=$(awk -v m="$MINUTES" -v ips="$IMAGES_PER_S" -v n="$NUM_IMAGES" \
    'BEGIN { e = m * 60 * ips * 0.85 / n; if (e < 0.5) e = 0.5; printf "%.2f", e }')
fi

# name method views [trainer arguments of this run]
case $PRESET in
  methods) STUDY=(
    "frossl frossl 2"
    "simclr simclr 2"
    "barlow barlow 2"
    "vicreg vicreg 2"
    "frossl-4views frossl 4"
    "frossl-8views frossl 8"
  ) ;;
  stems) STUDY=(
    "standard frossl 2 --arch frossl_resnet18"
    "s2 frossl 2 --arch frossl_resnet18_s2"
    "s1pool frossl 2 --arch frossl_resnet18_s1pool"
    "small frossl 2 --arch frossl_resnet18_cifar"
  ) ;;
  recipe)
    [[ -n ${STEM:-} ]] || { echo "error: PRESET=recipe needs STEM=<the stem study's winner>" >&2; exit 2; }
    if [[ -n $REFERENCE ]]; then
      [[ -f $REFERENCE/calibration.json && -f $REFERENCE/config.json ]] || {
        echo "error: REFERENCE=$REFERENCE needs the run's calibration.json and config.json" >&2; exit 2; }
      # images/s, minutes, batch size, base lr and architecture of the reference run
      read -r REF_IPS REF_MINUTES REF_BATCH REF_LR REF_ARCH < <("$PY" -c 'import json, sys
cal, cfg = (json.load(open(f"{sys.argv[1]}/{n}.json")) for n in ("calibration", "config"))
r = cfg["recipe"]
print(cal["images_per_s"], cal["minutes"], r["batch_size"], r["base_lr"], r["arch"])' "$REFERENCE")
      [[ $REF_ARCH == "$STEM" ]] || { echo "error: REFERENCE trained $REF_ARCH, not STEM=$STEM" >&2; exit 2; }
      awk -v a="$REF_MINUTES" -v b="$MINUTES" 'BEGIN { exit !(a == b) }' || {
        echo "error: REFERENCE had a budget of $REF_MINUTES minutes, not MINUTES=$MINUTES" >&2; exit 2; }
    fi
    STUDY=(
      "batch128 frossl 2 --arch $STEM --batch-size 128"
      "lr0.15 frossl 2 --arch $STEM --base-lr 0.15"
      "lr0.6 frossl 2 --arch $STEM --base-lr 0.6"
    ) ;;
esac

NAMES=" "
for entry in "${STUDY[@]}"; do NAMES+="${entry%% *} "; done
[[ -n $NUM_IMAGES || $PRESET == methods ]] || { echo "error: set NUM_IMAGES for DATASET=$DATASET" >&2; exit 2; }
if [[ -n ${ONLY:-} ]]; then
  for want in $ONLY; do
    [[ $NAMES == *" $want "* ]] || {
      echo "error: ONLY names unknown run '$want'; runs:$NAMES" >&2
      exit 2
    }
  done
fi

data_args=()
[[ -n $DATA_DIR ]] && data_args=(--data-dir "$DATA_DIR")
thread_args=()
[[ -n ${THREADS:-} ]] && thread_args=(--threads "$THREADS")

if [[ $DRY_RUN != 1 ]]; then  # a dry run only prints: it creates no folder and takes no lock
  mkdir -p "$RUNS_ROOT" "$RESULTS/runs"
  exec 9>"$RUNS_ROOT/.lock"
  flock -n 9 || { echo "error: another run_study.sh holds $RUNS_ROOT/.lock; runs never overlap" >&2; exit 2; }
fi

log() { echo "[$(date '+%F %T')] $*"; }

run() {  # run a command (its output appended to the log file $1), or print it under DRY_RUN=1
  local logfile=$1
  shift
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "$@"
    echo ">>$logfile"
  elif ! "$@" >>"$logfile" 2>&1; then
    echo "error: '$*' failed; the end of $logfile:" >&2
    tail -n 5 "$logfile" >&2
    exit 1
  fi
}

check_idle() {
  # another training process would steal CPU/GPU time from an equal-minutes comparison
  local others
  others=$(pgrep -f -- '-m train( |$)' || true)
  if [[ -n $others && $ALLOW_BUSY != 1 && $DRY_RUN != 1 ]]; then
    echo "error: another training process is running (pid $others); wait for it, or set" \
         "ALLOW_BUSY=1 knowing the minutes are then not comparable" >&2
    exit 2
  fi
}

selected() {
  [[ -z ${ONLY:-} ]] && return 0
  local want
  for want in $ONLY; do [[ $want == "$1" ]] && return 0; done
  return 1
}

batch_of() {  # trainer-args...: the batch size they train with
  local batch=$BATCH_SIZE
  while (( $# )); do
    [[ $1 == --batch-size ]] && batch=$2
    shift
  done
  echo "$batch"
}

with_batch() {  # trainer-args...: sets TRAIN_ARGS to them with one --batch-size (theirs, else BATCH_SIZE)
  TRAIN_ARGS=(--batch-size "$(batch_of "$@")")
  while (( $# )); do
    if [[ $1 == --batch-size ]]; then shift 2; else TRAIN_ARGS+=("$1"); shift; fi
  done
}

calibrate() {  # name extra-args...: prints the run's images/s, measured alone for CALIBRATE_STEPS steps
  local name=$1 dir=$RUNS_ROOT/.calibrate-$1 steps=$((CALIBRATE_STEPS + 4))
  shift
  with_batch "$@"
  [[ $DRY_RUN == 1 ]] || { rm -rf "$dir"; check_idle; }
  run "$RUNS_ROOT/.calibrate.log" "$PY" -m train --dataset "$DATASET" "${data_args[@]}" --out "$dir" \
    --method frossl "${TRAIN_ARGS[@]}" --epochs 1 --max-steps "$steps" --log-every-steps 4 \
    --knn-train-limit 500 --eval-test-limit 200 --device "$DEVICE" "${thread_args[@]}" --no-probe --no-progress >&2
  [[ $DRY_RUN == 1 ]] && { echo 100; return; }  # the plan only: a stand-in throughput
  # images/s over steps 5..N: every 4-step window after the first (which warms allocator and
  # caches) takes 4 * batch / ips_i seconds, so the whole span runs at their harmonic mean
  "$PY" -c 'import json, sys
ips = [r["images_per_s"] for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train" and r["step"] > 4]
print(round(len(ips) / sum(1 / x for x in ips), 1))' "$dir/metrics.jsonl"
  rm -rf "$dir"
}

train_run() {  # name method views [trainer arguments]
  local name=$1 method=$2 views=$3 dir=$RUNS_ROOT/$1
  shift 3
  with_batch "$@"
  local epochs warmup ips resume=() budget=(--max-minutes "$MINUTES")
  if [[ $PRESET == methods ]]; then
    epochs=$(awk -v e="$EPOCHS" -v v="$views" 'BEGIN { printf "%.3f", e * 2 / v }')
  else  # an equal budget of training minutes at each run's own measured throughput
    ips=${PLANNED_IPS[$name]:-100}  # a dry run's plan: what its calibration printed
    [[ $DRY_RUN == 1 ]] || ips=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["images_per_s"])' "$dir/calibration.json")
    epochs=$(awk -v m="$MINUTES" -v ips="$ips" -v n="$NUM_IMAGES" 'BEGIN { printf "%.3f", m * 60 * ips / n }')
    budget=()
  fi
  warmup=$(awk -v e="$epochs" 'BEGIN { printf "%.3f", e / 10 }')
  [[ -f $dir/last.ckpt ]] && resume=(--resume)
  check_idle
  log "train $name: $method, $views views, $epochs epochs (warm-up $warmup), $MINUTES min${resume:+, resuming}"
  run "$dir.log" "$PY" -m train --dataset "$DATASET" "${data_args[@]}" --out "$dir" --method "$method" \
    --num-views "$views" --arch "$ARCH" "${TRAIN_ARGS[@]}" --epochs "$epochs" \
    --warmup-epochs "$warmup" "${budget[@]}" --eval-every-epochs 0.25 \
    --knn-train-limit 10000 --eval-test-limit 2000 --spectrum-every-epochs 1 \
    --device "$DEVICE" "${thread_args[@]}" "${resume[@]}" --no-probe --no-progress
  [[ $DRY_RUN == 1 ]] || touch "$dir/.trained"
}

probe_run() {  # name
  local dir=$RUNS_ROOT/$1
  log "probe $1"
  run "$dir.log" "$PY" -m train.linear "$dir" --random-baseline --device "$DEVICE" "${data_args[@]}"
}

copy_run() {  # name: the small JSON files only, never checkpoints or feature caches
  copy_run_files "$RUNS_ROOT/$1" "$RESULTS/runs/$1"
}

copy_run_files() {  # source-folder target-folder
  local src=$1 dst=$2 file
  mkdir -p "$dst"
  for file in metrics.jsonl config.json linear.json calibration.json; do
    [[ -f $src/$file ]] && cp "$src/$file" "$dst/$file"
  done
  return 0
}

declare -A PLANNED_IPS=()  # name -> images/s, for a dry run's plan
if [[ $PRESET != methods ]]; then  # time every run first, one after another, on the idle machine
  for entry in "${STUDY[@]}"; do
    read -r name method views extra <<<"$entry"
    selected "$name" || continue
    dir=$RUNS_ROOT/$name
    [[ -f $dir/calibration.json || -f $dir/linear.json ]] && continue
    reference_fields=""
    if [[ -z $REFERENCE ]]; then
      log "calibrate $name"
      # shellcheck disable=SC2086
      ips=$(calibrate "$name" $extra)
    elif [[ $(batch_of $extra) == "$REF_BATCH" ]]; then  # the same work per step: same schedule
      ips=$REF_IPS
      reference_fields=", \"reference\": \"$REFERENCE\", \"ratio\": 1"
    else
      log "calibrate $name and the reference's set-up, back to back"
      # shellcheck disable=SC2086
      here=$(calibrate "$name" $extra)
      [[ -n ${ref_here:-} ]] || ref_here=$(calibrate reference --arch "$STEM" --batch-size "$REF_BATCH")
      read -r ratio ips < <(awk -v r="$REF_IPS" -v a="$here" -v b="$ref_here" \
        'BEGIN { printf "%.4f %.1f\n", a / b, r * a / b }')
      reference_fields=", \"reference\": \"$REFERENCE\", \"ratio\": $ratio, \"images_per_s_here\": $here, \"reference_images_per_s_here\": $ref_here"
    fi
    if [[ $DRY_RUN != 1 ]]; then
      mkdir -p "$dir"
      printf '{"images_per_s": %s, "minutes": %s, "calibrate_steps": %s%s}\n' "$ips" "$MINUTES" \
        "$CALIBRATE_STEPS" "$reference_fields" >"$dir/calibration.json"
      log "$name: $ips images/s${reference_fields:+ (in minutes of the reference machine)}"
    else
      PLANNED_IPS[$name]=$ips
      echo "calibration $name: $ips images/s${reference_fields}"
    fi
  done
fi

log "study ($PRESET): $DATASET, $ARCH, batch $BATCH_SIZE, $MINUTES min per run${EPOCHS:+, 2-view schedule $EPOCHS epochs}"
for entry in "${STUDY[@]}"; do
  read -r name method views extra <<<"$entry"
  selected "$name" || continue
  [[ $DRY_RUN == 1 ]] || mkdir -p "$RUNS_ROOT/$name"
  if [[ -f $RUNS_ROOT/$name/linear.json ]]; then
    log "skip $name: already trained and probed"
  else
    # shellcheck disable=SC2086  # extra holds whole trainer arguments, split on purpose
    [[ -f $RUNS_ROOT/$name/.trained ]] || train_run "$name" "$method" "$views" $extra
    probe_run "$name"
  fi
  [[ $DRY_RUN == 1 ]] || copy_run "$name"
done

if [[ -n $REFERENCE ]]; then  # the reference is the study's batch REF_BATCH / lr REF_LR row
  ref_row=$RESULTS/runs/batch$REF_BATCH-lr$REF_LR
  if [[ $DRY_RUN == 1 ]]; then
    echo "copy $REFERENCE -> $ref_row"
  elif [[ $(realpath "$REFERENCE") != $(realpath -m "$ref_row") ]]; then
    copy_run_files "$REFERENCE" "$ref_row"
  fi
fi

report=benchmarks.convergence
[[ $PRESET == methods ]] || report=benchmarks.convergence.budget
if [[ $DRY_RUN == 1 ]]; then
  printf '%q ' "$PY" -m "$report" "$RESULTS/runs" --out "$RESULTS"
  echo
  exit 0
fi
"$PY" -m "$report" "$RESULTS/runs" --out "$RESULTS"
log "done: $RESULTS/RESULTS.md"
