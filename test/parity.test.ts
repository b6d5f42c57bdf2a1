// The native core against PyTorch + transformers on the same files: logits, loss, 3 AdamW steps, save/load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { BertForSequenceClassification } from '../src/model.js';
import { readSafetensors } from '../src/safetensors.js';
import { TINY, batchJson, f32, hfRef, maxAbsDiff, tempDir, tinyBatch } from './helpers.js';

const THREADS = 1;
// TEST_DEVICE=cuda runs the addon on the GPU against transformers on the CPU (scripts/gpu/check.sh); there the
// tolerance is 1e-4 relative on logits (fp32, TF32 off), as GPU kernels order their sums differently.
const DEVICE = (process.env.TEST_DEVICE ?? 'cpu') as 'cpu' | 'cuda';
const ON_CPU = DEVICE === 'cpu';
const rel = (d: number, ref: ArrayLike<number>) => d / Math.max(1e-12, ...Array.from(ref, Math.abs));

for (const kind of ['classification', 'regression'] as const)
test(`${kind}: forward, loss, 3 AdamW steps and save match transformers`, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const modelDir = path.join(dir, 'hf');
    await hfRef('make-model', { dir: modelDir, seed: 3, config: { ...TINY, num_labels: kind === 'regression' ? 1 : 2 } });
    const { labels: classLabels, ...inputs } = tinyBatch();
    const batch = { ...inputs, labels: kind === 'regression' ? Float32Array.from([0.5, 3.25, 1.75]) as Int32Array | Float32Array : classLabels };
    // eps 1e-6, not AdamW's 1e-8: Adam divides each gradient element by its own RMS, so elements whose gradient is
    // near eps turn float32 summation-order noise (ours sums unpadded tokens, transformers padded ones) into update
    // differences; with 1e-8 one word-embedding element differed by 1.6e-5 relative on one CPU (5e-6 on another).
    const lr = 1e-3, weightDecay = 0.01, maxGradNorm = 0.5, steps = 3, eps = 1e-6;
    const ref = await hfRef('reference', { dir: modelDir, batch: { ...batchJson(batch as never), labels: Array.from(batch.labels), labelsInt: kind !== 'regression' }, lr, weightDecay, maxGradNorm, steps, eps,
      out: path.join(dir, 'ref-after.safetensors'), threads: THREADS });

    const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: DEVICE, threads: THREADS });
    assert.deepEqual(model.loadReport, { unused: [], newlyInitialized: [] });
    const out = await model.forward(batch);
    const logitDiff = maxAbsDiff(out.logits, ref.logits);
    const lossDiff = Math.abs(out.loss! - ref.loss);
    const gradNorms: number[] = [];
    for (let i = 0; i < steps; i++) {
      await model.trainStep(batch);
      gradNorms.push(await model.optimizerStep({ lr, weightDecay, maxGradNorm, eps }));
    }
    const ours = new Map((await model.stateDict()).map((t) => [t.name, f32(t.data)]));
    const theirs = (await readSafetensors(path.join(dir, 'ref-after.safetensors'))).tensors;
    let paramRel = 0;
    for (const t of theirs) {
      const a = ours.get(t.name);
      assert.ok(a, `missing ${t.name}`);
      const b = f32(t.data);
      let num = 0, den = 0;
      for (let i = 0; i < a.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); }
      paramRel = Math.max(paramRel, num / Math.max(den, 1e-12));
    }
    const normDiff = maxAbsDiff(gradNorms, ref.gradNorms);

    const saved = path.join(dir, 'saved');
    await model.save(saved);
    const after = await model.forward(batch);
    const check = await hfRef('check-saved', { dir: saved, batch: { ...batchJson(batch as never), labels: Array.from(batch.labels), labelsInt: kind !== 'regression' } });
    const savedDiff = maxAbsDiff(after.logits, check.logits);
    console.log(`parity ${kind} (${model.device}): logits max abs diff ${logitDiff.toExponential(2)}, loss diff ${lossDiff.toExponential(2)}, ` +
      `params after ${steps} AdamW steps max rel diff ${paramRel.toExponential(2)}, grad-norm diff ${normDiff.toExponential(2)}, ` +
      `saved checkpoint logits diff in transformers ${savedDiff.toExponential(2)}`);
    if (ON_CPU) {
      assert.ok(logitDiff <= 1e-5, `logits differ by ${logitDiff}`);
      assert.ok(lossDiff <= 1e-6, `loss differs by ${lossDiff}`);
    } else {
      assert.ok(rel(logitDiff, ref.logits) <= 1e-4, `logits differ by ${rel(logitDiff, ref.logits)} relative on ${DEVICE}`);
    }
    assert.ok(paramRel <= (ON_CPU ? 1e-5 : 1e-4), `parameters differ by ${paramRel} relative`);
    assert.deepEqual([check.missing, check.unexpected, check.mismatched], [[], [], []]);
    assert.ok(ON_CPU ? savedDiff <= 1e-5 : rel(savedDiff, check.logits) <= 1e-4, `saved logits differ by ${savedDiff}`);
    await model.dispose();
  } finally {
    cleanup();
  }
});

