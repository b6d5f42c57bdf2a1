#!/usr/bin/env bash
# The second, shorter device call of 2026-11-27 (issue 16), kept as the record of how the GPU table's 3-epoch row and
# the bf16 probe were made: bf16 parity alone, the bf16 probe, then 3 epochs of fp32 MRPC, ours then the Python
# Trainer, raw outputs to $OUT (bench.js --from-raw turns them into the benchmark JSON).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/.cache/gpu-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log2.txt") 2>&1
t0=$(date +%s); step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
mkdir -p /tmp/nodebin && xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node; export PATH=/tmp/nodebin:$PATH
[ -d node_modules ] || cp -r .gpu/node_modules node_modules; [ -d dist ] || cp -r .gpu/dist dist
step build
TORCH_CUDA_ARCH_LIST=9.0 timeout 120 node scripts/build-addon.js > "$OUT/build2.txt" 2>&1 || tail -20 "$OUT/build2.txt"
step "parity bf16 on cuda"
TEST_DEVICE=cuda timeout 35 node --test --test-name-pattern=bf16 dist/test/parity.test.js 2>&1 | grep -E "^# parity|^ok|^not ok|rror" | tee "$OUT/parity-bf16.txt"
step "probe bf16"
timeout 22 node scripts/gpu/bf16_probe.mjs cuda bf16
step "HF home"
export HF_HOME=/tmp/gpu-hf-home c=0000000000000000000000000000000000000001
d=$HF_HOME/hub/models--bert-base-uncased; mkdir -p "$d/snapshots/$c" "$d/refs" && echo -n $c > "$d/refs/main"
cp .gpu/minilm/* "$d/snapshots/$c/"; cp -r .gpu/hf-home/hub/* "$HF_HOME/hub/"
(cd /tmp && python3 -c "
import torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained('$d/snapshots/$c', hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)).save_pretrained('$d/snapshots/$c')" 2>&1 | grep -v Writing)
export HF_HUB_OFFLINE=1
step "full fp32, bert-base (random), 3 epochs MRPC: ours, then the Python Trainer (raw outputs, assembled later)"
(cd /tmp && time node "$OLDPWD/train.js" --model bert-base-uncased --threads 16 --device cuda --json --output-dir /tmp/o --logging-steps 50 > "$OUT/full-ours-fp32.jsonl")
tail -2 "$OUT/full-ours-fp32.jsonl" | cut -c1-600
(cd /tmp && time TRANSFORMERS_VERBOSITY=error python3 "$OLDPWD/scripts/bench/reference_trainer.py" --model bert-base-uncased --threads 16 --device cuda --output-dir /tmp/p --logging-steps 50 > "$OUT/full-py-fp32.txt")
tail -1 "$OUT/full-py-fp32.txt" | cut -c1-400
step done
