"""Reference computations with PyTorch + Hugging Face transformers, driven by the Node tests.

Usage: python hf_ref.py <command> <json-args>: prints one JSON object. python hf_ref.py --serve SOCKET PID IDLE_S: one
request a line ({"id", "command", "args"}) on each connection to the Unix socket, one answer a line ({"id", "result"} or
{"id", "error"}), so that the test suite pays for importing torch and transformers (5-8 s) once, not once a call or a
file (test/helpers.ts starts it)."""
import contextlib
import json
import os
import sys

import torch
from safetensors.torch import save_file


def batch_tensors(b):
    bs, seq = b["shape"]
    t = lambda k: torch.tensor(b[k], dtype=torch.long).view(bs, seq)
    out = {"input_ids": t("inputIds"), "attention_mask": t("attentionMask"), "token_type_ids": t("tokenTypeIds")}
    return out, torch.tensor(b["labels"], dtype=torch.long if b.get("labelsInt", True) else torch.float)


def make_model(a):
    from transformers import BertConfig, BertForSequenceClassification, BertForPreTraining
    torch.manual_seed(a.get("seed", 0))
    cfg = BertConfig(**a["config"])
    kind = a.get("kind", "classification")
    if kind == "pretraining":
        m = BertForPreTraining(cfg)
    else:
        m = BertForSequenceClassification(cfg)
    # A non-trivial LayerNorm and bias state, so loading mistakes show up in the logits.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "LayerNorm" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    if kind == "base":
        m.bert.save_pretrained(a["dir"])
    else:
        m.save_pretrained(a["dir"])
    return {"ok": True}


def reference(a):
    """Eval logits + loss, then `steps` training steps with AdamW + clip_grad_norm_ as the HF Trainer builds them."""
    from transformers import BertForSequenceClassification
    torch.set_num_threads(a.get("threads", 1))
    dev = torch.device(a.get("device", "cpu"))  # the bf16 comparison runs on the device under test
    m = BertForSequenceClassification.from_pretrained(a["dir"]).to(dev)
    inputs, labels = batch_tensors(a["batch"])
    inputs, labels = {k: v.to(dev) for k, v in inputs.items()}, labels.to(dev)
    # bf16: forward and loss under torch.autocast, backward outside it, as the Trainer does with bf16=True.
    autocast = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if a.get("bf16") else contextlib.nullcontext
    m.eval()
    with torch.no_grad(), autocast():
        out = m(**inputs, labels=labels)
    result = {"logits": out.logits.float().flatten().tolist(), "loss": out.loss.item()}
    decay = [p for n, p in m.named_parameters() if not ("LayerNorm" in n or n.endswith("bias"))]
    no_decay = [p for n, p in m.named_parameters() if "LayerNorm" in n or n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a["lr"], betas=(0.9, 0.999), eps=a.get("eps", 1e-8), foreach=False)
    m.train()  # dropout probabilities are 0 in the config, so train mode is deterministic
    norms, losses = [], []
    for _ in range(a["steps"]):
        with autocast():
            out = m(**inputs, labels=labels)
        out.loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(m.parameters(), a["maxGradNorm"]).item())
        losses.append(out.loss.item())
        opt.step()
        opt.zero_grad()
    result["gradNorms"] = norms
    result["trainLosses"] = losses
    save_file({n: p.detach().cpu().contiguous() for n, p in m.named_parameters()}, a["out"])
    return result


def dropout_draws(a):
    """Training-mode losses of one batch, `draws` times (new dropout masks each time), the weights fixed."""
    from transformers import BertForSequenceClassification
    torch.set_num_threads(a.get("threads", 1))
    torch.manual_seed(a["seed"])
    m = BertForSequenceClassification.from_pretrained(a["dir"])
    m.train()
    inputs, labels = batch_tensors(a["batch"])
    # Copies of the batch in one forward: every element draws its own mask, so each copy's mean cross-entropy (the
    # loss of a forward of the batch alone) is an independent draw; 50 a forward instead of one, for time.
    rows, copies, losses = labels.shape[0], 50, []
    with torch.no_grad():
        while len(losses) < a["draws"]:
            logits = m(**{k: v.repeat(copies, 1) for k, v in inputs.items()}).logits
            per_row = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), labels.repeat(copies), reduction="none")
            losses += per_row.view(copies, rows).mean(1).tolist()
    return {"losses": losses[:a["draws"]]}


