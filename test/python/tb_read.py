"""Reads a TensorBoard run folder with tensorboard's own EventAccumulator: python tb_read.py <dir>.
Prints {"scalars": {tag: [[step, value], ...]}, "text": {tag: text}} as JSON."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]}, "text": {}}
for t in tags.get("tensors", []):
    ev = acc.Tensors(t)
    out["text"][t] = ev[-1].tensor_proto.string_val[0].decode("utf-8") if ev and ev[-1].tensor_proto.string_val else None
print(json.dumps(out))
