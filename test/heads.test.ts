// Every family's every head against transformers' class of the same name on the same files (a tiny random model
// that transformers makes: BERT, RoBERTa, XLM-RoBERTa, ELECTRA with a projected embedding, DistilBERT with learned and
// with sinusoidal positions): forward outputs, loss, 3 AdamW steps (the masked-LM decoder tied to the word
// embeddings gets both gradients), and the saved folder read back by AutoModelFor<head> with no missing or
// unexpected keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { BertForMaskedLM, BertForMultipleChoice, BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, BertPreTrainedModel } from '../src/model.js';
import { type Architecture, FAMILIES, type Head, headOf } from '../src/config.js';
import { readSafetensors } from '../src/safetensors.js';
import { writeFileSync } from 'node:fs';
import { TINY, adamRoundingAllowance, f32, hfRef, runCli, tempDir, tinyBatch } from './helpers.js';
import { DEBERTA_V2, DEBERTA_V3, DISTILBERT, makeHfHome, makeSwagRows, makeTinyModel, MODERNBERT, ROBERTA, TOPICS } from './fixtures.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { tokenizeChoices } from '../src/data.js';
import { Trainer } from '../src/trainer.js';

const THREADS = 1;
// TEST_DEVICE=cuda runs the per-head comparisons with the addon on the GPU (scripts/gpu/check.sh), transformers on the
// CPU; there 1e-4 relative to the largest reference value, as in test/parity.test.ts (GPU kernels sum in other orders).
const DEVICE = (process.env.TEST_DEVICE ?? 'cpu') as 'cpu' | 'cuda';
const TOL = DEVICE === 'cpu' ? 1e-5 : 1e-4;
const scale = (ref: ArrayLike<number>) => (DEVICE === 'cpu' ? 1 : Math.max(1, ...Array.from(ref, Math.abs)));
const CLASSES: Record<Head, typeof BertPreTrainedModel> = { SequenceClassification: BertForSequenceClassification, TokenClassification: BertForTokenClassification,
  QuestionAnswering: BertForQuestionAnswering, MaskedLM: BertForMaskedLM, MultipleChoice: BertForMultipleChoice };

// `seed` makes transformers' random model; 11 unless a case says otherwise.
const CASES: Array<{ modelType: keyof typeof FAMILIES; config: Record<string, unknown>; label: string; heads?: Head[]; seed?: number }> = [
  { modelType: 'bert', config: TINY, label: 'BERT' },
  { modelType: 'roberta', config: ROBERTA, label: 'RoBERTa' },
  { modelType: 'xlm-roberta', config: ROBERTA, label: 'XLM-RoBERTa' },
  { modelType: 'electra', config: { ...TINY, embedding_size: 16, summary_last_dropout: 0 }, label: 'ELECTRA (embedding_size 16, projected)' },
  { modelType: 'distilbert', config: DISTILBERT, label: 'DistilBERT' },
  { modelType: 'distilbert', config: { ...DISTILBERT, sinusoidal_pos_embds: true }, label: 'DistilBERT (sinusoidal positions)', heads: ['SequenceClassification', 'MaskedLM'] },
  { modelType: 'modernbert', config: MODERNBERT, label: 'ModernBERT (global and local layers, cls pooling)' },
  { modelType: 'modernbert', config: { ...MODERNBERT, classifier_pooling: 'mean', norm_bias: true, attention_bias: true, mlp_bias: true, classifier_bias: true,
    global_attn_every_n_layers: 2 }, label: 'ModernBERT (mean pooling, every bias, global every 2nd layer)', heads: ['SequenceClassification', 'MultipleChoice', 'MaskedLM'] },
  { modelType: 'deberta-v2', config: DEBERTA_V3, label: 'DeBERTa-v3 (position buckets, shared keys)' },
  { modelType: 'deberta-v2', config: { ...DEBERTA_V3, legacy: false }, label: 'DeBERTa-v3 (lm_predictions head)', heads: ['MaskedLM'] },
  // Seed 12: with 11, one embed_proj gradient of the token classifier is 7e-7 after clipping (a sum of terms of
  // 1e-1 that cancel), under AdamW's eps of 1e-6, where float32 rounding of the sum moves the first step by 1.6e-6.
  { modelType: 'deberta-v2', config: DEBERTA_V2, label: 'DeBERTa-v2 (unshared position projections, absolute positions, token types, embedding_size 16)',
    heads: ['SequenceClassification', 'TokenClassification', 'QuestionAnswering', 'MaskedLM'], seed: 12 },
];