def optim_reference(a):
    """`steps` training steps of the model in a["dir"] on one batch with the optimizer the HF Trainer builds for
    TrainingArguments(optim=..., optim_args=..., label_smoothing_factor=...): its own class, kwargs and decay groups,
    clip_grad_norm_, and the LabelSmoother's loss when smoothing. Saves the parameters; returns losses and norms."""
    import tempfile
    from transformers import BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.trainer_pt_utils import LabelSmoother
    torch.set_num_threads(a.get("threads", 1))
    m = BertForSequenceClassification.from_pretrained(a["dir"])
    inputs, labels = batch_tensors(a["batch"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, optim=a["optim"], optim_args=a.get("optimArgs"), learning_rate=a["lr"], weight_decay=a["weightDecay"],
                                 adam_epsilon=a.get("eps", 1e-8), label_smoothing_factor=a.get("labelSmoothing", 0.0), report_to=[], use_cpu=True)
        trainer = Trainer(model=m, args=args)
        trainer.create_optimizer()
        opt = trainer.optimizer
    smoother = LabelSmoother(epsilon=args.label_smoothing_factor) if args.label_smoothing_factor > 0 else None
    m.train()
    norms, losses = [], []
    for _ in range(a["steps"]):
        out = m(**inputs, labels=None if smoother else labels)
        loss = smoother(out, labels) if smoother else out.loss
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(m.parameters(), a["maxGradNorm"]).item())
        losses.append(loss.item())
        opt.step()
        opt.zero_grad()
    save_file({n: p.detach().contiguous() for n, p in m.named_parameters()}, a["out"])
    return {"losses": losses, "gradNorms": norms, "optimizer": type(opt).__name__, "defaults": {k: v for k, v in opt.defaults.items() if isinstance(v, (int, float, bool, str, type(None)))}}


def check_saved(a):
    from transformers import BertForSequenceClassification
    m, info = BertForSequenceClassification.from_pretrained(a["dir"], output_loading_info=True)
    m.eval()
    inputs, labels = batch_tensors(a["batch"])
    with torch.no_grad():
        out = m(**inputs)
    return {"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
            "mismatched": [str(x) for x in info.get("mismatched_keys", [])], "logits": out.logits.flatten().tolist()}


def schedules(a):
    """The learning rate transformers' get_scheduler gives at every step, for each case {kind, warmup, total}."""
    from transformers import get_scheduler
    out = []
    for c in a["cases"]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=a["lr"])
        sched = get_scheduler(c["kind"], opt, num_warmup_steps=c["warmup"], num_training_steps=c["total"], scheduler_specific_kwargs=c.get("kwargs") or None)
        lrs = []
        for _ in range(c["total"] + 1):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out.append(lrs)
    return out


def best_and_stop(a):
    """transformers' own logic on a sequence of evaluations [(global_step, metrics)]: EarlyStoppingCallback.on_evaluate,
    then Trainer._determine_best_metric, in the Trainer's order; returns where it stops and the best step and metric."""
    import tempfile
    from types import SimpleNamespace
    from transformers import EarlyStoppingCallback, Trainer, TrainerControl, TrainerState, TrainingArguments
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                             metric_for_best_model=a["metric"], greater_is_better=a.get("greaterIsBetter"), report_to=[])
    state, control = TrainerState(), TrainerControl()
    cb = EarlyStoppingCallback(early_stopping_patience=a["patience"], early_stopping_threshold=a["threshold"])
    stop = None
    for step, metrics in a["evals"]:
        state.global_step = step
        cb.on_evaluate(args, state, control, metrics)
        Trainer._determine_best_metric(SimpleNamespace(args=args, state=state), metrics, None)
        if control.should_training_stop:
            stop = step
            break
    return {"stopStep": stop, "bestMetric": state.best_metric, "bestGlobalStep": state.best_global_step, "greaterIsBetter": args.greater_is_better}


