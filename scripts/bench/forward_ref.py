"""PyTorch eager forward latency of BertForSequenceClassification (bert-base-uncased config, random weights).
argv: JSON {"batch", "seq", "threads", "iters", "warmup"}; prints JSON {"ms": [...]}."""
import json
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()
ids = torch.randint(1000, 30000, (a["batch"], a["seq"]))
mask = torch.ones_like(ids)
types = torch.zeros_like(ids)
times = []
with torch.inference_mode():
    for i in range(a["warmup"] + a["iters"]):
        t = time.perf_counter()
        model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        if i >= a["warmup"]:
            times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"ms": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))
