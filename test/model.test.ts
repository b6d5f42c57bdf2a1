// The model's own invariants that no comparison with transformers covers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { BertForSequenceClassification, BertForTokenClassification } from '../src/model.js';
import { makeTinyModel } from './fixtures.js';
import { maxAbsDiff, tempDir } from './helpers.js';

const work = tempDir('model-test-');
after(() => work.cleanup());

for (const precision of ['no', 'bf16'] as const)
test(`evaluation (mixed precision: ${precision}) after an optimizer step or a load sees the new weights (kept QKV weights and casts are refreshed)`, async () => {
  const dir = await makeTinyModel(path.join(work.dir, `m-${precision}`));
  const a = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu', threads: 1 });
  const b = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu', threads: 1 });
  try {
    await a.setMixedPrecision(precision);
    await b.setMixedPrecision(precision);
    const batch = { shape: [2, 6] as [number, number], inputIds: Int32Array.from({ length: 12 }, (_, i) => 5 + (i % 20)) };
    const before = Array.from((await a.forward(batch)).logits);
    await a.trainStep({ ...batch, labels: Int32Array.from([0, 1]) });
    await a.optimizerStep({ lr: 0.1 });
    const stepped = Array.from((await a.forward(batch)).logits);
    assert.notDeepEqual(stepped, before, 'the forward after a step gave the old logits');
    // b, evaluated before the load, follows a's weights after it, and computes exactly what a fresh model loaded with
    // them computes. Against a's own logits: the same to float rounding (a has an optimizer, so its evaluation runs
    // training's products on the plain weights; b and c, predicting models, their own packed copies: in fp32 on an
    // AVX2/AVX-512 CPU the panel products, whose sums run in another order). A stale copy would be off by the step.
    await b.forward(batch);
    await a.save(path.join(work.dir, `a-${precision}`));
    await b.loadWeights(path.join(work.dir, `a-${precision}`, 'model.safetensors'));
    const loaded = Array.from((await b.forward(batch)).logits);
    assert.ok(maxAbsDiff(loaded, stepped) <= 1e-5, `after the load: ${loaded} against a's ${stepped}`);
    const c = await BertForSequenceClassification.fromPretrained(path.join(work.dir, `a-${precision}`), { device: 'cpu', threads: 1 });
    await c.setMixedPrecision(precision);
    assert.deepEqual(Array.from((await c.forward(batch)).logits), loaded);
    await c.dispose();
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('a training model evaluates padded batches as a predicting copy does (its products take training\'s row rounding, unfused)', async () => {
  const dir = await makeTinyModel(path.join(work.dir, 'm-rows'));
  const a = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu', threads: 1 });
  try {
    const train = { shape: [2, 6] as [number, number], inputIds: Int32Array.from({ length: 12 }, (_, i) => 5 + (i % 20)), labels: Int32Array.from([0, 1]) };
    await a.trainStep(train);
    await a.optimizerStep({ lr: 0.1 });
    await a.save(path.join(work.dir, 'a-rows'));
    const c = await BertForSequenceClassification.fromPretrained(path.join(work.dir, 'a-rows'), { device: 'cpu', threads: 1 });
    try {
      // Batches whose real tokens are not a multiple of 32 rows, each sequence padded differently.
      for (const lengths of [[3, 17, 9], [40, 2, 31, 7], [1, 1]]) {
        const S = Math.max(...lengths), B = lengths.length;
        const inputIds = new Int32Array(B * S), attentionMask = new Int32Array(B * S);
        lengths.forEach((n, b) => { for (let s = 0; s < n; s++) { inputIds[b * S + s] = 5 + ((b * 7 + s * 3) % 20); attentionMask[b * S + s] = 1; } });
        const batch = { shape: [B, S] as [number, number], inputIds, attentionMask };
        const got = Array.from((await a.forward(batch)).logits), want = Array.from((await c.forward(batch)).logits);
        assert.equal(got.length, B * 2);
        got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * Math.max(1, Math.abs(want[i])), `lengths ${lengths}: logit ${i} ${v} vs ${want[i]}`));
      }
    } finally {
      await c.dispose();
    }
  } finally {
    await a.dispose();
  }
});

// CPU training runs each layer's attention as one node over every sequence's own rows (native/attention.cc);
// BERT_TRAINER_UNFUSED_ATTENTION=1 runs the per-sequence libtorch operators it replaces. Both draw attention
// dropout's mask alike (a seed per sequence from the same generator), so with dropout on, over steps, losses and the
// weights they lead to agree to float rounding: the forward, the backward and the mask all enter. (SGD: Adam's
// normalised update would magnify rounding in near-zero gradients step by step.) Heads 8 wide (the tiny config) and
// 40 wide: on AVX2-only CPUs the per-pair tile kernels' masked last column group alone, and whole groups beside one.
for (const [Head, heads] of [[BertForSequenceClassification, {}], [BertForTokenClassification, {}], [BertForSequenceClassification, { hidden_size: 80, num_attention_heads: 2 }]] as const)
test(`${Head.name}: fused training attention (with dropout) matches the per-sequence operators${'hidden_size' in heads ? ', 40-wide heads' : ''}`, async () => {
  const tag = `${Head.name}${'hidden_size' in heads ? '-40' : ''}`;
  const dir = await makeTinyModel(path.join(work.dir, `m-att-${tag}`), 7, { attention_probs_dropout_prob: 0.3, hidden_dropout_prob: 0.1, ...heads });
  const lengths = [[3, 17, 9], [40, 2, 31, 7], [1, 5]];
  const batches = lengths.map((ls) => {
    const S = Math.max(...ls), B = ls.length;
    const inputIds = new Int32Array(B * S), attentionMask = new Int32Array(B * S);
    ls.forEach((n, b) => { for (let s = 0; s < n; s++) { inputIds[b * S + s] = 5 + ((b * 7 + s * 3) % 20); attentionMask[b * S + s] = 1; } });
    const labels = Head === BertForSequenceClassification ? Int32Array.from(ls, (_, b) => b % 2) : Int32Array.from(inputIds, (t, i) => (attentionMask[i] ? t % 2 : -100));
    return { shape: [B, S] as [number, number], inputIds, attentionMask, labels };
  });
  const run = async (unfused: boolean) => {
    const m = await Head.fromPretrained(dir, { device: 'cpu', threads: 2, seed: 3 });
    await m.setOptimizer({ optim: 'sgd' });
    if (unfused) process.env.BERT_TRAINER_UNFUSED_ATTENTION = '1';
    try {
      const losses: number[] = [];
      for (const b of [...batches, ...batches]) {
        losses.push(await m.trainStep(b));
        await m.optimizerStep({ lr: 0.5 });
      }
      return { losses, logits: Array.from((await m.forward(batches[1])).logits) };
    } finally {
      delete process.env.BERT_TRAINER_UNFUSED_ATTENTION;
      await m.dispose();
    }
  };
  const fused = await run(false), unfused = await run(true);
  for (let i = 0; i < fused.losses.length; i++) assert.ok(Math.abs(fused.losses[i] - unfused.losses[i]) < 1e-5, `step ${i}: loss ${fused.losses[i]} vs ${unfused.losses[i]}`);
  const diff = Math.max(...fused.logits.map((v, i) => Math.abs(v - unfused.logits[i])));
  assert.ok(diff < 1e-5, `logits after training differ by ${diff}`);
  // Dropout really is on: the same steps without it give other losses.
  assert.notDeepEqual(fused.losses.map((l) => l.toFixed(5)), (await (async () => {
    const d2 = await makeTinyModel(path.join(work.dir, `m-att0-${tag}`), 7, { attention_probs_dropout_prob: 0, hidden_dropout_prob: 0.1, ...heads });
    const m = await Head.fromPretrained(d2, { device: 'cpu', threads: 2, seed: 3 });
    await m.setOptimizer({ optim: 'sgd' });
    try { const l: number[] = []; for (const b of [...batches, ...batches]) { l.push(await m.trainStep(b)); await m.optimizerStep({ lr: 0.5 }); } return l; } finally { await m.dispose(); }
  })()).map((l) => l.toFixed(5)));
});

// Evaluation of a batch without padding (batch 1, or sequences of one length) runs attention as the same one node,
// each sequence a run of `seq` rows; BERT_TRAINER_UNFUSED_ATTENTION=1 runs SDPA over the [batch, seq] layout. Both
// heads: sequence classification's last layer attends from the first token only, token classification's from all.
for (const Head of [BertForSequenceClassification, BertForTokenClassification])
test(`${Head.name}: evaluation without padding through the one-node attention matches SDPA`, async () => {
  const dir = await makeTinyModel(path.join(work.dir, `m-nopad-${Head.name}`), 11);
  const m = await Head.fromPretrained(dir, { device: 'cpu', threads: 2 });
  try {
    for (const [B, S] of [[1, 1], [1, 23], [3, 9], [2, 40]]) {
      const batch = { shape: [B, S] as [number, number], inputIds: Int32Array.from({ length: B * S }, (_, i) => 5 + ((i * 7) % 20)) };
      const fused = Array.from((await m.forward(batch)).logits);
      process.env.BERT_TRAINER_UNFUSED_ATTENTION = '1';
      let sdpa: number[];
      try { sdpa = Array.from((await m.forward(batch)).logits); } finally { delete process.env.BERT_TRAINER_UNFUSED_ATTENTION; }
      assert.equal(fused.length, sdpa.length);
      const diff = Math.max(...fused.map((v, i) => Math.abs(v - sdpa[i])));
      assert.ok(diff < 1e-5, `[${B}, ${S}]: logits differ by ${diff}`);
    }
  } finally {
    await m.dispose();
  }
});