def head_inputs(a, cls_name):
    """The batch as the head takes it: multiple choice's rows are [examples, choices, seq]; labels by head."""
    b = a["batch"]
    bs, seq = b["shape"]
    t = lambda k: torch.tensor(b[k], dtype=torch.long).view(bs, seq)
    inputs = {"input_ids": t("inputIds"), "attention_mask": t("attentionMask"), "token_type_ids": t("tokenTypeIds")}
    labels = torch.tensor(b["labels"], dtype=torch.long)
    if cls_name.startswith(("DistilBert", "ModernBert")):  # these take no token types
        del inputs["token_type_ids"]
    if cls_name.endswith("ForMultipleChoice"):
        nc = b["numChoices"]
        inputs = {k: v.view(bs // nc, nc, seq) for k, v in inputs.items()}
        return inputs, {"labels": labels}
    if cls_name.endswith("ForQuestionAnswering"):
        pos = labels.view(bs, 2)
        return inputs, {"start_positions": pos[:, 0], "end_positions": pos[:, 1]}
    if cls_name.endswith(("ForTokenClassification", "ForMaskedLM")):
        return inputs, {"labels": labels.view(bs, seq)}
    return inputs, {"labels": labels}


def head_outputs(out):
    keys = [k for k in ("logits", "start_logits", "end_logits") if getattr(out, k, None) is not None]
    return {k: getattr(out, k).float().flatten().tolist() for k in keys} | {k + "_shape": list(getattr(out, k).shape) for k in keys}


def make_head_model(a):
    import transformers
    torch.manual_seed(a.get("seed", 0))
    config = transformers.AutoConfig.for_model(a.get("modelType", "bert"), **a["config"])
    m = getattr(transformers, a["architecture"])(config)
    with torch.no_grad():  # a non-trivial LayerNorm and bias state, so loading mistakes show up in the outputs
        for n, p in m.named_parameters():
            if "LayerNorm" in n or "layer_norm" in n or "norm." in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    m.save_pretrained(a["dir"])
    return {"ok": True, "keys": sorted(k for k, _ in m.state_dict().items())}


def head_reference(a):
    """Eval outputs and loss, then `steps` AdamW steps with clip_grad_norm_, for any head (transformers' class)."""
    import transformers
    torch.set_num_threads(a.get("threads", 1))
    cls_name = a["architecture"]
    m = getattr(transformers, cls_name).from_pretrained(a["dir"])
    inputs, labels = head_inputs(a, cls_name)
    m.eval()
    with torch.no_grad():
        plain = m(**inputs)
        out = m(**inputs, **labels)
    result = head_outputs(plain) | {"loss": out.loss.item()}
    # The Trainer's grouping: no decay for biases and every LayerNorm's parameters (get_parameter_names over nn.LayerNorm).
    norms = {n for mn, mod in m.named_modules() if isinstance(mod, torch.nn.LayerNorm) for n in (f"{mn}.weight", f"{mn}.bias")}
    no_decay_names = {n for n, _ in m.named_parameters() if n in norms or n.endswith("bias")}
    decay = [p for n, p in m.named_parameters() if n not in no_decay_names]
    no_decay = [p for n, p in m.named_parameters() if n in no_decay_names]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a["lr"], betas=(0.9, 0.999), eps=a.get("eps", 1e-8), foreach=False)
    m.train()  # dropout probabilities are 0 in the config
    losses = []
    for _ in range(a["steps"]):
        out = m(**inputs, **labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), a["maxGradNorm"])
        losses.append(out.loss.item())
        opt.step()
        opt.zero_grad()
    result["trainLosses"] = losses
    # Tied parameters under their source's name (named_parameters keeps whichever name comes first: for XLM-RoBERTa the
    # decoder's), as the model's own keys are: the embeddings hold the decoder's weight.
    tied = getattr(m, "_tied_weights_keys", None) or {}
    save_file({n: p.detach().cpu().contiguous() for n, p in m.named_parameters(remove_duplicate=False) if n not in tied}, a["out"])
    return result


