"""The `roofline` workload's measurements with libtorch through PyTorch (the same libtorch build the addon links):
`gemm`: sustained matmul rate (median of repeats) at the shapes a training step multiplies, fp32 and bf16, and the
copy bandwidth an optimizer step is bound by; `step`: the PyTorch side of the per-phase step timing (the Trainer's
DataCollatorWithPadding, forward + loss, backward, clip_grad_norm_ + fused AdamW) on the same batches as ours.
argv: mode, JSON spec. Prints one JSON line."""
import json
import sys
import time

import torch

mode, a = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(a["threads"])


def rate(fn, flops, repeats=25):
    """The best of `repeats` timings: what the hardware sustains when nothing else on this shared machine interferes
    (a median would fold other tenants' load into the peak and flatter the step)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return flops / min(times) / 1e9


if mode == "gemm":
    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rows = {}
        for label, (m, k, n) in a["shapes"].items():
            x, w = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
            rows[label] = rate(lambda: torch.mm(x, w), 2 * m * k * n)
        out[name] = rows
    big = torch.empty(64 * 2**20 // 4)  # 64 MiB, past the caches
    src = torch.randn_like(big)
    out["copy_gb_s"] = rate(lambda: big.copy_(src), 2 * big.numel() * 4)  # bytes read + written
    print(json.dumps(out))
else:
    from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**a["config"])).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")), pad_token="[PAD]")
    collator = DataCollatorWithPadding(tok)
    rows, k = [], 0
    for b in a["lengths"]:
        feats = []
        for n in b:
            ids = [1000 + ((k * 7919 + t) % 28000) for t in range(n)]
            feats.append({"input_ids": ids, "token_type_ids": [0] * n, "attention_mask": [1] * n, "labels": k % 2})
            k += 1
        rows.append(feats)
    tot = {"data_ms": 0.0, "forward_ms": 0.0, "backward_ms": 0.0, "optimizer_ms": 0.0}
    steps = 0
    for i, feats in enumerate(rows):
        t0 = time.perf_counter()
        batch = collator(feats)
        t1 = time.perf_counter()
        loss = model(**batch).loss
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        t4 = time.perf_counter()
        if i >= a["warmup"]:
            steps += 1
            for key, d in (("data_ms", t1 - t0), ("forward_ms", t2 - t1), ("backward_ms", t3 - t2), ("optimizer_ms", t4 - t3)):
                tot[key] += d * 1000
    print(json.dumps({"steps": steps, **{k: v / steps for k, v in tot.items()}}))
