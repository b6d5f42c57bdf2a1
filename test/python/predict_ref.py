"""Predictions of a saved checkpoint with transformers: python predict_ref.py <model_dir> <pairs.json> -> JSON list."""
import json
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

model, info = BertForSequenceClassification.from_pretrained(sys.argv[1], output_loading_info=True)
tok = AutoTokenizer.from_pretrained(sys.argv[1])
pairs = json.load(open(sys.argv[2]))
model.eval()
preds, logits = [], []
with torch.no_grad():
    for i in range(0, len(pairs), 32):
        chunk = pairs[i:i + 32]
        enc = tok([p[0] for p in chunk], [p[1] for p in chunk], truncation=True, padding=True, return_tensors="pt")
        out = model(**enc).logits
        preds += out.argmax(-1).tolist()
        logits += out.tolist()
print(json.dumps({"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]), "predictions": preds, "logits": logits}))