def quantized_reference(a):
    """Outputs in fp32 and after torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8), its
    inputs' range reduced to 7 bits (as the module does) or not (reduceRange)."""
    import warnings
    import transformers
    torch.set_num_threads(a.get("threads", 1))
    m = getattr(transformers, a["architecture"]).from_pretrained(a["dir"]).eval()
    inputs, _ = head_inputs(a, a["architecture"])
    with torch.no_grad():
        fp32 = head_outputs(m(**inputs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            q = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
        if not a["reduceRange"]:  # the full 8-bit input range, as ours takes on VNNI CPUs (the module always passes True)
            for mod in q.modules():
                if isinstance(mod, torch.ao.nn.quantized.dynamic.Linear):
                    mod.forward = lambda x, mod=mod: torch.ops.quantized.linear_dynamic(x, mod._packed_params._packed_params, reduce_range=False)
        int8 = head_outputs(q(**inputs))
    return {"fp32": fp32, "int8": int8}


def head_check_saved(a):
    """Loads a folder with AutoModelFor<head>, as a user would: the loading report and the outputs."""
    import transformers
    auto = "AutoModelFor" + a["architecture"].split("For", 1)[1]
    m, info = getattr(transformers, auto).from_pretrained(a["dir"], output_loading_info=True)
    m.eval()
    inputs, _ = head_inputs(a, a["architecture"])
    with torch.no_grad():
        out = m(**inputs)
    return {"class": type(m).__name__, "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
            "mismatched": [str(x) for x in info.get("mismatched_keys", [])]} | head_outputs(out)


def ner_align(a):
    """run_ner.py's tokenize_and_align_labels on the same rows, both ways of label_all_tokens: input ids, word ids, labels.
    addPrefixSpace: as run_ner.py loads byte-level tokenizers (RoBERTa's) for pre-split words: RobertaTokenizerFast's
    add_prefix_space=True sets its ByteLevel pre-tokenizer's (done here on the test's generic fast tokenizer)."""
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers
    tok = AutoTokenizer.from_pretrained(a["dir"])
    if a.get("addPrefixSpace"):
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    label_list = a["labelList"]
    b_to_i_label = []
    for idx, label in enumerate(label_list):
        if label.startswith("B-") and label.replace("B-", "I-") in label_list:
            b_to_i_label.append(label_list.index(label.replace("B-", "I-")))
        else:
            b_to_i_label.append(idx)
    enc = tok(a["words"], padding=False, truncation=True, max_length=a["maxLength"], is_split_into_words=True)
    out = {"input_ids": enc["input_ids"], "word_ids": [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(a["words"]))]}
    for label_all_tokens in (False, True):
        labels = []
        for i, label in enumerate(a["tags"]):
            word_ids = enc.word_ids(batch_index=i)
            previous_word_idx = None
            label_ids = []
            for word_idx in word_ids:
                if word_idx is None:
                    label_ids.append(-100)
                elif word_idx != previous_word_idx:
                    label_ids.append(label[word_idx])
                else:
                    label_ids.append(b_to_i_label[label[word_idx]] if label_all_tokens else -100)
                previous_word_idx = word_idx
            labels.append(label_ids)
        out["labelAll" if label_all_tokens else "labels"] = labels
    return out


def seqeval_ref(a):
    """evaluate.load("seqeval").compute as the evaluate package computes it, from seqeval itself."""
    from seqeval.metrics import accuracy_score, classification_report
    report = classification_report(y_true=a["references"], y_pred=a["predictions"], output_dict=True, zero_division=0)
    report.pop("macro avg")
    report.pop("weighted avg")
    overall = report.pop("micro avg")
    scores = {t: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]), "number": int(v["support"])} for t, v in report.items()}
    scores["overall_precision"] = float(overall["precision"])
    scores["overall_recall"] = float(overall["recall"])
    scores["overall_f1"] = float(overall["f1-score"])
    scores["overall_accuracy"] = float(accuracy_score(y_true=a["references"], y_pred=a["predictions"]))
    return scores


