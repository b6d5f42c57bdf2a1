// Dynamic int8 quantization (setQuantization('int8'), predict/evaluate --quantize) against PyTorch's own:
// torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) on the same files and batch (with
// padding), its inputs' range 7 or 8 bits as this CPU takes it (Int8ReduceRange), for each family and the heads whose
// Linears differ (token-level, span, masked-LM decoder). Run with BERT_TRAINER_INT8_REDUCE_RANGE=1 too: both ranges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { copyFileSync } from 'node:fs';
import { BertForSequenceClassification, BertPreTrainedModel } from '../src/model.js';
import { FAMILIES, type Head } from '../src/config.js';
import { TINY, hfRef, runCli, tempDir, tinyBatch } from './helpers.js';
import { addon } from '../src/native.js';
import { DEBERTA_V3, DISTILBERT, makeTinyModel, MODERNBERT, ROBERTA } from './fixtures.js';

const CASES: Array<{ modelType: keyof typeof FAMILIES; config: Record<string, unknown>; head: Head }> = [
  { modelType: 'bert', config: TINY, head: 'SequenceClassification' },
  { modelType: 'bert', config: TINY, head: 'TokenClassification' },
  { modelType: 'bert', config: TINY, head: 'QuestionAnswering' },
  { modelType: 'bert', config: TINY, head: 'MaskedLM' },
  { modelType: 'roberta', config: ROBERTA, head: 'SequenceClassification' },
  { modelType: 'distilbert', config: DISTILBERT, head: 'SequenceClassification' },
  { modelType: 'electra', config: { ...TINY, embedding_size: 16 }, head: 'SequenceClassification' },
  { modelType: 'modernbert', config: MODERNBERT, head: 'SequenceClassification' },
  { modelType: 'deberta-v2', config: DEBERTA_V3, head: 'TokenClassification' },
];

const largest = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

for (const c of CASES)
test(`int8 ${c.modelType} ${c.head}: the outputs of PyTorch's quantize_dynamic, far from fp32's`, async () => {
  const arch = `${FAMILIES[c.modelType].prefix}For${c.head}`;
  const { dir, cleanup } = tempDir('quantize-');
  try {
    const hf = path.join(dir, 'hf');
    await hfRef('make-head-model', { dir: hf, seed: 3, architecture: arch, modelType: c.modelType, config: { ...c.config, num_labels: c.head === 'TokenClassification' ? 5 : 2 } });
    const b = tinyBatch(3, 9, 7);  // row 1 is 4 tokens short
    if (c.modelType === 'roberta') b.inputIds.forEach((id, i) => { b.inputIds[i] = b.attentionMask[i] === 0 ? 1 : id === 1 ? 3 : id; });
    if (c.modelType === 'roberta' || c.modelType === 'deberta-v2') b.tokenTypeIds.fill(0);
    const ref = await hfRef('quantized-reference', { dir: hf, architecture: arch, threads: 1, reduceRange: addon().runtime().int8ReduceRange,
      batch: { shape: b.shape, inputIds: [...b.inputIds], attentionMask: [...b.attentionMask], tokenTypeIds: [...b.tokenTypeIds],
        labels: new Array(c.head === 'QuestionAnswering' ? 6 : c.head === 'TokenClassification' || c.head === 'MaskedLM' ? 27 : 3).fill(0) } });
    const model = await BertPreTrainedModel.fromPretrained(hf, { device: 'cpu', threads: 1 });
    try {
      const inputs = { ...b, labels: undefined };
      const fp32 = await model.forward(inputs);
      await model.setQuantization('int8');
      assert.equal(model.quantization, 'int8');
      const int8 = await model.forward(inputs);
      const name = c.head === 'QuestionAnswering' ? 'startLogits' : 'logits', theirs = c.head === 'QuestionAnswering' ? 'start_logits' : 'logits';
      const ours8 = (int8 as unknown as Record<string, Float32Array>)[name], ours32 = (fp32 as unknown as Record<string, Float32Array>)[name];
      // Token-level outputs are compared at real tokens (padding positions' outputs are not defined).
      const per = ours8.length / b.inputIds.length, tokenLevel = c.head === 'TokenClassification' || c.head === 'MaskedLM';
      let toRef = 0, toFp32 = 0, refToFp32 = 0;
      for (let i = 0; i < ours8.length; i++) {
        if (tokenLevel && b.attentionMask[Math.floor(i / per)] === 0) continue;
        toRef = Math.max(toRef, Math.abs(ours8[i] - ref.int8[theirs][i]));
        toFp32 = Math.max(toFp32, Math.abs(ours8[i] - ours32[i]));
        refToFp32 = Math.max(refToFp32, Math.abs(ref.int8[theirs][i] - ref.fp32[theirs][i]));
      }
      const scale = largest(ref.fp32[theirs]);
      console.log(`int8 ${arch}: ours vs quantize_dynamic ${toRef.toExponential(2)}, ours int8 vs fp32 ${toFp32.toExponential(2)} ` +
        `(PyTorch's: ${refToFp32.toExponential(2)}), largest output ${scale.toFixed(3)}`);
      // Quantization moved the outputs (the int8 path ran), by about what it moves PyTorch's, and ours lands on
      // PyTorch's quantized outputs far closer than either is to fp32.
      assert.ok(toFp32 > 1e-4 * scale, `int8 outputs equal fp32's (${toFp32}): nothing was quantized`);
      assert.ok(toRef <= Math.max(1e-5 * scale, toFp32 / 20), `int8 outputs ${toRef} from quantize_dynamic's, ${toFp32} from fp32`);
      await model.setQuantization('none');
      const back = await model.forward(inputs);
      assert.deepEqual(Array.from((back as unknown as Record<string, Float32Array>)[name]), Array.from(ours32), 'quantization turned off gives fp32 outputs again');
    } finally {
      await model.dispose();
    }
  } finally {
    cleanup();
  }
});

