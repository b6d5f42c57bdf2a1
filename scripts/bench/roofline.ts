// Our side of the `roofline` workload (see roofline_ref.py): MiniLM-L6's config with random weights, the same
// MRPC-shaped batches, the Trainer's step (collate, forward + loss, backward, clip + fused AdamW), each phase timed:
// collation here, the others by the addon (model.phaseTimes()).
import { BertForSequenceClassification } from '../../src/model.js';
import { parseConfig } from '../../src/config.js';
import { collate } from '../../src/collator.js';
import type { EncodedDataset } from '../../src/tokenizer.js';
import { addon } from '../../src/native.js';

// `gemm SPEC`: the panel products' rates at SPEC.shapes (label: [m, k, n]), for the workload's peak beside libtorch's.
if (process.argv[2] === 'gemm') {
  const g = JSON.parse(process.argv[3]) as { shapes: Record<string, [number, number, number]>; threads: number };
  const rates = await addon().panelProductRates(Object.values(g.shapes), g.threads, 25);
  console.log(JSON.stringify(rates.length ? Object.fromEntries(Object.keys(g.shapes).map((k, i) => [k, rates[i]])) : null));
  process.exit(0);
}
const a = JSON.parse(process.argv[2]) as { config: Record<string, number>; lengths: number[][]; threads: number; warmup: number; bf16?: boolean };
const model = await BertForSequenceClassification.fromConfig(parseConfig({ ...a.config }, 'roofline config'), { device: 'cpu', threads: a.threads, seed: 0 });
if (a.bf16) await model.setMixedPrecision('bf16');
// The rows as the tokenizer leaves them (ids and offsets), so collation does what it does in training.
const all = a.lengths.flat();
const offsets = new Int32Array(all.length + 1);
all.forEach((n, i) => { offsets[i + 1] = offsets[i] + n; });
const data: EncodedDataset = { ids: new Int32Array(offsets[all.length]).map((_, i) => 1000 + ((i * 7919) % 28000)), typeIds: new Uint8Array(offsets[all.length]), offsets, length: all.length };
const labels = Int32Array.from({ length: all.length }, (_, i) => i % 2);
let row = 0, dataMs = 0, steps = 0, before = { forwardMs: 0, backwardMs: 0, optimizerMs: 0 };
for (let i = 0; i < a.lengths.length; i++) {
  if (i === a.warmup) before = await model.phaseTimes();
  const rows = Int32Array.from({ length: a.lengths[i].length }, () => row++);
  const t = performance.now();
  const batch = collate(data, rows, { padId: 0, labels });
  if (i >= a.warmup) dataMs += performance.now() - t;
  await model.trainStep(batch);
  await model.optimizerStep({ lr: 5e-5 });
  if (i >= a.warmup) steps++;
}
const after = await model.phaseTimes();
await model.dispose();
console.log(JSON.stringify({ steps, data_ms: dataMs / steps, forward_ms: (after.forwardMs - before.forwardMs) / steps,
  backward_ms: (after.backwardMs - before.backwardMs) / steps, optimizer_ms: (after.optimizerMs - before.optimizerMs) / steps }));
