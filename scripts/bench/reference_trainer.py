"""The Python notebook this product replaces, pointed at local files: the reference for acceptance and benchmarks.

load_dataset (the GLUE parquet files from the HF cache), AutoTokenizer, tokenizer(s1, s2, truncation=True),
DataCollatorWithPadding, AutoModelForSequenceClassification, Trainer with TrainingArguments defaults and
eval_strategy="epoch", and the GLUE metric (accuracy + F1 for MRPC, computed with scikit-learn as evaluate's glue
metric does; evaluate.load would fetch its script from the Hub). Prints one JSON object on the last line."""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
from huggingface_hub import hf_hub_download, snapshot_download
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from scipy.stats import pearsonr, spearmanr
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)

TEXT = {"mrpc": ("sentence1", "sentence2"), "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
        "wnli": ("sentence1", "sentence2"), "cola": ("sentence", None), "sst2": ("sentence", None),
        "qqp": ("question1", "question2"), "qnli": ("question", "sentence")}


class StepTimes(TrainerCallback):
    def __init__(self):
        self.times, self.t, self.epoch_ends = [], None, []
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kw):
        self.epoch_ends.append(time.perf_counter() - self.start)

    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="bert-base-uncased")
    p.add_argument("--task", default="mrpc")
    p.add_argument("--output-dir", default="test-trainer-py")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-strategy", default="steps")
    p.add_argument("--logging-steps", type=int, default=500)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--torch-compile", action="store_true", help="TrainingArguments(torch_compile=True): inductor")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    path = a.model if os.path.isdir(a.model) else snapshot_download(a.model)
    files = {s: hf_hub_download("nyu-mll/glue", f"{a.task}/{s}-00000-of-00001.parquet", repo_type="dataset") for s in ("train", "validation")}
    tokenizer = AutoTokenizer.from_pretrained(path)
    c1, c2 = TEXT[a.task]
    tok = lambda ex: tokenizer(ex[c1], ex[c2], truncation=True) if c2 else tokenizer(ex[c1], truncation=True)
    try:
        if os.environ.get("BENCH_NO_DATASETS"):  # exercises the path of machines without `datasets`
            raise ImportError("datasets disabled by BENCH_NO_DATASETS")
        from datasets import load_dataset
        tokenized = load_dataset("parquet", data_files=files).map(tok, batched=True)
    except ImportError:
        # Machines without `datasets` (the GPU image): the same rows through pyarrow, as a list of features.
        import pyarrow.parquet as pq
        tokenized = {}
        for split, f in files.items():
            cols = pq.read_table(f).to_pydict()
            enc = tok(cols)
            tokenized[split] = [{**{k: v[i] for k, v in enc.items()}, "labels": cols["label"][i]} for i in range(len(cols["label"]))]
    collator = DataCollatorWithPadding(tokenizer=tokenizer)
    num_labels = 1 if a.task == "stsb" else 2
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)

    def compute_metrics(eval_preds):
        logits, labels = eval_preds
        if a.task == "stsb":
            preds = logits.squeeze()
            return {"pearson": float(pearsonr(preds, labels)[0]), "spearmanr": float(spearmanr(preds, labels)[0])}
        preds = np.argmax(logits, axis=-1)
        if a.task == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(labels, preds))}
        out = {"accuracy": float(accuracy_score(labels, preds))}
        if a.task in ("mrpc", "qqp"):
            out["f1"] = float(f1_score(labels, preds))
        return out

    args = TrainingArguments(a.output_dir, eval_strategy="epoch", report_to="none", seed=a.seed, num_train_epochs=a.epochs,
                             max_steps=a.max_steps, use_cpu=a.device == "cpu", save_strategy=a.save_strategy,
                             logging_steps=a.logging_steps, bf16=a.bf16, torch_compile=a.torch_compile)
    timer = StepTimes()
    trainer = Trainer(model, args, train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                      data_collator=collator, processing_class=tokenizer, compute_metrics=compute_metrics, callbacks=[timer])
    t0 = time.perf_counter()
    timer.start = t0
    out = trainer.train()
    wall = time.perf_counter() - t0
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    result = {"global_step": out.global_step, "training_loss": out.training_loss, "metrics": out.metrics,
              "train_wall_s": wall, "log_history": trainer.state.log_history, "final_eval": evals[-1] if evals else None,
              "step_times_s": timer.times, "epoch_end_s": timer.epoch_ends, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