test('setQuantization refuses bad modes and bf16; --quantize predicts and refuses --bf16', async () => {
  const { dir, cleanup } = tempDir('quantize-cli-');
  try {
    const modelDir = path.join(dir, 'cls');
    const model = await BertForSequenceClassification.fromPretrained(await makeTinyModel(path.join(dir, 'm')), { device: 'cpu', threads: 1 });
    try {
      await assert.rejects(model.setQuantization('int4' as never), /quantization must be 'none' or 'int8', got "int4"/);
      await model.setMixedPrecision('bf16');
      await assert.rejects(model.setQuantization('int8'), /cannot be combined with mixed precision bf16/);
      await model.setMixedPrecision('no');
      await model.setQuantization('int8');
      await assert.rejects(model.setMixedPrecision('bf16'), /cannot be combined with int8 quantization/);
      // Training while quantized trains the fp32 weights; the next evaluation quantizes the new ones.
      const b = tinyBatch(2, 6, 3);
      b.inputIds.forEach((id, i) => { b.inputIds[i] = id % 30; });  // the tiny tokenizer's vocabulary
      const before = await model.forward({ ...b, labels: undefined });
      await model.setOptimizer({});
      await model.trainStep({ ...b, labels: Int32Array.from([0, 1]) });
      await model.optimizerStep({ lr: 1e-2 });
      const after = await model.forward({ ...b, labels: undefined });
      assert.notDeepEqual(Array.from(after.logits!), Array.from(before.logits!), 'the quantized copies follow the trained weights');
      await model.save(modelDir);
      for (const f of ['vocab.txt', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(dir, 'm', f), path.join(modelDir, f));
    } finally {
      await model.dispose();
    }
    const fp32 = await runCli(['predict', '--model', modelDir, '--sentence1', 'the cat sat', '--sentence2', 'a dog ran', '--json', '--device', 'cpu']);
    const int8 = await runCli(['predict', '--model', modelDir, '--sentence1', 'the cat sat', '--sentence2', 'a dog ran', '--json', '--device', 'cpu', '--quantize']);
    assert.equal(fp32.code, 0, fp32.stderr);
    assert.equal(int8.code, 0, int8.stderr);
    const p32 = JSON.parse(fp32.stdout.trim().split('\n').pop()!), p8 = JSON.parse(int8.stdout.trim().split('\n').pop()!);
    assert.equal(p8.label, p32.label);
    assert.ok(Math.abs(p8.score - p32.score) < 0.05 && p8.score !== p32.score, `int8 score ${p8.score} vs fp32 ${p32.score}`);
    const bad = await runCli(['predict', '--model', modelDir, '--sentence1', 'x', '--quantize', '--bf16']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--quantize \(int8, computed in fp32\) cannot be combined with --bf16/);
  } finally {
    cleanup();
  }
});
