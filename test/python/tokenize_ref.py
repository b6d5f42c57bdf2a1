"""Tokenizes sentence pairs with transformers' BertTokenizerFast: python tokenize_ref.py <args.json> <out.json>.
args: {"dir": model folder, "source": "tokenizer.json" | "vocab.txt", "pairs": [[a, b], ...], "maxLength": int | null}"""
import json
import os
import sys

from transformers import BertTokenizerFast

args = json.load(open(sys.argv[1]))
d = args["dir"]
# from_pretrained on a folder that holds only vocab.txt + tokenizer_config.json builds the WordPiece tokenizer
# from the vocabulary (transformers 5 no longer reads vocab_file= in the constructor).
tok = BertTokenizerFast.from_pretrained(d)
a = [p[0] for p in args["pairs"]]
b = [p[1] for p in args["pairs"]] if args["pairs"] and args["pairs"][0][1] is not None else None
kw = {"truncation": True}
if args.get("maxLength"):
    kw["max_length"] = args["maxLength"]
enc = tok(a, b, **kw) if b is not None else tok(a, **kw)
json.dump({"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"], "attention_mask": enc["attention_mask"]}, open(sys.argv[2], "w"))
