// Micro-benchmark of one training step (MiniLM-L6 config, batch 8 x 52 with padding, 50 steps after 10 warm-up):
// forward+backward and clip+AdamW timed separately. PyTorch side: scripts/bench/step_micro_ref.py. `npm run bench:step`
import { BertForSequenceClassification, parseConfig } from '../../dist/src/index.js';
const cfg = parseConfig({ hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536 }, 'x');
const m = await BertForSequenceClassification.fromConfig(cfg, { device: 'cpu' });
const B = 8, S = 52;
const b = { shape: [B, S], inputIds: new Int32Array(B * S).map(() => 1000 + Math.floor(Math.random() * 20000)), attentionMask: new Int32Array(B * S).map((_, i) => (i % S < S - (Math.floor(i / S) * 3) ? 1 : 0)), tokenTypeIds: new Int32Array(B * S), labels: Int32Array.from({ length: B }, (_, i) => i % 2) };
let fb = 0, os = 0;
for (let i = 0; i < 60; i++) {
  let t = performance.now(); await m.trainStep(b); const a = performance.now() - t;
  t = performance.now(); await m.optimizerStep({ lr: 5e-5 }); const c = performance.now() - t;
  if (i >= 10) { fb += a; os += c; }
}
console.log(`fwd+bwd ${(fb / 50).toFixed(1)} ms, optimizer ${(os / 50).toFixed(1)} ms`);
