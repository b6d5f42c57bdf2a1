// The optimizers TrainingArguments.optim names and label smoothing, against what the HF Trainer builds for the same
// arguments (its optimizer class, kwargs and decay groups; its LabelSmoother), 5 steps on one batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BertForSequenceClassification, OPTIMIZERS, type Optimizer } from '../src/model.js';
import { readSafetensors } from '../src/safetensors.js';
import { addon } from '../src/native.js';
import { adamRoundingAllowance, batchJson, hfRef, tempDir, tinyBatch, TINY } from './helpers.js';

const f32 = (d: Uint8Array) => new Float32Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));

// `vocab`: a word-embedding table of several of the blocks fused AdamW applies a table's row gradients in (2^18
// values each: 8,192 rows of TINY's 32), the batch's ids spread over all of them.
const cases: Array<{ optim: Optimizer; optimArgs?: string; labelSmoothing?: number; vocab?: number }> = [
  { optim: 'adamw_torch' }, { optim: 'adamw_torch_fused', labelSmoothing: 0.1 }, { optim: 'adamw_torch_fused', vocab: 20000 },
  { optim: 'sgd', optimArgs: 'momentum=0.9' }, { optim: 'sgd' }, { optim: 'adafactor' },
];

test('every optimizer is tested', () => assert.deepEqual([...new Set(cases.map((c) => c.optim))].sort(), [...OPTIMIZERS].sort()));

for (const c of cases)
test(`${c.optim}${c.optimArgs ? ` (${c.optimArgs})` : ''}${c.labelSmoothing ? ` with label smoothing ${c.labelSmoothing}` : ''}${c.vocab ? `, a ${c.vocab}-row vocabulary` : ''}: 5 steps match the HF Trainer's optimizer (1e-5 relative)`, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const modelDir = path.join(dir, 'hf');
    await hfRef('make-model', { dir: modelDir, seed: 5, config: c.vocab ? { ...TINY, vocab_size: c.vocab } : TINY });
    const batch = tinyBatch();
    if (c.vocab) batch.inputIds.forEach((id, i) => { if (id) batch.inputIds[i] = (id * 199) % c.vocab!; });
    // eps 1e-6 for the Adam family: see parity.test.ts (Adam turns summation-order noise of near-zero gradients into
    // update differences at 1e-8). Learning rates that move every optimizer's weights visibly in five steps;
    // Adafactor's 1e-3: it normalises each update to RMS 1, so at 1e-2 the loss falls from 0.67 to 0.13 in five
    // steps and rounding differences grow with it (2.8e-5 in one matrix; 9.5e-7 at 1e-3).
    const lr = c.optim === 'sgd' ? 0.5 : c.optim === 'adafactor' ? 1e-3 : 1e-2, weightDecay = 0.01, maxGradNorm = 1, steps = 5, eps = 1e-6;
    const ref = await hfRef('optim-reference', { dir: modelDir, batch: batchJson(batch), optim: c.optim, optimArgs: c.optimArgs ?? null,
      lr, weightDecay, eps, labelSmoothing: c.labelSmoothing ?? 0, maxGradNorm, steps, out: path.join(dir, 'ref.safetensors') });
    const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: 'cpu', threads: 1 });
    await model.setLabelSmoothing(c.labelSmoothing ?? 0);
    const momentum = c.optimArgs ? Number(c.optimArgs.split('=')[1]) : 0;
    const losses: number[] = [], norms: number[] = [];
    await model.setOptimizer({ optim: c.optim, weightDecay, eps, momentum, maxGradNorm });
    for (let i = 0; i < steps; i++) {
      losses.push(await model.trainStep(batch));
      norms.push(await model.optimizerStep({ lr }));
    }
    const ours = new Map((await model.stateDict()).map((t) => [t.name, f32(t.data)]));
    const before = new Map((await readSafetensors(path.join(modelDir, 'model.safetensors'))).tensors.map((t) => [t.name, f32(t.data)]));
    let rel = 0, worst = '', moved = 0;
    for (const t of (await readSafetensors(path.join(dir, 'ref.safetensors'))).tensors) {
      const a = ours.get(t.name)!, b = f32(t.data), b0 = before.get(t.name.replace(/^bert\./, 'bert.'));
      let num = 0, den = 0;
      for (let i = 0; i < a.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); if (b0) moved = Math.max(moved, Math.abs(b[i] - b0[i])); }
      if (/attention\.self\.key\.bias$/.test(t.name)) continue;  // zero gradient in theory: rounding noise (distributed.test.ts)
      const r = Math.max(0, num - (c.optim.startsWith('adamw') ? adamRoundingAllowance(steps, lr) : 0)) / den;
      if (r > rel) { rel = r; worst = t.name; }
    }
    console.log(`${c.optim}${c.labelSmoothing ? ' + smoothing' : ''}: weights after ${steps} steps within ${rel.toExponential(2)} relative (${worst}); ` +
      `losses ${losses.map((l) => l.toFixed(5)).join(' ')}; transformers built ${ref.optimizer} ${JSON.stringify(ref.defaults)}`);
    assert.ok(moved > 1e-3, `the optimizer barely moved the weights (${moved})`);
    assert.ok(rel <= 1e-5, `weights differ by ${rel} relative (${worst})`);
    losses.forEach((l, i) => assert.ok(Math.abs(l - ref.losses[i]) <= 1e-5 * Math.max(1, Math.abs(l)), `loss ${i}: ${l} vs ${ref.losses[i]}`));
    norms.forEach((n, i) => assert.ok(Math.abs(n - ref.gradNorms[i]) <= 1e-4 * Math.max(1, n), `grad norm ${i}: ${n} vs ${ref.gradNorms[i]}`));
    await model.dispose();
  } finally {
    cleanup();
  }
});

