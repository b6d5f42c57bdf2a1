"""The Python side of the task benchmarks: what transformers' example scripts run_ner.py, run_qa.py and run_mlm.py
do, on the same local files the Node side reads, with the Trainer and TrainingArguments defaults.

--task ner: JSON Lines of tokens and string tags; labels sorted as run_ner's get_label_list; the first subword of a
  word labelled, the rest -100; DataCollatorForTokenClassification; seqeval's overall precision, recall, F1 and
  accuracy (what evaluate's "seqeval" metric returns; evaluate.load would fetch its script from the Hub).
--task qa: SQuAD v1.1 JSON; windows of --max-seq-length every --doc-stride, padded to the maximum length (run_qa's
  pad_to_max_length default); utils_qa's n-best post-processing and the official SQuAD v1.1 exact match and F1
  (test/python/hf_ref.py's implementations of both, which the tests check our TypeScript against).
--task mlm: a text file, line by line; DataCollatorForLanguageModeling(mlm_probability=0.15); eval loss,
  perplexity = exp(eval_loss) and masked-token accuracy, as run_mlm.py reports them.
Prints one JSON object on the last line: the train metrics, the last evaluation, step times and peak RSS."""
import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
from transformers import (AutoModelForMaskedLM, AutoModelForQuestionAnswering, AutoModelForTokenClassification,
                          AutoTokenizer, DataCollatorForLanguageModeling, DataCollatorForTokenClassification,
                          Trainer, TrainerCallback, TrainingArguments, default_data_collator)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "test", "python"))
import hf_ref  # noqa: E402  (qa_postprocess, squad_eval)


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.t = [], None

    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t)


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ner(a, tok, targs):
    train, val = read_jsonl(a.train_file), read_jsonl(a.validation_file)
    labels = sorted({t for r in train for t in r["ner_tags"]})
    label2id = {l: i for i, l in enumerate(labels)}
    model = AutoModelForTokenClassification.from_pretrained(a.model, num_labels=len(labels), label2id=label2id,
                                                            id2label={i: l for l, i in label2id.items()})

    def encode(rows):
        enc = tok([r["tokens"] for r in rows], truncation=True, max_length=a.max_seq_length, is_split_into_words=True)
        out = []
        for i, r in enumerate(rows):
            prev, lab = None, []
            for w in enc.word_ids(i):
                lab.append(-100 if w is None or w == prev else label2id[r["ner_tags"][w]])
                prev = w
            out.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                        "token_type_ids": enc["token_type_ids"][i], "labels": lab})
        return out

    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    def compute_metrics(p):
        preds = np.argmax(p.predictions, axis=2)
        true_p = [[labels[q] for q, l in zip(pr, la) if l != -100] for pr, la in zip(preds, p.label_ids)]
        true_l = [[labels[l] for q, l in zip(pr, la) if l != -100] for pr, la in zip(preds, p.label_ids)]
        return {"precision": precision_score(true_l, true_p), "recall": recall_score(true_l, true_p),
                "f1": f1_score(true_l, true_p), "accuracy": accuracy_score(true_l, true_p)}

    trainer = Trainer(model=model, args=targs, train_dataset=Rows(encode(train)), eval_dataset=Rows(encode(val)),
                      data_collator=DataCollatorForTokenClassification(tok), compute_metrics=compute_metrics)
    return trainer, None


def squad(path):
    out = []
    for article in json.load(open(path, encoding="utf-8"))["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                out.append({"id": qa["id"], "question": qa["question"], "context": para["context"],
                            "answers": {"text": [x["text"] for x in qa["answers"]], "answer_start": [x["answer_start"] for x in qa["answers"]]}})
    return out


def qa(a, tok, targs):
    train, val = squad(a.train_file), squad(a.validation_file)
    model = AutoModelForQuestionAnswering.from_pretrained(a.model)

    def windows(rows):
        return tok([r["question"].lstrip() for r in rows], [r["context"] for r in rows], truncation="only_second",
                   max_length=a.max_seq_length, stride=a.doc_stride, return_overflowing_tokens=True,
                   return_offsets_mapping=True, padding="max_length")

    # run_qa's prepare_train_features: the windows, and hf_ref.qa_features's answer labelling of the same windows
    # (the tests hold our windows and labels to it).
    enc = windows(train)
    feats = hf_ref.qa_features({"dir": a.model, "examples": train, "maxSeqLength": a.max_seq_length, "docStride": a.doc_stride})
    train_rows = [dict({k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids")},
                       start_positions=feats["start_positions"][i], end_positions=feats["end_positions"][i]) for i in range(len(enc["input_ids"]))]
    enc = windows(val)
    val_rows, val_feats = [], []
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        val_rows.append({k: enc[k][i] for k in ("input_ids", "attention_mask", "token_type_ids")})
        val_feats.append({"example": enc["overflow_to_sample_mapping"][i],
                          "offsets": [list(o) if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]})

    def compute_metrics(p):
        start, end = p.predictions
        fs = [dict(f, start=start[i].tolist(), end=end[i].tolist()) for i, f in enumerate(val_feats)]
        preds = hf_ref.qa_postprocess({"examples": val, "features": fs, "nBestSize": 20, "maxAnswerLength": 30, "v2": False, "threshold": 0.0})
        return hf_ref.squad_eval({"predictions": preds, "answers": {r["id"]: r["answers"]["text"] for r in val}})

    trainer = Trainer(model=model, args=targs, train_dataset=Rows(train_rows), data_collator=default_data_collator)
    return trainer, lambda: {f"eval_{k}": v for k, v in compute_metrics(trainer.predict(Rows(val_rows))).items()}


def mlm(a, tok, targs):
    def lines(path):
        with open(path, encoding="utf-8") as f:
            return [l for l in f.read().splitlines() if l.strip()]
    model = AutoModelForMaskedLM.from_pretrained(a.model)

    def encode(texts):
        enc = tok(texts, truncation=True, max_length=a.max_seq_length, return_special_tokens_mask=True)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]

    def compute_metrics(p):
        preds, labels = p.predictions.reshape(-1), p.label_ids.reshape(-1)
        keep = labels != -100
        return {"accuracy": float((preds[keep] == labels[keep]).mean())}

    trainer = Trainer(model=model, args=targs, train_dataset=Rows(encode(lines(a.train_file))), eval_dataset=Rows(encode(lines(a.validation_file))),
                      data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15), compute_metrics=compute_metrics,
                      preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(dim=-1))
    return trainer, None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=["ner", "qa", "mlm"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train-file", required=True)
    p.add_argument("--validation-file", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.model)
    if a.max_seq_length is None:
        a.max_seq_length = 384 if a.task == "qa" else min(tok.model_max_length, 1024)
    times = StepTimes()
    targs = TrainingArguments(output_dir=a.output_dir, num_train_epochs=a.epochs, learning_rate=a.learning_rate, seed=a.seed,
                              per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=a.batch_size,
                              eval_strategy="no" if a.task == "qa" else "epoch", save_strategy="no", report_to=[],
                              logging_steps=50, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
    trainer, evaluate = {"ner": ner, "qa": qa, "mlm": mlm}[a.task](a, tok, targs)
    trainer.add_callback(times)
    out = trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    last = evaluate() if evaluate else (evals[-1] if evals else {})
    if a.task == "mlm" and "eval_loss" in last:
        last["perplexity"] = math.exp(last["eval_loss"])
    print(json.dumps({"metrics": out.metrics, "eval": last, "step_times_s": times.times,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
