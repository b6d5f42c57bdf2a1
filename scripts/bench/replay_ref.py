"""PyTorch's side of the `replay` workload (see replay.ts): the Trainer's training step (DataCollatorWithPadding,
forward + cross-entropy, backward, clip_grad_norm_(1.0), AdamW(fused), linear schedule without warmup, as
TrainingArguments' defaults) written out as a loop, so that it can take ours' initial weights and ours' row order.
With dropout off, every step's loss must then be ours' to float noise; with it on, only the masks differ.
argv: mode, JSON spec. Prints one JSON line.
  train:   {model, orders, steps, total, seed, threads, evaluate} -> {losses[, accuracy, f1]}
  batches: {model, orders, out} -> writes 8 batches of 8 (epoch 2's first rows) as token ids
  dropout: {model, batches, draws, seed, threads} -> {losses[draw][batch]} in training mode, no step taken"""
import json
import sys

import pyarrow.parquet as pq
import torch
from huggingface_hub import hf_hub_download
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, get_linear_schedule_with_warmup

mode, a = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(a.get("threads", 2))


def mrpc(split, tok):
    """A split's rows and their encodings, as the notebook's tokenizer(s1, s2, truncation=True) makes them."""
    t = pq.read_table(hf_hub_download("nyu-mll/glue", f"mrpc/{split}-00000-of-00001.parquet", repo_type="dataset")).to_pydict()
    return t, tok(t["sentence1"], t["sentence2"], truncation=True)


def features(enc, rows):
    return [{k: enc[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in rows]


if mode == "train":
    torch.manual_seed(a["seed"])  # dropout masks only: the weights and the order come from ours
    tok = AutoTokenizer.from_pretrained(a["model"])
    data, enc = mrpc("train", tok)
    collate = DataCollatorWithPadding(tok)
    model = AutoModelForSequenceClassification.from_pretrained(a["model"])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    schedule = get_linear_schedule_with_warmup(opt, 0, a["total"])
    losses = []
    for order in json.load(open(a["orders"])):
        for s in range(0, len(order), 8):
            if len(losses) == a["steps"]:
                break
            rows = order[s:s + 8]
            batch = collate(features(enc, rows))
            batch["labels"] = torch.tensor([data["label"][i] for i in rows])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
    out = {"losses": losses}
    if a.get("evaluate"):
        vdata, venc = mrpc("validation", tok)
        model.eval()
        pred = []
        with torch.no_grad():
            for s in range(0, len(vdata["label"]), 8):
                pred += model(**collate(features(venc, range(s, min(s + 8, len(vdata["label"])))))).logits.argmax(-1).tolist()
        labels = vdata["label"]
        tp = sum(p == 1 and y == 1 for p, y in zip(pred, labels))
        out.update(accuracy=sum(p == y for p, y in zip(pred, labels)) / len(labels), f1=2 * tp / (sum(pred) + sum(labels)))
    print(json.dumps(out))
elif mode == "batches":
    tok = AutoTokenizer.from_pretrained(a["model"])
    data, enc = mrpc("train", tok)
    order = json.load(open(a["orders"]))[1]
    out = []
    for s in range(0, 64, 8):
        b = tok.pad(features(enc, order[s:s + 8]))
        out.append({**{k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask")}, "labels": [data["label"][i] for i in order[s:s + 8]]})
    json.dump(out, open(a["out"], "w"))
    print(json.dumps({"batches": len(out)}))
elif mode == "dropout":
    torch.manual_seed(a["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(a["model"])
    model.train()
    batches = [{k: torch.tensor(v) for k, v in b.items()} for b in json.load(open(a["batches"]))]
    print(json.dumps({"losses": [[model(**b).loss.item() for b in batches] for _ in range(a["draws"])]}))
else:
    raise SystemExit(f"mode must be train, batches or dropout, got {mode}")