/** A batch with padding (row 1 is 4 tokens short) and the labels each head reads; RoBERTa's padding is its pad id. */
function headBatch(arch: Architecture, modelType = 'bert') {
  const head = headOf(arch);
  const bs = head === 'MultipleChoice' ? 4 : 3, seq = 9;
  const b = tinyBatch(bs, seq, 7);
  const pad = (i: number) => b.attentionMask[i] === 0;
  if (modelType === 'roberta' || modelType === 'xlm-roberta') {
    b.inputIds.forEach((id, i) => { b.inputIds[i] = pad(i) ? 1 : id === 1 ? 3 : id; });
    b.tokenTypeIds.fill(0);
  }
  let labels: Int32Array;
  if (head === 'TokenClassification') labels = Int32Array.from({ length: bs * seq }, (_, i) => (pad(i) ? -100 : (i * 7) % 5));
  else if (head === 'MaskedLM') labels = Int32Array.from({ length: bs * seq }, (_, i) => (pad(i) || i % 3 ? -100 : (i * 13) % 100));
  else if (head === 'QuestionAnswering') labels = Int32Array.from([2, 5, 1, 3, 4, 30]);  // the last end is past seq: clamped and ignored
  else if (head === 'MultipleChoice') labels = Int32Array.from([1, 0]);  // 2 examples of 2 choices
  else labels = Int32Array.from([0, 2, 1]);
  return { ...b, labels, ...(head === 'MultipleChoice' ? { numChoices: 2 } : {}) };
}
const json = (b: ReturnType<typeof headBatch>) => ({ shape: b.shape, inputIds: [...b.inputIds], attentionMask: [...b.attentionMask], tokenTypeIds: [...b.tokenTypeIds],
  labels: [...b.labels], ...('numChoices' in b ? { numChoices: b.numChoices } : {}) });

/** The largest difference over the positions a head's logits are defined at (token-level heads: real tokens). */
function diff(arch: Architecture, name: string, ours: Float32Array, theirs: number[], b: ReturnType<typeof headBatch>, withLabels: boolean): number {
  let d = 0;
  const head = headOf(arch);
  if (head === 'MaskedLM' && withLabels) {
    // ours: the labelled positions' rows, in order; theirs: every position's
    const V = TINY.vocab_size;
    let r = 0;
    for (let i = 0; i < b.labels.length; i++) {
      if (b.labels[i] === -100) continue;
      for (let v = 0; v < V; v++) d = Math.max(d, Math.abs(ours[r * V + v] - theirs[i * V + v]));
      r++;
    }
    assert.equal(r * V, ours.length);
    return d;
  }
  assert.equal(ours.length, theirs.length, name);
  const per = ours.length / b.inputIds.length;
  for (let i = 0; i < ours.length; i++) {
    const token = Math.floor(i / per);
    if ((head === 'TokenClassification' || head === 'MaskedLM') && b.attentionMask[token] === 0) continue;
    d = Math.max(d, Math.abs(ours[i] - theirs[i]));
  }
  return d;
}

