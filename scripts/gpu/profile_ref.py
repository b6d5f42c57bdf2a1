"""Where a training step's time goes on the GPU (issue 16): the Python reference's step (forward, backward, clip,
fused AdamW, zero_grad) on bert-base-shaped MRPC batches, under torch.profiler. Prints, per precision, the wall time
per step, the GPU-busy time per step (sum of kernel times) and kernels launched per step: when wall >> busy, the step
is bound by launching kernels from the host, not by the GPU. argv: device (default cuda)."""
import contextlib
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import BertConfig, BertForSequenceClassification

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
g = torch.Generator().manual_seed(7)
lengths = [[int(x) for x in torch.randint(25, 80, (8,), generator=g)] for _ in range(30)]


def batch(ls):
    s = max(ls)
    ids = torch.randint(1000, 29000, (len(ls), s), generator=g)
    mask = (torch.arange(s)[None, :] < torch.tensor(ls)[:, None]).long()
    return {"input_ids": (ids * mask).to(dev), "attention_mask": mask.to(dev), "token_type_ids": torch.zeros_like(ids).to(dev),
            "labels": (torch.arange(len(ls)) % 2).to(dev)}


for bf16 in (False, True):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    ac = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    batches = [batch(ls) for ls in lengths]

    def step(b):
        with ac():
            loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        loss.item()

    for b in batches[:10]:
        step(b)
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        t = time.perf_counter()
        for b in batches[10:]:
            step(b)
        sync()
        wall = (time.perf_counter() - t) / (len(batches) - 10)
    n = len(batches) - 10
    ev = prof.key_averages()
    dev_us = sum(e.self_device_time_total for e in ev if e.device_type == torch.autograd.DeviceType.CUDA) if dev.type == "cuda" else 0
    kernels = sum(e.count for e in ev if e.device_type == torch.autograd.DeviceType.CUDA) if dev.type == "cuda" else 0
    print(f"# profile {'bf16' if bf16 else 'fp32'}: wall {wall * 1000:.2f} ms/step (profiled), GPU busy {dev_us / n / 1000:.2f} ms/step, "
          f"{kernels / n:.0f} kernels/step")
    print(ev.table(sort_by="self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total", row_limit=12))
