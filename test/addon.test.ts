// Electron safety: the addon is context-aware (loads and trains in several worker_threads at once) and uses
// Node-API only (no V8 or libnode symbols).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { makeTinyModel } from './fixtures.js';
import { root, tempDir } from './helpers.js';

test('the addon imports only Node-API symbols from the host', () => {
  const file = path.join(root, 'build', 'Release', 'bert_addon.node');
  const undef = execFileSync('nm', ['-D', '--undefined-only', file]).toString().split('\n').map((l) => l.trim().split(/\s+/).pop()!).filter(Boolean);
  const hostSyms = undef.filter((s) => /^_ZN2v8|^_ZN4node|^uv_|^node_/.test(s));
  assert.deepEqual(hostSyms, []);
  assert.ok(undef.some((s) => s.startsWith('napi_')));
});

test('4 worker_threads load the addon and train at once, each with the same result', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const model = await makeTinyModel(path.join(dir, 'm'));
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      (async () => {
        const { BertForSequenceClassification } = await import(workerData.index);
        const m = await BertForSequenceClassification.fromPretrained(workerData.model, { device: 'cpu', threads: 1 });
        const n = 2 * 6, ids = new Int32Array(n).map((_, i) => 5 + (i % 20));
        const batch = { shape: [2, 6], inputIds: ids, labels: Int32Array.from([0, 1]) };
        let loss = 0;
        for (let i = 0; i < 3; i++) { loss = await m.trainStep(batch); await m.optimizerStep({ lr: 1e-3 }); }
        const out = await m.forward(batch);
        await m.dispose();
        parentPort.postMessage(Array.from(out.logits));
      })().catch((e) => parentPort.postMessage({ error: e.message }));`;
    // Dropout stays on (0.1): each model draws from its own generator, so the four runs agree.
    const results = await Promise.all(Array.from({ length: 4 }, () => new Promise<unknown>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: { index: path.join(root, 'dist', 'src', 'index.js'), model } });
      w.once('message', resolve);
      w.once('error', reject);
    })));
    for (const r of results) assert.ok(Array.isArray(r), JSON.stringify(r));
    for (const r of results.slice(1)) assert.deepEqual(r, results[0]);
  } finally {
    cleanup();
  }
});
