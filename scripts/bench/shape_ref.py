"""PyTorch side of the `shape` workload: a random BertForSequenceClassification with bert-base-uncased's config on
MRPC-shaped batches. argv: JSON {"lengths": [[...], ...] per batch size, "threads", "device", "trainSteps", "warmup", "bf16"}.
Train steps are the Trainer's: forward + backward + clip_grad_norm_ + fused AdamW + zero_grad; with bf16 the
forward (and loss) runs under torch.autocast to bfloat16, as the Trainer's bf16=True does."""
import contextlib
import json
import resource
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
dev = torch.device(a["device"])
sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
torch.manual_seed(0)
if a.get("config"):  # --model-type: the family's base-size config, as AutoModelForSequenceClassification builds it
    c = dict(a["config"])
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(c.pop("model_type"), num_labels=2, **c)).to(dev)
else:
    model = BertForSequenceClassification(BertConfig(num_labels=2)).to(dev)
token_types = getattr(model.config, "type_vocab_size", 0) > 0  # DistilBERT takes none
autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if a.get("bf16") else contextlib.nullcontext


def batch(lengths):
    s = max(lengths)
    ids = torch.randint(1000, 29000, (len(lengths), s))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask
    out = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "labels": (torch.arange(len(lengths)) % 2).to(dev)}
    if token_types:
        out["token_type_ids"] = torch.zeros_like(ids).to(dev)
    return out


out = {"infer_seq_per_s": {}, "train_steps_per_s": None}
model.eval()
with torch.inference_mode():
    for bs, batches in a["inferLengths"].items():
        for lengths in (batches if a.get("warmAllShapes") else batches[: a["warmup"]]):
            with autocast():
                model(**{k: v for k, v in batch(lengths).items() if k != "labels"})
        sync()
        t = time.perf_counter()
        n = 0
        for lengths in batches[a["warmup"]:]:
            with autocast():
                model(**{k: v for k, v in batch(lengths).items() if k != "labels"})
            n += len(lengths)
        sync()
        out["infer_seq_per_s"][bs] = n / (time.perf_counter() - t)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
times = []
untimed = (len(a["trainLengths"]) if a.get("warmAllShapes") else 0) + a["warmup"]  # as shape.ts: a whole pass first on a GPU
for i, lengths in enumerate((a["trainLengths"] if a.get("warmAllShapes") else []) + a["trainLengths"]):
    b = batch(lengths)
    sync()
    t = time.perf_counter()
    with autocast():
        loss = model(**b).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    loss.item()
    sync()
    if i >= untimed:
        times.append(time.perf_counter() - t)
out["train_steps_per_s"] = len(times) / sum(times)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