for (const c of CASES)
for (const head of c.heads ?? (FAMILIES[c.modelType].heads as readonly Head[]))
test(`${c.label} ${head}: outputs, loss, 3 AdamW steps and the saved folder match transformers`, async () => {
  const arch = `${FAMILIES[c.modelType].prefix}For${head}`;
  const { dir, cleanup } = tempDir('heads-');
  try {
    const hf = path.join(dir, 'hf');
    const config = { ...c.config, num_labels: head === 'TokenClassification' ? 5 : head === 'SequenceClassification' ? 3 : 2 };
    await hfRef('make-head-model', { dir: hf, seed: c.seed ?? 11, architecture: arch, modelType: c.modelType, config });
    const batch = headBatch(arch, c.modelType);
    const lr = 1e-3, weightDecay = 0.01, maxGradNorm = 0.5, steps = 3, eps = 1e-6;
    const ref = await hfRef('head-reference', { dir: hf, architecture: arch, batch: json(batch), lr, weightDecay, maxGradNorm, steps, eps,
      out: path.join(dir, 'ref-after.safetensors'), threads: THREADS });

    // The class's own head, and the one config.json names (as AutoModel) are the same model.
    const model: BertPreTrainedModel = await CLASSES[head].fromPretrained(hf, { device: DEVICE, threads: THREADS });
    const auto = await BertPreTrainedModel.fromPretrained(hf, { device: DEVICE, threads: THREADS });
    try {
      assert.equal(auto.architecture, arch);
      assert.deepEqual(model.loadReport, { unused: [], newlyInitialized: [] });
      const { labels, ...inputs } = batch;
      const plain = await model.forward(inputs);
      const withLabels = await model.forward(batch);
      const names = head === 'QuestionAnswering' ? [['startLogits', 'start_logits'], ['endLogits', 'end_logits']] : [['logits', 'logits']];
      let outDiff = 0;
      for (const [ours, theirs] of names) {
        outDiff = Math.max(outDiff, diff(arch, theirs, (plain as unknown as Record<string, Float32Array>)[ours], ref[theirs], batch, false) / scale(ref[theirs]));
        assert.deepEqual(plain.shapes[ours], ref[`${theirs}_shape`], `${ours}'s shape`);
      }
      if (head === 'MaskedLM') outDiff = Math.max(outDiff, diff(arch, 'logits', withLabels.logits!, ref.logits, batch, true) / scale(ref.logits));
      const lossDiff = Math.abs(withLabels.loss! - ref.loss);
      const losses: number[] = [];
      await model.setOptimizer({ weightDecay, maxGradNorm, eps });
      for (let i = 0; i < steps; i++) {
        losses.push(await model.trainStep(batch));
        await model.optimizerStep({ lr });
      }
      const trainDiff = Math.max(...losses.map((l, i) => Math.abs(l - ref.trainLosses[i])));
      const ours = new Map((await model.stateDict()).map((t) => [t.name, f32(t.data)]));
      let paramRel = 0, worst = '';
      const theirs = (await readSafetensors(path.join(dir, 'ref-after.safetensors'))).tensors;
      assert.deepEqual([...ours.keys()].sort(), theirs.map((t) => t.name).sort(), 'the same parameters, by name');
      for (const t of theirs) {
        const a = ours.get(t.name)!, b = f32(t.data);
        let num = 0, den = 0;
        for (let i = 0; i < a.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); }
        if (t.name === 'qa_outputs.bias' || (head === 'MultipleChoice' && t.name === 'classifier.bias')) {
          // Adding a constant to every position's start (end) logit, or to every choice's, leaves the softmaxes
          // unchanged: this bias's gradient is zero in theory and rounding noise in practice, which Adam scales up to
          // steps of about lr.
          assert.ok(num <= steps * lr, `${t.name} moved ${num} apart, more than ${steps} Adam steps of lr ${lr} can`);
          continue;
        }
        const rel = Math.max(0, num - adamRoundingAllowance(steps, lr)) / Math.max(den, 1e-12);
        if (rel > paramRel) worst = t.name;
        paramRel = Math.max(paramRel, rel);
      }
      const saved = path.join(dir, 'saved');
      await model.save(saved);
      const after = await model.forward(inputs);
      const check = await hfRef('head-check-saved', { dir: saved, architecture: arch, batch: json(batch) });
      let savedDiff = 0;
      for (const [o, t] of names) savedDiff = Math.max(savedDiff, diff(arch, t, (after as unknown as Record<string, Float32Array>)[o], check[t], batch, false) / scale(check[t]));
      console.log(`heads ${arch} (${model.device}): outputs ${outDiff.toExponential(2)}, loss ${lossDiff.toExponential(2)}, 3 training losses ${trainDiff.toExponential(2)}, ` +
        `params after 3 AdamW steps ${paramRel.toExponential(2)} relative (${worst}), saved folder through ${check.class} ${savedDiff.toExponential(2)}`);
      assert.equal(check.class, arch);
      assert.deepEqual([check.missing, check.unexpected, check.mismatched], [[], [], []]);
      assert.ok(outDiff <= TOL, `outputs differ by ${outDiff}`);
      assert.ok(lossDiff <= TOL, `loss differs by ${lossDiff}`);
      assert.ok(trainDiff <= TOL, `training losses differ by ${trainDiff}`);
      assert.ok(paramRel <= TOL, `parameters after 3 steps differ by ${paramRel} relative`);
      assert.ok(savedDiff <= TOL, `the saved model's outputs differ by ${savedDiff} in transformers`);
    } finally {
      await model.dispose();
      await auto.dispose();
    }
  } finally {
    cleanup();
  }
});