// Trains a 3,000-row vocabulary with fused AdamW (weight decay argv[3], clipping at 0.05 so the gradients are scaled):
// 3 steps whose batches reach new rows and leave earlier ones, a save and a resume of the weights and optimizer
// state, 2 steps more (one back on the first batch's rows); prints { tableAdamW, hashes } (weights after each part).
const LAZY_CHILD = `
const { BertForSequenceClassification, parseConfig, nativeAddon } = await import(process.argv[1]);
const { createHash } = await import('node:crypto');
const [dir, wd] = [process.argv[2], Number(process.argv[3])];
const config = parseConfig({ vocab_size: 3000, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 37,
  max_position_embeddings: 64, num_labels: 2, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 'lazy config');
const batch = (first) => ({ shape: [4, 16], inputIds: Int32Array.from({ length: 64 }, (_, j) => (first + j * 7) % 3000),
  attentionMask: new Int32Array(64).fill(1), labels: Int32Array.from([0, 1, 1, 0]) });
const settings = { optim: 'adamw_torch_fused', weightDecay: wd, maxGradNorm: 0.05 };
const hash = async (m) => { const h = createHash('sha256'); for (const t of await m.stateDict()) h.update(t.name).update(t.data); return h.digest('hex'); };
let m = await BertForSequenceClassification.fromConfig(config, { device: 'cpu', seed: 3, threads: 2 });
await m.setOptimizer(settings);
for (const first of [1, 500, 1200]) { await m.trainStep(batch(first)); await m.optimizerStep({ lr: 1e-2 }); }
const hashes = [await hash(m)];
await m.save(dir + '/model');
await m.saveOptimizerState(dir + '/optimizer.safetensors');
await m.dispose();
m = await BertForSequenceClassification.fromPretrained(dir + '/model', { device: 'cpu', threads: 2 });
await m.setOptimizer(settings);
await m.loadOptimizerState(dir + '/optimizer.safetensors');
for (const first of [1, 2000]) { await m.trainStep(batch(first)); await m.optimizerStep({ lr: 1e-2 }); }
hashes.push(await hash(m));
await m.dispose();
console.log(JSON.stringify({ tableAdamW: nativeAddon().runtime().tableAdamW, hashes }));
`;