test('BertModel and BertForPreTraining checkpoints load with the transformers report', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await hfRef('make-model', { dir: path.join(dir, 'base'), seed: 1, config: TINY, kind: 'base' });
    await hfRef('make-model', { dir: path.join(dir, 'pre'), seed: 1, config: TINY, kind: 'pretraining' });
    const base = await BertForSequenceClassification.fromPretrained(path.join(dir, 'base'), { device: 'cpu' });
    assert.deepEqual(base.loadReport.newlyInitialized, ['classifier.weight', 'classifier.bias']);
    assert.deepEqual(base.loadReport.unused, []);
    const pre = await BertForSequenceClassification.fromPretrained(path.join(dir, 'pre'), { device: 'cpu' });
    assert.deepEqual(pre.loadReport.newlyInitialized, ['classifier.weight', 'classifier.bias']);
    assert.ok(pre.loadReport.unused.length > 0 && pre.loadReport.unused.every((k) => k.startsWith("cls.")), JSON.stringify(pre.loadReport));
    // The encoder weights are the checkpoint's, under the bert. prefix either way.
    const key = 'encoder.layer.1.attention.self.query.weight';
    for (const [m, file, name] of [[base, 'base', key], [pre, 'pre', `bert.${key}`]] as const) {
      const want = (await readSafetensors(path.join(dir, file, 'model.safetensors'))).tensors.find((t) => t.name === name)!;
      const got = (await m.stateDict()).find((t) => t.name === `bert.${key}`)!;
      assert.equal(maxAbsDiff(f32(got.data), f32(want.data)), 0);
    }
    await base.dispose();
    await pre.dispose();
  } finally {
    cleanup();
  }
});

test('bf16 autocast: logits, loss and 3 training losses within 1e-2 relative of transformers under torch.autocast', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const modelDir = path.join(dir, 'hf');
    await hfRef('make-model', { dir: modelDir, seed: 5, config: { ...TINY, num_labels: 2 } });
    const batch = tinyBatch();
    const lr = 1e-3, weightDecay = 0.01, maxGradNorm = 1, steps = 3;
    const ref = await hfRef('reference', { dir: modelDir, batch: { ...batchJson(batch), labels: Array.from(batch.labels) }, lr, weightDecay, maxGradNorm, steps,
      out: path.join(dir, 'ref-after.safetensors'), threads: THREADS, bf16: true, device: DEVICE });
    const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: DEVICE, threads: THREADS });
    try {
      const fp32 = await model.forward(batch);
      await model.setMixedPrecision('bf16');
      assert.equal(model.mixedPrecision, 'bf16');
      const out = await model.forward(batch);
      assert.ok(maxAbsDiff(out.logits, fp32.logits) > 0, 'bf16 gave the fp32 logits: autocast is not on');
      const losses: number[] = [];
      for (let i = 0; i < steps; i++) {
        losses.push(await model.trainStep(batch));
        await model.optimizerStep({ lr, weightDecay, maxGradNorm });
      }
      const logitRel = rel(maxAbsDiff(out.logits, ref.logits), ref.logits);
      const lossRel = Math.abs(out.loss! - ref.loss) / Math.abs(ref.loss);
      const trainRel = Math.max(...losses.map((l, i) => Math.abs(l - ref.trainLosses[i]) / Math.abs(ref.trainLosses[i])));
      console.log(`parity bf16 (${model.device}): logits ${logitRel.toExponential(2)} relative (fp32 vs bf16 here: ${rel(maxAbsDiff(out.logits, fp32.logits), fp32.logits).toExponential(2)}), ` +
        `loss ${lossRel.toExponential(2)}, training losses ${trainRel.toExponential(2)}`);
      assert.ok(logitRel <= 1e-2 && lossRel <= 1e-2 && trainRel <= 1e-2, JSON.stringify({ logitRel, lossRel, trainRel }));
      await model.setMixedPrecision('no');
      await assert.rejects(model.setMixedPrecision('fp16' as never), TypeError);
    } finally {
      await model.dispose();
    }
  } finally {
    cleanup();
  }
});