test('a BertForPreTraining or BertForMaskedLM checkpoint keeps its MLM head in BertForMaskedLM and reports it unused elsewhere', async () => {
  const { dir, cleanup } = tempDir('heads-load-');
  try {
    await hfRef('make-model', { dir: path.join(dir, 'pre'), seed: 2, kind: 'pretraining', config: TINY });
    const mlm = await BertForMaskedLM.fromPretrained(path.join(dir, 'pre'), { device: 'cpu' });
    const cls = await BertForTokenClassification.fromPretrained(path.join(dir, 'pre'), { device: 'cpu', labels: ['O', 'B-X', 'I-X'] });
    try {
      assert.deepEqual(mlm.loadReport.newlyInitialized, []);
      // As from_pretrained reports them: the next-sentence head and the pooler (BertForMaskedLM has none).
      assert.deepEqual(mlm.loadReport.unused.sort(), ['bert.pooler.dense.bias', 'bert.pooler.dense.weight', 'cls.seq_relationship.bias', 'cls.seq_relationship.weight']);
      assert.ok(cls.loadReport.unused.some((k) => k.startsWith('cls.predictions.')));
      assert.deepEqual(cls.loadReport.newlyInitialized.sort(), ['classifier.bias', 'classifier.weight']);
      assert.ok(!cls.parameterNames.some((n) => n.startsWith('bert.pooler.')), 'token classification has no pooler, as transformers builds it');
    } finally {
      await mlm.dispose();
      await cls.dispose();
    }
  } finally {
    cleanup();
  }
});

