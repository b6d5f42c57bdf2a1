// The onnxruntime-node column of the `shape` workload: the same weights exported to ONNX (onnx_export.py), run by
// onnxruntime-node (the engine transformers.js uses in Node) on the same inference batches as ours, same threads.
// argv: JSON { onnx, ortDir (where the bench installed onnxruntime-node), inferLengths, threads, warmup, serve }.
// serve: the `batch1` workload's side instead, as shape.ts's serve is ours.
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';

const a = JSON.parse(process.argv[2]) as { onnx: string; ortDir: string; inferLengths: Record<string, number[][]>; threads: number; warmup: number; serve?: boolean };
const ort = createRequire(path.join(a.ortDir, 'index.js'))('onnxruntime-node');
const session = await ort.InferenceSession.create(a.onnx, { intraOpNumThreads: a.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'] });
function feeds(lengths: number[]) {
  const s = Math.max(...lengths), n = lengths.length;
  const ids = new BigInt64Array(n * s), mask = new BigInt64Array(n * s);
  lengths.forEach((len, i) => { for (let t = 0; t < len; t++) { ids[i * s + t] = BigInt(1000 + Math.floor(Math.random() * 28000)); mask[i * s + t] = 1n; } });
  return { input_ids: new ort.Tensor('int64', ids, [n, s]), attention_mask: new ort.Tensor('int64', mask, [n, s]), token_type_ids: new ort.Tensor('int64', new BigInt64Array(n * s), [n, s]) };
}
if (a.serve) {
  // A line of batches (their lengths) in, the milliseconds they took out, until stdin closes.
  for await (const line of createInterface({ input: process.stdin })) {
    const t = performance.now();
    for (const l of JSON.parse(line) as number[][]) await session.run(feeds(l));
    console.log(JSON.stringify({ ms: performance.now() - t }));
  }
  process.exit(0);
}
const out: Record<string, number> = {};
for (const [bs, batches] of Object.entries(a.inferLengths)) {
  for (const l of batches.slice(0, a.warmup)) await session.run(feeds(l));
  const t = performance.now();
  let n = 0;
  for (const l of batches.slice(a.warmup)) { await session.run(feeds(l)); n += l.length; }
  out[bs] = n / ((performance.now() - t) / 1000);
}
console.log(JSON.stringify({ infer_seq_per_s: out, peak_rss_mb: process.resourceUsage().maxRSS / 1024 }));
