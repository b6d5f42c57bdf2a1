"""Summarises a Chrome trace written by BERT_TRAINER_PROFILE (libtorch's profiler over one training step): the
top-level operators by their own wall time on the host, the number of operator calls, and the step's span.
Usage: python3 scripts/trace-summary.py trace.json [N]"""
import collections
import json
import sys

events = json.load(open(sys.argv[1]))
events = events if isinstance(events, list) else events.get("traceEvents", [])
ops = sorted((e for e in events if e.get("ph") == "X"), key=lambda e: (e["ts"], -e.get("dur", 0)))
# Host time per operator excluding the operators it called (self time), so nested calls are not counted twice.
self_time = collections.defaultdict(float)
calls = collections.Counter()
stack = []
for e in ops:
    start, end = e["ts"], e["ts"] + e.get("dur", 0)
    while stack and stack[-1][1] <= start:
        stack.pop()
    if stack:
        self_time[stack[-1][0]] -= e.get("dur", 0)
    self_time[e["name"]] += e.get("dur", 0)
    calls[e["name"]] += 1
    stack.append((e["name"], end))
span = (max(e["ts"] + e.get("dur", 0) for e in ops) - min(e["ts"] for e in ops)) if ops else 0
busy = sum(max(v, 0) for v in self_time.values())
print(f"one training step: {span / 1000:.2f} ms from first to last operator, {sum(calls.values())} operator calls, "
      f"{busy / 1000:.2f} ms inside operators (host)")
for name, t in sorted(self_time.items(), key=lambda kv: -kv[1])[: int(sys.argv[2]) if len(sys.argv) > 2 else 25]:
    print(f"{t / 1000:9.2f} ms self  {calls[name]:5d} calls  {name}")
