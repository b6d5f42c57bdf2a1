"""Reference for test/tokenizer-unicode.test.ts: python unicode_tokenize_ref.py <args.json> <out.json>.
args: {"dir": work folder, "singles": [...], "pairs": [[a, b], ...], "maxLengths": [null | int, ...]}.
Builds, from the corpus as the Rust normalizer and pre-tokenizer see it, an uncased and a cased vocabulary (words
seen twice or more, every character alone and as "##" continuation), writes each as a vocab.txt-only folder and as a
tokenizer.json folder (BertTokenizerFast.save_pretrained), and tokenizes the corpus with BertTokenizerFast in
batches, truncation=True, at each max_length."""
import json
import os
import sys
from collections import Counter

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertTokenizerFast

a = json.load(open(sys.argv[1]))
texts = a["singles"] + [t for p in a["pairs"] for t in p]
out = {}
for cased in (False, True):
    norm = BertNormalizer(lowercase=not cased)
    pre = BertPreTokenizer()
    words = Counter(w for t in texts for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(w for w, n in words.items() if n >= 2 and len(w) > 1) + chars + ["##" + c for c in chars]
    name = "cased" if cased else "uncased"
    vdir = os.path.join(a["dir"], f"{name}-vocab")
    os.makedirs(vdir, exist_ok=True)
    open(os.path.join(vdir, "vocab.txt"), "w", encoding="utf-8").write("\n".join(dict.fromkeys(vocab)) + "\n")
    json.dump({"do_lower_case": not cased, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}, open(os.path.join(vdir, "tokenizer_config.json"), "w"))
    tok = BertTokenizerFast.from_pretrained(vdir)
    jdir = os.path.join(a["dir"], f"{name}-json")
    tok.save_pretrained(jdir)
    if os.path.exists(os.path.join(jdir, "vocab.txt")):
        os.remove(os.path.join(jdir, "vocab.txt"))  # tokenizer.json alone must carry it
    for ml in a["maxLengths"]:
        kw = {"truncation": True, **({"max_length": ml} if ml else {})}
        s = tok(a["singles"], **kw)["input_ids"]
        p = tok([x for x, _ in a["pairs"]], [y for _, y in a["pairs"]], **kw)
        out[f"{name}/{json.dumps(ml)}"] = {"singles": s, "pairs": p["input_ids"], "pairTypes": p["token_type_ids"]}
json.dump(out, open(sys.argv[2], "w"))