def mlm_mask_stats(a):
    """DataCollatorForLanguageModeling(mlm_probability=p).torch_mask_tokens on the same batch, `draws` times: how many
    eligible tokens were chosen, and of those how many became [MASK], another token, or stayed; specials touched."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling
    tok = AutoTokenizer.from_pretrained(a["dir"])
    torch.manual_seed(a["seed"])
    coll = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=a["p"])
    bs, seq = a["shape"]
    ids = torch.tensor(a["inputIds"], dtype=torch.long).view(bs, seq)
    att = torch.tensor(a["attentionMask"], dtype=torch.long).view(bs, seq)
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (att == 0)  # run_mlm's special_tokens_mask, padded with 1
    mask_id = tok.convert_tokens_to_ids(tok.mask_token)
    c = {"eligible": 0, "chosen": 0, "mask": 0, "other": 0, "same": 0, "specialTouched": 0}
    for _ in range(a["draws"]):
        inputs, labels = coll.torch_mask_tokens(ids.clone(), special_tokens_mask=special.long())
        chosen = labels != -100
        c["eligible"] += int((~special).sum())
        c["chosen"] += int(chosen.sum())
        c["mask"] += int((chosen & (inputs == mask_id)).sum())
        c["same"] += int((chosen & (inputs == ids)).sum())
        c["other"] += int((chosen & (inputs != ids) & (inputs != mask_id)).sum())
        c["specialTouched"] += int((special & (chosen | (inputs != ids))).sum())
    return c


def qa_features(a):
    """run_qa.py's prepare_train_features and prepare_validation_features with transformers' fast tokenizer."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a["dir"])
    ex = a["examples"]
    enc = tok([e["question"].lstrip() for e in ex], [e["context"] for e in ex], truncation="only_second", max_length=a["maxSeqLength"],
              stride=a["docStride"], return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    out = {"input_ids": [], "sample": list(sample_mapping), "start_positions": [], "end_positions": [], "context_offsets": []}
    for i, offsets in enumerate(enc["offset_mapping"]):
        input_ids = enc["input_ids"][i]
        n = sum(enc["attention_mask"][i])
        out["input_ids"].append(input_ids[:n])
        cls_index = input_ids.index(tok.cls_token_id)
        sequence_ids = enc.sequence_ids(i)
        out["context_offsets"].append([list(o) if sequence_ids[k] == 1 else None for k, o in enumerate(offsets)][:n])
        answers = ex[sample_mapping[i]]["answers"]
        if len(answers["answer_start"]) == 0:
            out["start_positions"].append(cls_index); out["end_positions"].append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start_index = 0
        while sequence_ids[token_start_index] != 1:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != 1:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            out["start_positions"].append(cls_index); out["end_positions"].append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            out["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            out["end_positions"].append(token_end_index + 1)
    return out


def qa_postprocess(a):
    """utils_qa.py's postprocess_qa_predictions (run_qa.py's post-processing), on given logits per feature."""
    import numpy as np
    ex, feats = a["examples"], a["features"]
    n_best_size, max_answer_length, v2 = a["nBestSize"], a["maxAnswerLength"], a["v2"]
    features_per_example = {}
    for i, f in enumerate(feats):
        features_per_example.setdefault(f["example"], []).append(i)
    out = {}
    for example_index, example in enumerate(ex):
        min_null_prediction = None
        prelim_predictions = []
        for feature_index in features_per_example.get(example_index, []):
            start_logits = np.array(feats[feature_index]["start"], dtype=np.float32)
            end_logits = np.array(feats[feature_index]["end"], dtype=np.float32)
            offset_mapping = feats[feature_index]["offsets"]
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {"offsets": (0, 0), "score": feature_null_score, "start_logit": start_logits[0], "end_logit": end_logits[0]}
            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (start_index >= len(offset_mapping) or end_index >= len(offset_mapping) or offset_mapping[start_index] is None
                            or len(offset_mapping[start_index]) < 2 or offset_mapping[end_index] is None or len(offset_mapping[end_index]) < 2):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim_predictions.append({"offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                                               "score": start_logits[start_index] + end_logits[end_index],
                                               "start_logit": start_logits[start_index], "end_logit": end_logits[end_index]})
        if v2 and min_null_prediction is not None:
            prelim_predictions.append(min_null_prediction)
            null_score = min_null_prediction["score"]
        predictions = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best_size]
        if v2 and min_null_prediction is not None and not any(p["offsets"] == (0, 0) for p in predictions):
            predictions.append(min_null_prediction)
        context = example["context"]
        for pred in predictions:
            offsets = pred.pop("offsets")
            pred["text"] = context[offsets[0] : offsets[1]]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        if not v2:
            out[example["id"]] = predictions[0]["text"]
        else:
            i = 0
            while predictions[i]["text"] == "":
                i += 1
            best_non_null_pred = predictions[i]
            score_diff = null_score - best_non_null_pred["start_logit"] - best_non_null_pred["end_logit"]
            out[example["id"]] = "" if score_diff > a["threshold"] else best_non_null_pred["text"]
    return out


def squad_eval(a):
    """The official SQuAD v1.1 evaluation script's exact match and F1 (an empty answer scores only against an
    empty one, as the v2 script), on given predictions and answers."""
    import collections, re, string
    def normalize_answer(s):
        def remove_articles(text): return re.sub(r"\b(a|an|the)\b", " ", text)
        def white_space_fix(text): return " ".join(text.split())
        def remove_punc(text): return "".join(ch for ch in text if ch not in set(string.punctuation))
        return white_space_fix(remove_articles(remove_punc(s.lower())))
    def f1_score(prediction, ground_truth):
        p, t = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
        if len(p) == 0 or len(t) == 0:
            return int(p == t)
        common = collections.Counter(p) & collections.Counter(t)
        num_same = sum(common.values())
        if num_same == 0:
            return 0
        precision, recall = num_same / len(p), num_same / len(t)
        return (2 * precision * recall) / (precision + recall)
    em = f1 = 0
    for pid, pred in a["predictions"].items():
        truths = a["answers"][pid] or [""]
        em += max(float(normalize_answer(pred) == normalize_answer(t)) for t in truths)
        f1 += max(f1_score(pred, t) for t in truths)
    n = len(a["predictions"])
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def mlm_wwm_stats(a):
    """DataCollatorForLanguageModeling(whole_word_mask=True) on the texts, `draws` times: words chosen (of the
    eligible ones), words chosen only in part (must be none), chosen tokens, and how many became [MASK]."""
    import numpy as np
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling
    tok = AutoTokenizer.from_pretrained(a["dir"])
    torch.manual_seed(a["seed"])
    coll = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=a["p"], whole_word_mask=True)
    enc = tok(a["texts"], return_offsets_mapping=True, return_special_tokens_mask=True, padding=True, return_tensors="np")
    ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
    word_ids, _ = coll._calc_word_ids_and_prob_mask(offsets, special)
    mask_id = tok.convert_tokens_to_ids(tok.mask_token)
    c = {"words": 0, "wordsChosen": 0, "wordsPartly": 0, "tokensChosen": 0, "mask": 0, "specialTouched": 0}
    for _ in range(a["draws"]):
        inputs, labels = coll.torch_mask_tokens(torch.tensor(ids), special_tokens_mask=torch.tensor(special), offset_mapping=offsets)
        chosen = (labels != -100).numpy()
        inputs = inputs.numpy()
        for b in range(ids.shape[0]):
            for w in set(word_ids[b].tolist()) - {-1}:
                sel = chosen[b][word_ids[b] == w]
                c["words"] += 1
                c["wordsChosen"] += int(sel.all())
                c["wordsPartly"] += int(sel.any() and not sel.all())
        c["tokensChosen"] += int(chosen.sum())
        c["mask"] += int((chosen & (inputs == mask_id)).sum())
        c["specialTouched"] += int((special.astype(bool) & (chosen | (inputs != ids))).sum())
    return {"counts": c, "wordIds": word_ids.tolist()}


