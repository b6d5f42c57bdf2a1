// `npm run test:soak`: memory stays flat over epochs, load/dispose cycles and many forward calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { makeHfHome, makeTinyModel } from '../fixtures.js';
import { tempDir } from '../helpers.js';
import { BertForSequenceClassification, BertTokenizer, loadGlue, tokenizeDataset, Trainer } from '../../src/index.js';

// Run with --expose-gc (npm run test:soak) so garbage JS objects do not count as growth.
const rss = () => { (globalThis as { gc?: () => void }).gc?.(); return process.memoryUsage().rss; };

test('training for 8 epochs keeps RSS flat after the first (growth < 5%)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const home = await makeHfHome(path.join(dir, 'hf'), { train: 400 });
    const hub = { cacheDir: path.join(home, 'hub'), offline: true };
    const tok = await BertTokenizer.fromPretrained('tiny/bert', hub);
    const train = await tokenizeDataset(await loadGlue('mrpc', 'train', hub), tok);
    const val = await tokenizeDataset(await loadGlue('mrpc', 'validation', hub), tok);
    const model = await BertForSequenceClassification.fromPretrained('tiny/bert', { ...hub, device: 'cpu', labels: train.labelNames });
    const perEpoch: number[] = [];
    await new Trainer({ model, tokenizer: tok, trainDataset: train, evalDataset: val, events: { evaluate: () => { perEpoch.push(rss()); } },
      args: { numTrainEpochs: 8, outputDir: path.join(dir, 'out'), saveStrategy: 'no' } }).train();
    await model.dispose();
    const growth = (perEpoch[perEpoch.length - 1] - perEpoch[0]) / perEpoch[0];
    console.log(`RSS after each epoch (MB): ${perEpoch.map((r) => (r / 2 ** 20).toFixed(0)).join(', ')}; growth after epoch 1: ${(growth * 100).toFixed(2)}%`);
    assert.ok(growth < 0.05);
  } finally {
    cleanup();
  }
});

// Measured over 10,000 cycles: RSS rises in steps that follow V8's heapTotal (16 -> 42 MB, with 7 MB of it used)
// and settles by cycle ~6,000; RSS minus heapTotal stays within 147-153 MB throughout. So the leak check on the
// second 1,000 cycles excludes V8's heap reservation (a 1 KB-per-cycle native leak is ~0.7% of it).
const native = () => { rss(); const m = process.memoryUsage(); return m.rss - m.heapTotal; };
test('1,000 load/dispose cycles and 10,000 forward calls grow memory by < 10%, and the next 1,000 cycles native memory by < 2%', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const m = await makeTinyModel(path.join(dir, 'm'));
    const cycle = async () => { const x = await BertForSequenceClassification.fromPretrained(m, { device: 'cpu' }); await x.dispose(); };
    for (let i = 0; i < 50; i++) await cycle();
    const r0 = rss();
    for (let i = 0; i < 1000; i++) await cycle();
    const r1 = rss(), n1 = native();
    for (let i = 0; i < 1000; i++) await cycle();
    const r2 = rss(), n2 = native();
    const model = await BertForSequenceClassification.fromPretrained(m, { device: 'cpu' });
    const batch = { shape: [2, 8] as [number, number], inputIds: new Int32Array(16).map((_, i) => 5 + (i % 20)), attentionMask: new Int32Array(16).fill(1).map((v, i) => (i > 12 ? 0 : 1)) };
    for (let i = 0; i < 500; i++) await model.forward(batch);
    const f0 = rss();
    for (let i = 0; i < 10000; i++) await model.forward(batch);
    const f1 = rss();
    await model.dispose();
    console.log(`load/dispose: ${(r0 / 2 ** 20).toFixed(0)} -> ${(r1 / 2 ** 20).toFixed(0)} -> ${(r2 / 2 ** 20).toFixed(0)} MB (outside V8's heap: ${(n1 / 2 ** 20).toFixed(0)} -> ${(n2 / 2 ** 20).toFixed(0)} MB); forward: ${(f0 / 2 ** 20).toFixed(0)} -> ${(f1 / 2 ** 20).toFixed(0)} MB`);
    assert.ok((r1 - r0) / r0 < 0.1);
    assert.ok((n2 - n1) / n1 < 0.02);
    assert.ok((f1 - f0) / f0 < 0.1);
  } finally {
    cleanup();
  }
});