test('multiple choice (run_swag.py\'s shape): tokenizeChoices and the Trainer in the library, and node train.js swag; accuracy rises', async () => {
  const { dir, cleanup } = tempDir('heads-mc-');
  try {
    const modelDir = await makeTinyModel(path.join(dir, 'tiny'));
    let s = 3;
    const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    // "the X saw the" -> the right ending repeats X.
    const rows = (n: number) => Array.from({ length: n }, () => {
      const x = TOPICS[Math.floor(rnd() * TOPICS.length)], label = Math.floor(rnd() * 4);
      const others = TOPICS.filter((t) => t !== x).sort(() => rnd() - 0.5);
      return { context: `the ${x} saw the`, choices: [0, 1, 2, 3].map((c) => `${c === label ? x : others[c]} .`), label };
    });
    const tok = await BertTokenizer.fromPretrained(modelDir);
    const train = tokenizeChoices(rows(320), tok), validation = tokenizeChoices(rows(64), tok);
    assert.equal(train.enc.length, 320 * 4);
    const model = await BertForMultipleChoice.fromPretrained(modelDir, { device: 'cpu', threads: THREADS });
    try {
      const trainer = new Trainer({ model, tokenizer: tok, trainDataset: train, evalDataset: validation,
        args: { outputDir: path.join(dir, 'out'), numTrainEpochs: 4, learningRate: 3e-3, perDeviceTrainBatchSize: 8, saveStrategy: 'no', evalStrategy: 'no' } });
      const before = await trainer.evaluate();
      await trainer.train();
      const after = await trainer.evaluate();
      console.log(`multiple choice: accuracy ${before.eval_accuracy} -> ${after.eval_accuracy}, loss ${before.eval_loss.toFixed(4)} -> ${after.eval_loss.toFixed(4)}`);
      assert.ok(after.eval_loss < before.eval_loss && after.eval_accuracy > 0.5, JSON.stringify({ before, after }));
      const { predictions, logits } = await trainer.predict(validation);
      assert.equal(predictions.length, 64);
      assert.equal(logits.length, 64 * 4);
    } finally {
      await model.dispose();
    }
    // The same from the command line: node train.js swag on SWAG-format rows.
    const csv = (name: string, rs: Array<Record<string, string | number>>) => {
      const cols = Object.keys(rs[0]), f = path.join(dir, name);
      writeFileSync(f, cols.join(',') + '\n' + rs.map((r) => cols.map((c) => r[c]).join(',')).join('\n') + '\n');
      return f;
    };
    const home = await makeHfHome(path.join(dir, 'hf-home'));
    const r = await runCli(['swag', '--model', modelDir, '--train-file', csv('train.csv', makeSwagRows(320, 1)), '--validation-file', csv('val.csv', makeSwagRows(64, 2)),
      '--output-dir', path.join(dir, 'swag-out'), '--epochs', '4', '--learning-rate', '3e-3', '--threads', '1', '--device', 'cpu', '--save-strategy', 'no', '--json'], { HF_HOME: home, HF_HUB_OFFLINE: '1' });
    assert.equal(r.code, 0, r.stderr);
    const evals = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'eval_accuracy' in l);
    assert.equal(evals.length, 4);
    assert.ok(evals[3].eval_accuracy > 0.5, JSON.stringify(evals));
    // evaluate and predict read the saved multiple-choice model as one: the same accuracy, and per-example choices.
    const saved = path.join(dir, 'swag-out'), val = path.join(dir, 'val.csv'), env = { HF_HOME: home, HF_HUB_OFFLINE: '1' };
    const ev = await runCli(['evaluate', '--model', saved, '--validation-file', val, '--threads', '1', '--json'], env);
    assert.equal(ev.code, 0, ev.stderr);
    assert.ok(Math.abs(JSON.parse(ev.stdout).eval_accuracy - evals[3].eval_accuracy) < 1e-12, ev.stdout);
    const pf = await runCli(['predict', '--model', saved, '--file', val, '--threads', '1', '--json'], env);
    assert.equal(pf.code, 0, pf.stderr);
    const picks = pf.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const gold = makeSwagRows(64, 2);
    assert.equal(picks.length, 64);
    assert.ok(Math.abs(picks.filter((p, i) => p.label === gold[i].label).length / 64 - evals[3].eval_accuracy) < 1e-12, 'predict agrees with evaluate');
    assert.ok(picks.every((p, i) => p.choice === `${gold[i].sent2} ${gold[i][`ending${p.label}`]}` && Math.abs(p.probabilities.reduce((x: number, y: number) => x + y, 0) - 1) < 1e-6));
    const one = await runCli(['predict', '--model', saved, '--sentence1', String(gold[0].sent1), ...[0, 1, 2, 3].flatMap((c) => ['--sentence2', `the ${gold[0][`ending${c}`]}`]), '--threads', '1', '--json'], env);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(JSON.parse(one.stdout).label, picks[0].label);
    const bad = await runCli(['predict', '--model', saved, '--sentence1', 'only a context', '--threads', '1'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /multiple-choice model: give one --sentence1 \(the context\) and a --sentence2 per choice/);
  } finally {
    cleanup();
  }
});