def make_tokenizer(a):
    """A tokenizer of another family's kind, trained with the tokenizers library on the given texts and saved by
    transformers (tokenizer.json + tokenizer_config.json): "bpe" is RoBERTa's (byte-level BPE, <s> A </s></s> B </s>),
    "unigram" XLM-RoBERTa's (NFKC, Metaspace, Unigram, the same pair template as a TemplateProcessing), "bpe-cls"
    ModernBERT's (byte-level BPE, [CLS] A [SEP] B [SEP], one token type) and "unigram-cls" DeBERTa-v3's (Metaspace
    Unigram, [CLS] A [SEP] B [SEP] with token type 1 on the second segment)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    kind = a["kind"]
    cls_style = kind.endswith("-cls")
    specials = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"] if cls_style else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bos, pad, eos, unk, mask = specials
    if kind.startswith("bpe"):
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=a.get("vocabSize", 400), special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        scheme = "first" if cls_style else "always"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme)
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme)
        trainer = trainers.UnigramTrainer(vocab_size=a.get("vocabSize", 300), special_tokens=specials, unk_token=unk, show_progress=False)
    tok.train_from_iterator(a["texts"], trainer)
    ids = [(t, tok.token_to_id(t)) for t in (bos, eos)]
    if kind == "bpe":
        tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)), add_prefix_space=False, trim_offsets=True)
    elif kind == "unigram":
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=ids)
    elif kind == "bpe-cls":
        tok.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0", special_tokens=ids)
    else:
        tok.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", special_tokens=ids)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
                                                unk_token=unk, pad_token=pad, mask_token=mask, model_max_length=a.get("maxLength", 64))
    fast.save_pretrained(a["dir"])
    return {"vocabSize": tok.get_vocab_size(), "padId": tok.token_to_id(pad), "clsId": tok.token_to_id(bos), "sepId": tok.token_to_id(eos)}


def tokenize_pairs(a):
    """transformers' fast tokenizer on texts (pairs when text2 is given): tokenizer(t1, t2, truncation=True, max_length)."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a["dir"])
    enc = tok(a["text1"], a.get("text2"), truncation=True, max_length=a["maxLength"], return_token_type_ids=True)
    return {"ids": enc["input_ids"], "typeIds": enc["token_type_ids"]}


