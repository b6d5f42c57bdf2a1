// Where a batch-1 forward's time goes (MiniLM-L6 config, random weights, 40 sequences of 25-80 tokens as in
// eval-micro.mjs, 2 threads): the whole forward with the panel products (native/panel_gemm.cc, what a predicting
// model runs where the CPU has AVX2 or AVX-512) and with oneDNN's prepacked products instead (BERT_TRAINER_NO_PANELS=1);
// for the latter, the oneDNN products' own execution time within it (ONEDNN_VERBOSE=profile_exec, in a child process
// of its own, summed per forward) and their rate; and what the framework costs per encoder layer, from a tiny model
// (hidden 32, where the arithmetic is nothing) with 6 layers against 0. Prints one JSON line; run it alone (the
// cores are shared).
// Usage: node scripts/bench/batch1-breakdown.mjs
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BertForSequenceClassification, parseConfig } from '../../dist/src/index.js';
import { cpuInfo } from '../../dist/src/cpu.js';

const self = fileURLToPath(import.meta.url);
const mode = process.argv[2] ?? 'all';

let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const sequences = Array.from({ length: 40 }, () => {
  const n = Math.round(25 + 55 * rnd());
  return { shape: [1, n], inputIds: Int32Array.from({ length: n }, () => 1000 + Math.floor(rnd() * 20000)) };
});

/** ms per forward over `batches`, `passes` times after one warm pass (oneDNN generates kernels per new length). */
async function time(config, batches, passes) {
  const m = await BertForSequenceClassification.fromConfig(parseConfig(config, 'config'), { device: 'cpu', threads: 2 });
  try {
    for (const b of batches) await m.forward(b);
    const t = performance.now();
    for (let r = 0; r < passes; r++) for (const b of batches) await m.forward(b);
    return (performance.now() - t) / (passes * batches.length);
  } finally {
    await m.dispose();
  }
}
const minilm = { hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536 };

if (mode === 'products') {
  // The child under ONEDNN_VERBOSE: every product's execution line goes to stdout, which the parent sums.
  await time(minilm, sequences, 3);
  process.exit(0);
}
if (mode === 'forward') {
  console.log(JSON.stringify({ forward_ms: await time(minilm, sequences, 5) }));
  process.exit(0);
}
if (mode === 'tiny') {
  const tiny = (layers) => ({ hidden_size: 32, num_hidden_layers: layers, num_attention_heads: 2, intermediate_size: 64 });
  const fixed = Array.from({ length: 40 }, () => ({ shape: [1, 52], inputIds: new Int32Array(52).fill(1000) }));
  const l0 = await time(tiny(0), fixed, 50), l6 = await time(tiny(6), fixed, 50);
  console.log(JSON.stringify({ tiny_0_layers_ms: l0, tiny_6_layers_ms: l6 }));
  process.exit(0);
}

const child = (m, env = {}) => execFileSync(process.execPath, [self, m], { encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, ...env } });
const { forward_ms } = JSON.parse(child('forward'));
const onednn = { BERT_TRAINER_NO_PANELS: '1' };
const forward_ms_onednn = JSON.parse(child('forward', onednn)).forward_ms;
// Execution lines: onednn_verbose,v1,primitive,exec,cpu,inner_product,<impl>,<prop>,<mds>,<attrs>,<aux>,mbMicKocN,<ms>
const execs = child('products', { ...onednn, ONEDNN_VERBOSE: 'profile_exec' }).split('\n').map((l) => l.split(','))
  .filter((f) => f[3] === 'exec' && (f[5] === 'inner_product' || f[5] === 'matmul'));
// The warm pass's executions are the first quarter (each forward runs the same products): the first run of a new
// primitive is slow (its kernel's first touch), so only the 3 timed passes count.
const timed = execs.slice(execs.length / 4), forwards = 3 * sequences.length;
let ms = 0, flops = 0;
for (const f of timed) {
  const shape = /mb(\d+)ic(\d+)oc(\d+)/.exec(f[f.length - 2]);
  ms += Number(f[f.length - 1]);
  if (shape) flops += 2 * Number(shape[1]) * Number(shape[2]) * Number(shape[3]);
}
const tiny = JSON.parse(child('tiny'));
console.log(JSON.stringify({
  cpu: cpuInfo(),
  forward_ms,
  forward_ms_onednn,
  onednn_products_per_forward: timed.length / forwards,
  onednn_products_ms: ms / forwards,
  onednn_products_share: ms / forwards / forward_ms_onednn,
  onednn_products_gflop_per_s: flops / (ms * 1e6),
  framework_ms_per_layer: (tiny.tiny_6_layers_ms - tiny.tiny_0_layers_ms) / 6,
  tiny_0_layers_ms: tiny.tiny_0_layers_ms,
}));
