#!/usr/bin/env bash
# The whole GPU check in one call (issue 7): on the device machine, `bash scripts/gpu/check.sh` with `.gpu` carried
# (see pack.sh). Builds the addon against that machine's own PyTorch (scripts/find-libtorch.js), runs the parity
# tests on the device, then the benchmark's shape workload and 3 epochs of MRPC with a bert-base-sized model against the Python Trainer on the same GPU.
# Everything lands in $OUT; planned well under 8 minutes on an H100. Dry run on a CPU machine: `bash scripts/gpu/check.sh --device cpu`.
set -uo pipefail  # no -e: a failed step is logged and the next one still runs
# Each step has its own timeout, so a hang costs that step only; the 3-epoch run goes last.
cd "$(dirname "$0")/../.."
DEVICE=cuda
[ "${1:-}" = "--device" ] && DEVICE=$2
source scripts/gpu/lib.sh log.txt

step "machine"
nvidia-smi 2>/dev/null | head -15 || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

step "node"
node --version

step "build the addon against this machine's PyTorch"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # Hopper; nothing of ours is CUDA code, this only skips detection
timeout 300 node scripts/build-addon.js > "$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; exit 1; }
tail -3 "$OUT/build.txt"
node -e "import('./dist/src/native.js').then(m => console.log(JSON.stringify(m.addon().runtime())))"

step "parity on $DEVICE"
TEST_DEVICE=$DEVICE timeout 300 node --test dist/test/parity.test.js 2>&1 | grep -E "^# parity|^ok|^not ok|^# (pass|fail)" | tee "$OUT/parity.txt"

step "HF home with MRPC, MiniLM and bert-base-uncased (random weights: the real ones do not travel)"
source scripts/gpu/hf-home.sh

step "benchmark: shape (bert-base config) on $DEVICE"
timeout 200 node dist/scripts/bench/bench.js --workload shape --device "$DEVICE" --rounds 1 --out "$OUT" 2>&1 | tail -15

step "benchmark: shape (bert-base config) on $DEVICE with bf16 autocast on both sides"
timeout 200 node dist/scripts/bench/bench.js --workload shape --bf16 --device "$DEVICE" --rounds 1 --out "$OUT" 2>&1 | tail -15

step "profile of the Python reference's training step on $DEVICE (torch.profiler: wall vs GPU-busy time per step)"
(cd /tmp && timeout 120 python3 "$OLDPWD/scripts/gpu/profile_ref.py" "$DEVICE") 2>&1 | grep -v Warning | tee "$OUT/profile.txt" | head -60

# The reference job: bert-base-uncased, 3 epochs of MRPC (1,377 steps), bf16 first (issue 16's target), then fp32.
# A CPU dry run takes 20 steps of it instead.
for prec in --bf16 ""; do
  if [ "$DEVICE" = cpu ]; then
    step "benchmark: bert-base-uncased (random), MRPC, 20 steps on cpu $prec (dry run of the 3-epoch workload)"
    node dist/scripts/bench/bench.js --workload quick --model bert-base-uncased --device cpu --rounds 1 --steps 20 $prec --out "$OUT" 2>&1 | tail -20
  else
    step "benchmark: bert-base-uncased (random), 3 epochs of MRPC on $DEVICE $prec"
    timeout 300 node dist/scripts/bench/bench.js --workload full --model bert-base-uncased --device "$DEVICE" --rounds 1 $prec --out "$OUT" 2>&1 | tail -20
  fi
done

step "done"
