// Two models training at once in one process (interleaved calls on the same addon) give exactly the weights they
// give trained one after the other: each model's dropout draws from its own generator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { tempDir } from './helpers.js';
import { BertForSequenceClassification, BertTokenizer, loadGlue, tokenizeDataset, Trainer, type TokenizedDataset } from '../src/index.js';

let work: { dir: string; cleanup: () => void }, hub: { cacheDir: string; offline: boolean };
let tok: BertTokenizer, train: TokenizedDataset;

before(async () => {
  work = tempDir('concurrency-test-');
  const home = await makeHfHome(path.join(work.dir, 'hf-home'));
  hub = { cacheDir: path.join(home, 'hub'), offline: true };
  tok = await BertTokenizer.fromPretrained('tiny/bert', hub);
  train = await tokenizeDataset(await loadGlue('mrpc', 'train', hub), tok);
});
after(() => work.cleanup());

/** Trains the tiny model (dropout 0.1, as bert-base) for 12 steps; returns the saved weights. */
async function run(seed: number, name: string): Promise<Buffer> {
  const model = await BertForSequenceClassification.fromPretrained('tiny/bert', { ...hub, device: 'cpu', threads: 1, labels: train.labelNames });
  const outputDir = path.join(work.dir, name);
  try {
    await new Trainer({ model, tokenizer: tok, trainDataset: train,
      args: { maxSteps: 12, outputDir, saveStrategy: 'no', evalStrategy: 'no', learningRate: 1e-3, seed } }).train();
    await model.save(outputDir);
  } finally {
    await model.dispose();
  }
  return readFileSync(path.join(outputDir, 'model.safetensors'));
}

test('two models training at once give the same weights as trained one after the other', async () => {
  const a = await run(1, 'seq-a');
  const b = await run(2, 'seq-b');
  assert.ok(!a.equals(b), 'different seeds should give different weights');
  const [a2, b2] = await Promise.all([run(1, 'par-a'), run(2, 'par-b')]);
  assert.ok(a2.equals(a), 'model A trained alongside B differs from A trained alone');
  assert.ok(b2.equals(b), 'model B trained alongside A differs from B trained alone');
});
