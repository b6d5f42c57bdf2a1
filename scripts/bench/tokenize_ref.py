"""Python `tokenizers` (Rust) batch encoding of sentence pairs with truncation, as BertTokenizerFast runs it.
argv: tokenizer.json, pairs.json, rounds; prints JSON {"pairs_per_s": [...]}"""
import json
import sys
import time

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
tok.enable_truncation(512)
pairs = [tuple(p) for p in json.load(open(sys.argv[2]))]
rates = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    tok.encode_batch(pairs)
    rates.append(len(pairs) / (time.perf_counter() - t))
print(json.dumps({"pairs_per_s": rates}))
