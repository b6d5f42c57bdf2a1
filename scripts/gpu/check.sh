#!/usr/bin/env bash
# The whole GPU check in one call (issue 7): on the device machine, `bash scripts/gpu/check.sh` with `.gpu` carried
# (see pack.sh). Builds the addon against that machine's own PyTorch (scripts/find-libtorch.js), runs the parity
# tests on the device, then the benchmark's shape and quick workloads against the Python Trainer on the same GPU.
# Everything lands in $OUT. Dry run on a CPU machine: `bash scripts/gpu/check.sh --device cpu`.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=cuda
[ "${1:-}" = "--device" ] && DEVICE=$2
OUT=${OUT:-$PWD/.cache/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

step "machine"
nvidia-smi 2>/dev/null | head -15 || echo "no nvidia-smi"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

step "node"
if ! command -v node >/dev/null; then
  mkdir -p /tmp/nodebin && xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
  export PATH=/tmp/nodebin:$PATH
fi
node --version
[ -d node_modules ] || cp -r .gpu/node_modules node_modules
[ -d dist ] || cp -r .gpu/dist dist

step "build the addon against this machine's PyTorch"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # Hopper; nothing of ours is CUDA code, this only skips detection
node scripts/build-addon.js > "$OUT/build.txt" 2>&1 || { tail -40 "$OUT/build.txt"; exit 1; }
tail -3 "$OUT/build.txt"
node -e "import('./dist/src/native.js').then(m => console.log(JSON.stringify(m.addon().runtime())))"

step "parity on $DEVICE"
TEST_DEVICE=$DEVICE node --test dist/test/parity.test.js 2>&1 | grep -E "^# parity|^ok|^not ok|^# (pass|fail)" | tee "$OUT/parity.txt"

step "HF home with MRPC and MiniLM (random weights if the real ones did not travel)"
export HF_HOME=${HF_HOME:-/tmp/gpu-hf-home}
if [ ! -d "$HF_HOME/hub/models--sentence-transformers--all-MiniLM-L6-v2" ]; then
  mkdir -p "$HF_HOME/hub" && cp -r .gpu/hf-home/hub/* "$HF_HOME/hub/"
  commit=0000000000000000000000000000000000000001
  snap=$HF_HOME/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/$commit
  mkdir -p "$snap" "$(dirname "$snap")/../refs" && echo -n $commit > "$(dirname "$snap")/../refs/main"
  cp .gpu/minilm/* "$snap/"
  (cd /tmp && python3 -c "
import sys, torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained('$snap')).save_pretrained('$snap')")
fi
export HF_HUB_OFFLINE=1

step "benchmark: shape (bert-base config) on $DEVICE"
node dist/scripts/bench/bench.js --workload shape --device "$DEVICE" --rounds 1 --out "$OUT" 2>&1 | tail -15

step "benchmark: quick (MiniLM, MRPC) on $DEVICE"
node dist/scripts/bench/bench.js --workload quick --device "$DEVICE" --rounds 1 --steps 200 --out "$OUT" 2>&1 | tail -20

step "done"
