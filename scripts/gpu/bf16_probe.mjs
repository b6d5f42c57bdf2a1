// Probe for issue 16: why bf16 autocast steps are slower than fp32 on the GPU. Times our forward (batch 1) and
// train step (batch 8) at one fixed length and at varying lengths, twice over the same lengths (a first-use cost
// per shape shows as pass 1 >> pass 2). argv: device precision.
import { BertForSequenceClassification } from '../../dist/src/model.js';
import { BERT_BASE_UNCASED, parseConfig } from '../../dist/src/config.js';
const [device = 'cuda', prec = 'bf16'] = process.argv.slice(2);
const model = await BertForSequenceClassification.fromConfig(parseConfig({ ...BERT_BASE_UNCASED }, 'cfg'), { device, seed: 0 });
await model.setMixedPrecision(prec);
const batch = (lengths) => {
  const s = Math.max(...lengths), n = lengths.length, ids = new Int32Array(n * s), m = new Int32Array(n * s);
  lengths.forEach((len, i) => { for (let t = 0; t < len; t++) { ids[i * s + t] = 1000 + ((i * 7919 + t * 104729) % 28000); m[i * s + t] = 1; } });
  return { shape: [n, s], inputIds: ids, attentionMask: m, tokenTypeIds: new Int32Array(n * s), labels: Int32Array.from({ length: n }, (_, i) => i % 2) };
};
const time = async (label, list, fn) => { const t = performance.now(); for (const l of list) await fn(l); console.log(`# ${prec} ${label}: ${((performance.now() - t) / list.length).toFixed(2)} ms each`); };
const fwd = (l) => model.forward({ ...batch(l), labels: undefined });
const step = async (l) => { await model.trainStep(batch(l)); await model.optimizerStep({ lr: 5e-5, maxGradNorm: 1 }); };
const fixed1 = Array(30).fill([64]), var1 = Array.from({ length: 40 }, (_, i) => [25 + i]);
const fixed8 = Array(15).fill(Array(8).fill(64)), var8 = Array.from({ length: 15 }, (_, i) => Array.from({ length: 8 }, (_, j) => 25 + ((i * 13 + j * 7) % 55)));
await time('fwd b1 S=64 warm-up', fixed1.slice(0, 3), fwd);
await time('fwd b1 S=64', fixed1, fwd);
await time('fwd b1 S=25..64 pass 1', var1, fwd);
await time('fwd b1 S=25..64 pass 2', var1, fwd);
await time('step b8 S=64 warm-up', fixed8.slice(0, 3), step);
await time('step b8 S=64 (no padding)', fixed8, step);
await time('step b8 padded pass 1', var8, step);
await time('step b8 padded pass 2', var8, step);
await model.dispose();
