"""Exports a saved BertForSequenceClassification (argv[1], a folder) to ONNX (argv[2]) with torch.onnx.export, batch
and sequence length dynamic, for the `shape` workload's onnxruntime-node column. Prints one JSON line."""
import json
import sys

import torch
from transformers import BertForSequenceClassification

model = BertForSequenceClassification.from_pretrained(sys.argv[1]).eval()
ids = torch.ones(2, 16, dtype=torch.long)
inputs = (ids, torch.ones_like(ids), torch.zeros_like(ids))
dims = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "token_type_ids": {0: "batch", 1: "seq"}}
with torch.no_grad():
    torch.onnx.export(model, inputs, sys.argv[2], input_names=list(dims), output_names=["logits"],
                      dynamic_axes={**dims, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
print(json.dumps({"onnx": sys.argv[2], "torch": torch.__version__}))