// Fused AdamW over an embedding table's row gradients updates only the rows whose moments are set (optimizer.cc's
// LazyTableAdamW, where the CPU runs the AVX2 loops); every other row moves by weight decay alone. Bit for bit the
// dense update (BERT_TRAINER_DENSE_TABLE_ADAMW=1: every row, the path the 20,000-row case above checks against
// PyTorch), with and without weight decay, across a resume (the rows with moments found again in the loaded state).
test("fused AdamW's row-by-row table update gives the dense update's weights bit for bit", async () => {
  const index = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');
  const { dir, cleanup } = tempDir();
  try {
    for (const wd of [0.01, 0]) {
      const run = async (env: Record<string, string>, name: string) => {
        const out = path.join(dir, `${name}-${wd}`);
        mkdirSync(out);
        const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', LAZY_CHILD, index, out, String(wd)], { env: { ...process.env, ...env } });
        return JSON.parse(stdout.trim().split('\n').pop()!) as { tableAdamW: string; hashes: string[] };
      };
      const rows = await run({}, 'rows'), dense = await run({ BERT_TRAINER_DENSE_TABLE_ADAMW: '1' }, 'dense');
      assert.equal(rows.tableAdamW, addon().runtime().tableAdamW);
      assert.equal(dense.tableAdamW, 'dense');
      assert.deepEqual(rows.hashes, dense.hashes, `weight decay ${wd}: weights after 3 steps, and after a resume and 2 more`);
      assert.notEqual(rows.hashes[0], rows.hashes[1]);
    }
  } finally {
    cleanup();
  }
});

test('bad optimizer and schedule arguments: one message naming the flag; another optimizer\'s state is refused on load', async () => {
  const { validateArgs } = await import('../src/training-args.js');
  const { flagOf } = await import('../src/cli-flags.js');
  const bad = (a: object, re: RegExp) => assert.throws(() => validateArgs(a, flagOf), (e: Error) => e.name === 'UsageError' && re.test(e.message));
  bad({ optim: 'lion' }, /--optim must be one of adamw_torch_fused, adamw_torch, sgd, adafactor, got "lion"/);
  bad({ optim: 'sgd', optimArgs: 'momentum=2' }, /--optim-args must be momentum in \[0, 1\)/);
  bad({ optim: 'adafactor', optimArgs: 'momentum=0.9' }, /--optim-args must be keys adafactor takes here/);
  bad({ optimArgs: 'momentum' }, /--optim-args must be comma-separated key=value pairs/);
  bad({ lrSchedulerType: 'cosine_with_min_lr' }, /--lr-scheduler-kwargs must be exactly one of min_lr, min_lr_rate/);
  bad({ lrSchedulerType: 'linear', lrSchedulerKwargs: '{"num_cycles":2}' }, /--lr-scheduler-kwargs must be keys of the linear schedule \(none\)/);
  bad({ lrSchedulerKwargs: '{oops' }, /--lr-scheduler-kwargs must be a JSON object/);
  bad({ labelSmoothingFactor: 1 }, /--label-smoothing-factor must be in \[0, 1\)/);
  const { dir, cleanup } = tempDir();
  try {
    const modelDir = path.join(dir, 'hf');
    await hfRef('make-model', { dir: modelDir, seed: 5, config: TINY });
    const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: 'cpu', threads: 1 });
    await model.trainStep(tinyBatch());
    await model.setOptimizer({ optim: 'sgd', momentum: 0.9 });
    await model.optimizerStep({ lr: 0.1 });
    const file = path.join(dir, 'optimizer.safetensors');
    await model.saveOptimizerState(file);
    await assert.rejects(model.loadOptimizerState(file, 'adafactor'), /optim adafactor is not the optimizer setOptimizer made \(sgd\)/);
    await model.loadOptimizerState(file, 'sgd');
    const other = await BertForSequenceClassification.fromPretrained(modelDir, { device: 'cpu', threads: 1 });
    await other.setOptimizer({ optim: 'adafactor' });
    await assert.rejects(other.loadOptimizerState(file), /optimizer\.safetensors: holds sgd state; this run's optimizer is adafactor/);
    // The state belongs to the optimizer: new settings of the same kind keep it (as a param_group change does),
    // another kind starts afresh (as a new torch.optim object does).
    const stateNames = async (m: BertForSequenceClassification) => {
      const f = path.join(dir, 'state.safetensors');
      await m.saveOptimizerState(f);
      return (await readSafetensors(f)).tensors.map((t) => t.name).filter((n) => n !== 'step').length;
    };
    await model.setOptimizer({ optim: 'sgd', momentum: 0.5 });
    assert.ok((await stateNames(model)) > 0, 'momentum buffers kept after a settings change');
    await model.setOptimizer({ optim: 'adamw_torch' });
    assert.equal(await stateNames(model), 0, 'another optimizer starts with no state');
    await model.dispose();
    await other.dispose();
  } finally {
    cleanup();
  }
});
