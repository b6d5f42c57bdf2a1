#!/usr/bin/env bash
# Issue 16's remaining checks, in two device calls of a few minutes each (carry .gpu, see pack.sh):
#   `bash scripts/gpu/check-ddp-bf16.sh probe`  build; data parallelism over NCCL (world size 1, and 2 when the
#                                                machine has two GPUs); the bf16 first-use probe with cuDNN attention
#                                                on and off; bf16 parity against transformers under torch.autocast
#   `bash scripts/gpu/check-ddp-bf16.sh profile`  libtorch's profiler over one of our training steps, bf16 and fp32
#   `bash scripts/gpu/check-ddp-bf16.sh full [--sdpa-cudnn 0]`  3 epochs of bert-base-sized MRPC in bf16, ours then
#                                                the Python Trainer, raw outputs for `bench.js --from-raw`
# Dry run on a CPU machine: DEVICE=cpu bash scripts/gpu/check-ddp-bf16.sh probe
set -uo pipefail  # no -e: a failed step is logged and the next one still runs
cd "$(dirname "$0")/../.."
PHASE=${1:-probe}
DEVICE=${DEVICE:-cuda}
source scripts/gpu/lib.sh "log-$PHASE.txt"

step "machine"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"

step "build the addon against this machine's PyTorch"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
if ! timeout 240 node scripts/build-addon.js > "$OUT/build-$PHASE.txt" 2>&1; then
  grep -E "error" -A3 "$OUT/build-$PHASE.txt" | head -40
  echo "--- the c10d build failed here: building without it so the other checks still run"
  rm -rf build; BERT_ADDON_DISTRIBUTED=OFF timeout 240 node scripts/build-addon.js > "$OUT/build-$PHASE-nodist.txt" 2>&1 || { tail -30 "$OUT/build-$PHASE-nodist.txt"; exit 1; }
fi
grep -E "c10d|nccl" "$OUT/build-$PHASE.txt" | head -5
node -e "import('./dist/src/native.js').then(m => console.log(JSON.stringify(m.addon().runtime())))"
source scripts/gpu/hf-home.sh
MODEL_ARGS=(--threads 16 --device "$DEVICE" --json --logging-steps 10)

if [ "$PHASE" = probe ]; then
  step "data parallelism over NCCL, world size 1: --nproc-per-node 1 against a single process, 40 steps of MiniLM (random) on MRPC"
  common=(--model sentence-transformers/all-MiniLM-L6-v2 "${MODEL_ARGS[@]}" --max-steps 40 --save-strategy no --eval-strategy no)
  (cd /tmp && timeout 90 node "$OLDPWD/train.js" "${common[@]}" --output-dir /tmp/ddp-plain > "$OUT/ddp-plain.jsonl" 2>&1; echo "single process: exit $?")
  (cd /tmp && timeout 90 node "$OLDPWD/train.js" "${common[@]}" --nproc-per-node 1 --output-dir /tmp/ddp-ws1 > "$OUT/ddp-nccl-ws1.jsonl" 2>&1; echo "NCCL world size 1: exit $?")
  grep -h '"event":"start"' "$OUT/ddp-nccl-ws1.jsonl" | cut -c1-300
  grep -h '"loss"' "$OUT/ddp-plain.jsonl" | tail -2; grep -h '"loss"' "$OUT/ddp-nccl-ws1.jsonl" | tail -2
  cmp -s /tmp/ddp-plain/model.safetensors /tmp/ddp-ws1/model.safetensors && echo "NCCL world size 1: final weights identical to the single-process run" ||
    node scripts/gpu/weights-diff.mjs /tmp/ddp-plain/model.safetensors /tmp/ddp-ws1/model.safetensors
  tail -3 "$OUT/ddp-nccl-ws1.jsonl" | grep -v '"loss"' | cut -c1-400
  if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" -ge 2 ]; then
    (cd /tmp && timeout 120 node "$OLDPWD/train.js" "${common[@]}" --nproc-per-node 2 --output-dir /tmp/ddp-ws2 > "$OUT/ddp-nccl-ws2.jsonl" 2>&1; echo "NCCL world size 2: exit $?")
    tail -2 "$OUT/ddp-nccl-ws2.jsonl" | cut -c1-400
  else
    echo "one GPU here: no world-size-2 NCCL run"
  fi

  step "bf16 first-use cost per shape: cuDNN attention allowed (BERT_TRAINER_SDPA_CUDNN=1, PyTorch's default), then off (ours)"
  BERT_TRAINER_SDPA_CUDNN=1 timeout 60 node scripts/gpu/bf16_probe.mjs "$DEVICE" bf16
  BERT_TRAINER_SDPA_CUDNN=0 timeout 60 node scripts/gpu/bf16_probe.mjs "$DEVICE" bf16

  step "bf16 parity with transformers under torch.autocast on $DEVICE"
  TEST_DEVICE=$DEVICE timeout 150 node --test --test-name-pattern=bf16 dist/test/parity.test.js 2>&1 | grep -E "^# parity|^ok|^not ok|rror" | tee "$OUT/parity-bf16.txt"
elif [ "$PHASE" = profile ]; then
  step "libtorch's profiler over our 20th training step (bert-base-sized, MRPC, batch 8), bf16 then fp32: host time per operator"
  for prec in bf16 fp32; do
    flag=(); [ $prec = bf16 ] && flag=(--bf16)
    (cd /tmp && BERT_TRAINER_PROFILE=$OUT/trace-$prec.json timeout 120 node "$OLDPWD/train.js" --model bert-base-uncased "${MODEL_ARGS[@]}" "${flag[@]}" \
      --max-steps 25 --save-strategy no --eval-strategy no --output-dir /tmp/prof-$prec > "$OUT/profile-run-$prec.jsonl" 2>&1; echo "run: exit $?")
    grep -h '"event":"end"' "$OUT/profile-run-$prec.jsonl" | cut -c1-220
    python3 scripts/trace-summary.py "$OUT/trace-$prec.json" 30
  done
else
  [ "${2:-}" = --sdpa-cudnn ] && export BERT_TRAINER_SDPA_CUDNN=$3
  step "3 epochs of MRPC, bert-base-uncased (random), bf16: ours (BERT_TRAINER_SDPA_CUDNN=${BERT_TRAINER_SDPA_CUDNN:-default})"
  (cd /tmp && time timeout 200 node "$OLDPWD/train.js" --model bert-base-uncased "${MODEL_ARGS[@]}" --bf16 --output-dir /tmp/o > "$OUT/full-ours-bf16.jsonl")
  tail -1 "$OUT/full-ours-bf16.jsonl" | cut -c1-400
  step "the same with the Python Trainer (TrainingArguments bf16=True)"
  (cd /tmp && time TRANSFORMERS_VERBOSITY=error timeout 240 python3 "$OLDPWD/scripts/bench/reference_trainer.py" --model bert-base-uncased --threads 16 --device "$DEVICE" --output-dir /tmp/p --logging-steps 10 --bf16 > "$OUT/full-py-bf16.txt")
  tail -1 "$OUT/full-py-bf16.txt" | cut -c1-300
fi
step done