COMMANDS = {"make-tokenizer": make_tokenizer, "tokenize-pairs": tokenize_pairs, "mlm-wwm-stats": mlm_wwm_stats,"qa-features": qa_features, "qa-postprocess": qa_postprocess, "squad-eval": squad_eval,"mlm-mask-stats": mlm_mask_stats,"ner-align": ner_align, "seqeval": seqeval_ref,"make-head-model": make_head_model, "head-reference": head_reference, "head-check-saved": head_check_saved, "quantized-reference": quantized_reference,"make-model": make_model, "reference": reference, "check-saved": check_saved, "schedules": schedules, "best-and-stop": best_and_stop,
            "optim-reference": optim_reference, "dropout-draws": dropout_draws}


def answer(req):
    """One request's answer line: {"id", "result"}, or {"id", "error"} with the traceback for the test that asked."""
    import traceback
    try:
        with contextlib.redirect_stdout(sys.stderr):  # print() in a command cannot break the protocol
            return json.dumps({"id": req["id"], "result": COMMANDS[req["command"]](req["args"])})
    except Exception:  # noqa: BLE001
        return json.dumps({"id": req["id"], "error": traceback.format_exc()})


def serve(path, watch_pid, idle_exit_s):
    """Answers requests, one a line, on the Unix socket `path`, for every test file of one `node --test` run, so that
    the suite imports torch and transformers once rather than once a file. One server a path: the first to hold
    `path`.lock binds, another exits at once. It exits when process `watch_pid` (the test runner) has gone, or after
    `idle_exit_s` seconds without a connection."""
    import fcntl
    import socket
    import threading
    import time
    lock = open(path + ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server holds the path
    # Native code writing to file descriptor 1 (the tokenizers trainers' progress bars) goes to the log with stderr.
    os.dup2(2, 1)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a dead server's socket
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    busy = threading.Lock()  # one command at a time: torch's thread count and seeds are process-wide
    count = threading.Lock()
    state = {"connections": 0, "last": time.monotonic()}

    def client(conn):
        try:
            with conn, conn.makefile("rwb") as f:
                for line in f:
                    with busy:
                        f.write((answer(json.loads(line)) + "\n").encode())
                    f.flush()
        except OSError:
            pass  # the test file ended mid-answer
        finally:
            with count:
                state["connections"] -= 1
                state["last"] = time.monotonic()

    def watch():
        while True:
            time.sleep(0.5)
            try:
                os.kill(watch_pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
            if not alive or (state["connections"] == 0 and time.monotonic() - state["last"] > idle_exit_s):
                for leftover in (path, path + ".lock", path + ".log"):  # the log is kept only where it crashed
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        conn, _ = server.accept()
        with count:
            state["connections"] += 1
        threading.Thread(target=client, args=(conn,), daemon=True).start()


def main():
    if sys.argv[1] == "--serve":
        return serve(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    cmd, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(COMMANDS[cmd](args)))


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
