#!/usr/bin/env bash
# The device check of 2026-12-04, after the heads (#26), families (#27) and CPU kernels (#30) landed without a GPU:
# one device call (carry .gpu, see pack.sh). Builds against the machine's own PyTorch, then runs on CUDA the parity
# tests (fp32, bf16) and every family's every head against transformers (test/heads.test.ts with TEST_DEVICE=cuda),
# then on the machine's own CPU (a different kind from the development machines, often AVX-512 or AMX) the tests of
# the CPU kernels, and last the shape benchmark in bf16. Dry run here: `DEVICE=cpu bash scripts/gpu/check-heads.sh`.
set -uo pipefail  # no -e: a failed step is logged and the next one still runs
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
source scripts/gpu/lib.sh log-heads.txt

step "machine"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
grep -m1 "model name" /proc/cpuinfo; grep -o -w 'avx512f\|avx512_bf16\|amx_tile\|avx2' /proc/cpuinfo | sort | uniq -c; nproc

step "build the addon against this machine's PyTorch"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
timeout 240 node scripts/build-addon.js > "$OUT/build-heads.txt" 2>&1 || { grep -E "error" -A3 "$OUT/build-heads.txt" | head -60; exit 1; }
node -e "import('./dist/src/native.js').then(m => console.log(JSON.stringify(m.addon().runtime())))"

tests() {  # label, timeout, test file, name pattern, extra env...
  local label=$1 limit=$2 file=$3 pattern=$4; shift 4
  step "$label"
  env "$@" timeout "$limit" node --test --test-concurrency=1 --test-name-pattern="$pattern" "$file" 2>&1 | grep -E "^# (parity|heads|pass|fail)|^ok|^not ok|rror|differ" | head -80
}
tests "parity on $DEVICE (fp32, bf16 autocast, dropout statistics)" 150 dist/test/parity.test.js . TEST_DEVICE="$DEVICE"
tests "every family's every head on $DEVICE against transformers" 150 dist/test/heads.test.js "outputs, loss, 3 AdamW" TEST_DEVICE="$DEVICE"
tests "CPU kernels on this machine's CPU: panel products" 120 dist/test/panel-gemm.test.js .
tests "CPU kernels on this machine's CPU: fused attention, evaluation after steps" 150 dist/test/model.test.js .

step "HF home with MRPC and a bert-base-sized model (random weights)"
source scripts/gpu/hf-home.sh
step "benchmark: shape (bert-base config) on $DEVICE with bf16 autocast on both sides"
timeout 150 node dist/scripts/bench/bench.js --workload shape --bf16 --device "$DEVICE" --rounds 1 --out "$OUT" 2>&1 | tail -15
step "done"
