#!/usr/bin/env bash
# What a session lent a GPU runs, in one device call from the repository root:
#   build the CUDA extension, the whole test suite on the GPU (CUDA + Triton backends, sync checks),
#   compute-sanitizer memcheck and racecheck on every CUDA kernel, the benchmark suite, and a
#   base-preset pretraining comparison (fastmask vs --baseline hf, with --sync-debug).
# Logs and result rows go to $OUT (the device tool brings them back); commit the .jsonl files
# under bench/results/ and regenerate bench/RESULTS.md and the plots here.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/device.txt"
python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
python3 -m fastmask info | tee "$OUT/info.txt"
python3 -m pytest -q -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
for tool in memcheck racecheck; do
  compute-sanitizer --tool "$tool" --error-exitcode 9 python3 scripts/exercise_cuda_kernels.py \
    > "$OUT/sanitizer-$tool.log" 2>&1; echo "compute-sanitizer $tool: exit $?" | tee -a "$OUT/sanitizer.txt"
done
python3 -m fastmask bench 2>&1 | tee "$OUT/bench.log" | grep -E "^\| (maskable_mask|mask_tokens|fully_explored_k7|masked_positions|gather|scatter|proposal_topk|bert_step)" | head -60
cp bench/results/*.jsonl "$OUT/" 2>/dev/null
# BERT-base shape at L=128 and L=512: fastmask (GPU masking + sparse head, no host sync outside
# logging steps) against the usual way (HF collator on the CPU + dense head).
for shape in "--seq-len 128 --batch-size 256" "--seq-len 512 --batch-size 32"; do
  python3 -m fastmask pretrain --preset base $shape --steps 40 --log-interval 20 --eval-interval 40 --no-progress \
    --out runs/gpu-fastmask --sync-debug 2>&1 | tail -2 | tee -a "$OUT/pretrain.txt"
  python3 -m fastmask pretrain --preset base $shape --steps 40 --log-interval 20 --eval-interval 40 --no-progress \
    --out runs/gpu-hf --baseline hf 2>&1 | tail -2 | tee -a "$OUT/pretrain.txt"
done
