// Our side of the `shape` workload (see shape_ref.py): the same model config, batches and step definition; with
// `serve`, our side of the `batch1` workload instead: a line of batches (their lengths) in on stdin, the milliseconds
// they took out, until stdin closes (ort.ts does the same for onnxruntime-node).
import { createInterface } from 'node:readline';
import { BertForSequenceClassification } from '../../src/model.js';
import { BERT_BASE_UNCASED, parseConfig } from '../../src/config.js';

const a = JSON.parse(process.argv[2]) as { inferLengths: Record<string, number[][]>; trainLengths: number[][]; threads: number; device: string; warmup: number; bf16?: boolean; warmAllShapes?: boolean; config?: Record<string, unknown>; serve?: boolean };
// --model-type: the family's base-size config (bench.ts SHAPE_CONFIGS), else bert-base-uncased's.
const model = await BertForSequenceClassification.fromConfig(parseConfig(a.config ?? { ...BERT_BASE_UNCASED }, 'shape config'), { device: a.device as never, threads: a.threads, seed: 0 });
if (a.bf16) await model.setMixedPrecision('bf16');
function batch(lengths: number[]) {
  const s = Math.max(...lengths), n = lengths.length;
  const inputIds = new Int32Array(n * s), attentionMask = new Int32Array(n * s);
  lengths.forEach((len, i) => { for (let t = 0; t < len; t++) { inputIds[i * s + t] = 1000 + Math.floor(Math.random() * 28000); attentionMask[i * s + t] = 1; } });
  return { shape: [n, s] as [number, number], inputIds, attentionMask, tokenTypeIds: new Int32Array(n * s), labels: Int32Array.from({ length: n }, (_, i) => i % 2) };
}
if (a.serve) {
  for await (const line of createInterface({ input: process.stdin })) {
    const t = performance.now();
    for (const l of JSON.parse(line) as number[][]) await model.forward({ ...batch(l), labels: undefined });
    console.log(JSON.stringify({ ms: performance.now() - t }));
  }
  await model.dispose();
  process.exit(0);
}
const out: { infer_seq_per_s: Record<string, number>; train_steps_per_s: number; peak_rss_mb: number } = { infer_seq_per_s: {}, train_steps_per_s: 0, peak_rss_mb: 0 };
for (const [bs, batches] of Object.entries(a.inferLengths)) {
  for (const l of a.warmAllShapes ? batches : batches.slice(0, a.warmup)) await model.forward({ ...batch(l), labels: undefined });
  const t = performance.now();
  let n = 0;
  for (const l of batches.slice(a.warmup)) { await model.forward({ ...batch(l), labels: undefined }); n += l.length; }
  out.infer_seq_per_s[bs] = n / ((performance.now() - t) / 1000);
}
let total = 0, steps = 0;
if (a.warmAllShapes) for (const l of a.trainLengths) { await model.trainStep(batch(l)); await model.optimizerStep({ lr: 5e-5 }); }
for (let i = 0; i < a.trainLengths.length; i++) {
  const b = batch(a.trainLengths[i]);
  const t = performance.now();
  await model.trainStep(b);
  await model.optimizerStep({ lr: 5e-5 });
  if (i >= a.warmup) { total += performance.now() - t; steps++; }
}
out.train_steps_per_s = steps / (total / 1000);
await model.dispose();
out.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify(out));
