"""Accuracy over seeds, pooled from several `full` workload runs (bench/results/full-*.json written by
`npm run bench -- --workload full --seeds ...`): ours by seed (ours is deterministic at a fixed thread count, so a seed
run twice counts once, from the last file naming it), the Python Trainer's seeds from the same runs (its runs vary at a
fixed seed: its classifier head is drawn before the Trainer seeds, so the same rule applies to it). Prints each side's
median, range and mean over the seeds, and a two-sided permutation test of the difference of means (20,000
relabellings, seeded): how often seeds dealt at random to two groups of these sizes differ by as much.
Usage: python3 scripts/bench/seeds-summary.py bench/results/full-cpu-A.json [B.json ...]"""
import json
import random
import statistics
import sys


def main(files):
    if not files:
        raise SystemExit(__doc__)
    sides = {"ours": {}, "pytorch": {}}
    for f in files:
        try:
            with open(f) as fh:
                run = json.load(fh)
            seeds = run["seeds"]
            for side, by_seed in sides.items():
                for seed, fig in zip(seeds, run[side]):
                    by_seed[seed] = fig["accuracy"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{f}: not a full workload run with --seeds ({e})")
    values = {side: list(by_seed.values()) for side, by_seed in sides.items()}
    if not all(values.values()):
        raise SystemExit("no seed has both sides' accuracy in these files")
    for side, v in values.items():
        print(f"{side:8s} {len(v):3d} seeds  median {statistics.median(v):.4f}  range {min(v):.4f}-{max(v):.4f}  mean {statistics.mean(v):.4f}"
              f"  sd {statistics.stdev(v) if len(v) > 1 else 0:.4f}")
    ours, py = values["ours"], values["pytorch"]
    observed = statistics.mean(ours) - statistics.mean(py)
    pool, n, trials, hits = ours + py, len(ours), 20000, 0
    rng = random.Random(0)
    for _ in range(trials):
        rng.shuffle(pool)
        hits += abs(statistics.mean(pool[:n]) - statistics.mean(pool[n:])) >= abs(observed) - 1e-12
    inside = min(py) <= statistics.median(ours) <= max(py)
    print(f"difference of means (ours - pytorch) {observed:+.4f}, permutation p = {hits / trials:.3f}; "
          f"ours' median {'inside' if inside else 'outside'} the Python side's range")


if __name__ == "__main__":
    main(sys.argv[1:])
