#!/usr/bin/env bash
# One command for the day a GPU is lent (issue 19): on one H100/H200, within about 10 minutes
# of device time, train CIFAR-10 with the paper's recipe for as many epochs as fit, probe it,
# publish it under $OUT and print the GPU rows of benchmarks/RESULTS.md.
#
# The paper's recipe (solo-learn cifar/frossl.yaml): small-image stem (frossl_resnet18_cifar),
# batch 256, LARS lr 0.3, bf16 autocast, the 50k images resident on the GPU as uint8 and both
# views augmented there in batch. The cosine schedule is sized to the budget from the
# trainer's own measured images/s (benchmark row 2 at 32 px), so the run anneals fully
# within TRAIN_MINUTES instead of being cut mid-schedule.
#
# From this machine (the device tool; ../shared does not travel, so the archive is carried):
#   mkdir -p .data/gpu && cp ../shared/datasets/cifar-10-jpeg.tar.xz .data/gpu/
#   run(command="bash scripts/gpu_run.sh", carry=[".data/gpu"], timeout_s=600)
# $OUT then holds gpu_run.log (benchmark rows, training log, metrics, probe) and the
# published folder as a tar in 15 MiB parts (the device tool returns at most 8 files of at
# most 16 MiB; the float16 weights alone are 22 MB). Back here:
#   cat FILES_AT/published.tar.part-* | tar -x -C runs/   # -> runs/published/
# A GPU model replaces the bundled CIFAR-10 one only if its linear probe (gpu_run.log,
# published/README.md) is higher than the catalog's.
#
# Environment (defaults in brackets):
#   OUT [runs/gpu-out]      where the log and published/ go.
#   ARCHIVE [.data/gpu/cifar-10-jpeg.tar.xz]   the CIFAR-10 JPEG archive (../shared/datasets).
#   WORK [.data/gpu-work]   where it is extracted and the run directory lives.
#   TRAIN_MINUTES [5.5]     training budget; benchmark rows, probe and publish take ~2-3 min more.
#   DEVICE [cuda]           SMOKE=1 sets cpu.
#   PYTHON [python3]        the device image's python3 holds torch, timm and safetensors.
#   SMOKE [0]               1: the CPU dry run CI tests (tiny data, a few steps, 1-step benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-out}
ARCHIVE=${ARCHIVE:-.data/gpu/cifar-10-jpeg.tar.xz}
WORK=${WORK:-.data/gpu-work}
TRAIN_MINUTES=${TRAIN_MINUTES:-5.5}
SMOKE=${SMOKE:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ $SMOKE == 1 ]]; then
  DEVICE=${DEVICE:-cpu}
  bench=(--steps 1 --warmup 1 --batch-size 4 --workers 1 --threads 1)
  train=(--batch-size 16 --max-steps 2 --knn-train-limit 40 --eval-test-limit 20 --threads 1)
else
  DEVICE=${DEVICE:-cuda}
  bench=(--steps 30 --warmup 5)
  train=(--eval-every-epochs 2 --knn-train-limit 10000 --eval-test-limit 2000 --spectrum-every-epochs 10)
fi
[[ -f $ARCHIVE ]] || { echo "error: no CIFAR-10 archive at $ARCHIVE (copy ../shared/datasets/cifar-10-jpeg.tar.xz there and carry it)" >&2; exit 2; }
mkdir -p "$OUT" "$WORK"
LOG=$OUT/gpu_run.log
exec > >(tee -a "$LOG") 2>&1
log() { echo "[$(date '+%F %T')] $*"; }

log "gpu_run: device $DEVICE, smoke $SMOKE, training budget $TRAIN_MINUTES min"
"$PY" -c 'import torch; print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
[[ -d $WORK/cifar-10-jpeg ]] || tar -xJf "$ARCHIVE" -C "$WORK"
DATA=$WORK/cifar-10-jpeg

log "benchmark rows: trainer throughput at 32 px (CIFAR-10, small stem) and 96 px (STL-10-shaped)"
"$PY" benchmarks/train_throughput.py --dataset cifar10 --device "$DEVICE" --data-dir "$DATA" \
  --arch frossl_resnet18_cifar "${bench[@]}" | tee "$WORK/bench32.txt"
"$PY" benchmarks/train_throughput.py --dataset stl10-shaped --device "$DEVICE" "${bench[@]}"

# epochs that fit: the trainer row's images/s x budget (90%: evaluations take the rest)
ips=$(awk '$1 == "2" && $2 == "trainer:" { print $NF; exit }' "$WORK/bench32.txt")
[[ -n $ips ]] || { echo "error: no trainer row in $WORK/bench32.txt" >&2; exit 1; }
epochs=$(awk -v m="$TRAIN_MINUTES" -v ips="$ips" 'BEGIN { e = m * 60 * ips * 0.9 / 50000; if (e < 1) e = 1; printf "%.1f", e }')
log "trainer at $ips images/s: $epochs epochs (warm-up a tenth) in $TRAIN_MINUTES min"

RUN=$WORK/run
rm -rf "$RUN"
"$PY" -m train --dataset cifar10 --data-dir "$DATA" --out "$RUN" --device "$DEVICE" \
  --arch frossl_resnet18_cifar --epochs "$epochs" \
  --warmup-epochs "$(awk -v e="$epochs" 'BEGIN { printf "%.2f", e / 10 }')" \
  --max-minutes "$TRAIN_MINUTES" "${train[@]}" --publish-dtype float16 --no-progress

rm -f "$OUT"/published.tar.part-*
tar -C "$RUN" -cf - published | split -b 15m -d - "$OUT/published.tar.part-"
log "metrics.jsonl (eval records) and linear.json of the run:"
grep '"kind": "eval"' "$RUN/metrics.jsonl" || true
cat "$RUN/linear.json"
echo
log "done: $(ls "$OUT"/published.tar.part-* | wc -l) parts of published.tar in $OUT; compare its linear top-1 with the bundled model's"
