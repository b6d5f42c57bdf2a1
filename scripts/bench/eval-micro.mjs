// Micro-benchmark of evaluation forwards (MiniLM-L6 config, random weights): batches of 32 and of 1 with MRPC-like
// lengths, after warm-up; prints ms per batch. A/B runs swap builds or environment variables around it.
import { BertForSequenceClassification, parseConfig } from '../../dist/src/index.js';
const cfg = parseConfig({ hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536 }, 'x');
const m = await BertForSequenceClassification.fromConfig(cfg, { device: 'cpu', threads: 2 });
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
const batch = (B) => {
  const lengths = Array.from({ length: B }, () => Math.round(25 + 55 * rnd())), S = Math.max(...lengths);
  const inputIds = new Int32Array(B * S), attentionMask = new Int32Array(B * S);
  lengths.forEach((n, b) => { for (let s = 0; s < n; s++) { inputIds[b * S + s] = 1000 + Math.floor(rnd() * 20000); attentionMask[b * S + s] = 1; } });
  return { shape: [B, S], inputIds, attentionMask };
};
for (const B of [32, 1]) {
  const batches = Array.from({ length: B === 1 ? 40 : 12 }, () => batch(B));
  for (const b of batches) await m.forward(b);  // every shape seen once
  const t = performance.now();
  for (let r = 0; r < 3; r++) for (const b of batches) await m.forward(b);
  console.log(`batch ${B}: ${((performance.now() - t) / (3 * batches.length)).toFixed(2)} ms`);
}
await m.dispose();
