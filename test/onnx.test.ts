// The ONNX export (src/onnx.ts): each family's and head's graph in onnxruntime-node gives our outputs (within 1e-4,
// fp32; the int8 model within 5% of the largest output); transformers.js loads the exported folder
// offline and its pipelines return our labels and scores; bad input is refused naming the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { BertPreTrainedModel } from '../src/model.js';
import { exportOnnx } from '../src/onnx.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { FAMILIES, type Head } from '../src/config.js';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { readSafetensors, writeSafetensors } from '../src/safetensors.js';
import { TINY, chromium, hfRef, root, runCli, tempDir, tinyBatch } from './helpers.js';
import { VOCAB } from './fixtures.js';

const DISTILBERT = { vocab_size: 100, dim: 32, n_layers: 2, n_heads: 4, hidden_dim: 37, max_position_embeddings: 64, num_labels: 2 };
// As test/heads.test.ts: ModernBERT with a window of 4 on its local layers; DeBERTa-v3's and v2's shapes.
const MODERNBERT = { vocab_size: 100, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4, intermediate_size: 37, max_position_embeddings: 64,
  pad_token_id: 0, bos_token_id: 2, eos_token_id: 3, cls_token_id: 2, sep_token_id: 3, local_attention: 4, global_rope_theta: 1000, local_rope_theta: 50 };
const DEBERTA_V3 = { ...TINY, type_vocab_size: 0, relative_attention: true, position_buckets: 8, max_relative_positions: -1, share_att_key: true,
  pos_att_type: 'p2c|c2p', norm_rel_ebd: 'layer_norm', position_biased_input: false };
const DEBERTA_V2 = { ...TINY, relative_attention: true, max_relative_positions: 6, pos_att_type: ['c2p', 'p2c'], share_att_key: false, embedding_size: 16 };
const CASES: Array<{ modelType: keyof typeof FAMILIES; head: Head; config: Record<string, unknown>; label?: string }> = [
  { modelType: 'bert', head: 'SequenceClassification', config: { ...TINY, num_labels: 3 } },
  { modelType: 'bert', head: 'TokenClassification', config: { ...TINY, num_labels: 5 } },
  { modelType: 'bert', head: 'QuestionAnswering', config: TINY },
  { modelType: 'roberta', head: 'SequenceClassification', config: { ...TINY, type_vocab_size: 1, pad_token_id: 1, max_position_embeddings: 40, num_labels: 3 } },
  { modelType: 'electra', head: 'TokenClassification', config: { ...TINY, embedding_size: 16, num_labels: 4, hidden_act: 'gelu_new' } },
  { modelType: 'distilbert', head: 'SequenceClassification', config: DISTILBERT },
  { modelType: 'xlm-roberta', head: 'QuestionAnswering', config: { ...TINY, type_vocab_size: 1, pad_token_id: 1, max_position_embeddings: 40 } },
  { modelType: 'bert', head: 'MaskedLM', config: TINY },
  { modelType: 'roberta', head: 'MaskedLM', config: { ...TINY, type_vocab_size: 1, pad_token_id: 1, max_position_embeddings: 40 } },
  { modelType: 'electra', head: 'MaskedLM', config: { ...TINY, embedding_size: 16 } },
  { modelType: 'distilbert', head: 'MaskedLM', config: DISTILBERT },
  { modelType: 'modernbert', head: 'SequenceClassification', config: { ...MODERNBERT, num_labels: 3 } },
  { modelType: 'modernbert', head: 'TokenClassification', config: { ...MODERNBERT, norm_bias: true, attention_bias: true, mlp_bias: true, classifier_bias: true, num_labels: 4 },
    label: 'modernbert (every bias)' },
  { modelType: 'modernbert', head: 'SequenceClassification', config: { ...MODERNBERT, classifier_pooling: 'mean', global_attn_every_n_layers: 2 }, label: 'modernbert (mean pooling)' },
  { modelType: 'modernbert', head: 'QuestionAnswering', config: MODERNBERT },
  { modelType: 'modernbert', head: 'MaskedLM', config: MODERNBERT },
  { modelType: 'deberta-v2', head: 'SequenceClassification', config: { ...DEBERTA_V3, num_labels: 3 }, label: 'deberta-v3' },
  { modelType: 'deberta-v2', head: 'TokenClassification', config: { ...DEBERTA_V2, num_labels: 4 } },
  { modelType: 'deberta-v2', head: 'QuestionAnswering', config: DEBERTA_V2 },
  { modelType: 'deberta-v2', head: 'MaskedLM', config: DEBERTA_V3, label: 'deberta-v3' },
  { modelType: 'deberta-v2', head: 'MaskedLM', config: { ...DEBERTA_V2, legacy: false, embedding_size: 32 }, label: 'deberta-v2 (lm_predictions)' },
];

/** A WordPiece tokenizer beside the model (what the export copies); the graph's numbers do not depend on it. */
function writeVocab(dir: string) {
  writeFileSync(path.join(dir, 'vocab.txt'), VOCAB.join('\n') + '\n');
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: true, model_max_length: 64, tokenizer_class: 'BertTokenizer' }));
}

const int64 = (a: Int32Array, shape: number[]) => new ort.Tensor('int64', BigInt64Array.from(a, (v) => BigInt(v)), shape);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i])); return d; };

for (const c of CASES)
test(`ONNX export of ${c.label ?? c.modelType} ${c.head}: onnxruntime-node gives our outputs (fp32 within 1e-4; int8 within 5% of the largest)`, async () => {
  const { dir, cleanup } = tempDir('onnx-');
  try {
    const model = path.join(dir, 'model'), out = path.join(dir, 'exported');
    const arch = `${FAMILIES[c.modelType].prefix}For${c.head}`;
    await hfRef('make-head-model', { dir: model, seed: 5, architecture: arch, modelType: c.modelType, config: c.config });
    writeVocab(model);
    const ours = await BertPreTrainedModel.fromPretrained(model, { device: 'cpu', threads: 1 });
    const b = tinyBatch(3, 9, 4);
    if (c.modelType === 'roberta' || c.modelType === 'xlm-roberta') b.inputIds.forEach((id, i) => { b.inputIds[i] = b.attentionMask[i] === 0 ? 1 : id === 1 ? 3 : id; });
    if (FAMILIES[c.modelType].base !== 'bert' && !('type_vocab_size' in c.config && (c.config.type_vocab_size as number) > 1)) b.tokenTypeIds.fill(0);
    const { labels: _labels, ...inputs } = b;
    const want = await ours.forward(inputs);
    await ours.dispose();
    const result = await exportOnnx(model, out, { quantize: true });
    assert.deepEqual(result.files.sort(), ['config.json', 'onnx/model.onnx', 'onnx/model_quantized.onnx', 'tokenizer.json', 'tokenizer_config.json']);
    const names = c.head === 'QuestionAnswering' ? [['start_logits', 'startLogits'], ['end_logits', 'endLogits']] : [['logits', 'logits']];
    for (const file of ['model.onnx', 'model_quantized.onnx']) {
      const session = await ort.InferenceSession.create(path.join(out, 'onnx', file));
      const feeds: Record<string, ort.Tensor> = { input_ids: int64(b.inputIds, b.shape), attention_mask: int64(b.attentionMask, b.shape) };
      if (session.inputNames.includes('token_type_ids')) feeds.token_type_ids = int64(b.tokenTypeIds, b.shape);
      const got = await session.run(feeds);
      for (const [theirs, o] of names) {
        const mine = (want as unknown as Record<string, Float32Array>)[o], t = got[theirs];
        assert.deepEqual([...t.dims], want.shapes[o], `${theirs}'s shape`);
        // Token-level outputs at padding positions are not defined by either side's contract: compare real tokens.
        // (A padding query may see no key at all: ModernBERT's window far from the text. SDPA and a softmax over
        // LOWEST scores then give different rows, both meaningless.)
        const per = mine.length / b.inputIds.length;
        const real = (i: number) => c.head === 'SequenceClassification' || b.attentionMask[Math.floor(i / per)] === 1;
        const keep = (a: ArrayLike<number>) => Array.from(a as ArrayLike<number>).filter((_, i) => real(i));
        const d = maxDiff(keep(mine), keep(t.data as Float32Array));
        const scale = Math.max(...keep(mine).map(Math.abs));
        console.log(`onnx ${arch} ${file} ${theirs}: max diff ${d.toExponential(2)} (largest |value| ${scale.toFixed(3)})`);
        if (file === 'model.onnx') assert.ok(d <= 1e-4, `${theirs} differs by ${d}`);
        else assert.ok(d <= 0.05 * scale + 1e-3, `int8 ${theirs} differs by ${d} of ${scale}`);
      }
      await session.release();
    }
  } finally {
    cleanup();
  }
});

test('transformers.js loads the exported folder offline: text-classification, token-classification, fill-mask and question-answering pipelines give our answers', async () => {
  const { dir, cleanup } = tempDir('onnx-tjs-');
  try {
    const { pipeline, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = path.join(dir, 'exported');
    const tok = async (m: string) => BertTokenizer.fromPretrained(m);
    const softmax = (v: number[]) => { const mx = Math.max(...v), e = v.map((x) => Math.exp(x - mx)), s = e.reduce((a, b) => a + b, 0); return e.map((x) => x / s); };
    const sentence = 'the cat saw the big dog near the red car';  // every word in the tiny vocabulary: no [UNK]

    // text-classification: our label and score for a sentence.
    const cls = path.join(dir, 'cls');
    await hfRef('make-head-model', { dir: cls, seed: 6, architecture: 'BertForSequenceClassification', modelType: 'bert',
      config: { ...TINY, vocab_size: VOCAB.length, num_labels: 3, id2label: { 0: 'negative', 1: 'neutral', 2: 'positive' }, label2id: { negative: 0, neutral: 1, positive: 2 } } });
    writeVocab(cls);
    const ours = await BertPreTrainedModel.fromPretrained(cls, { device: 'cpu', threads: 1 });
    const t = await tok(cls);
    const enc = t.encode(sentence);
    const n = enc.inputIds.length;
    const { logits } = await ours.forward({ shape: [1, n], inputIds: Int32Array.from(enc.inputIds), tokenTypeIds: Int32Array.from(enc.tokenTypeIds) });
    await ours.dispose();
    const probs = softmax([...logits!]);
    const best = probs.indexOf(Math.max(...probs));
    await exportOnnx(cls, path.join(dir, 'exported', 'cls'), { quantize: true });
    const classifier = await pipeline('text-classification', 'cls', { dtype: 'fp32' });
    const [top] = await classifier(sentence) as Array<{ label: string; score: number }>;
    console.log(`transformers.js text-classification: ${JSON.stringify(top)}; ours ${['negative', 'neutral', 'positive'][best]} ${probs[best]}`);
    assert.equal(top.label, ['negative', 'neutral', 'positive'][best]);
    assert.ok(Math.abs(top.score - probs[best]) < 1e-5, `score ${top.score} vs ${probs[best]}`);
    // The families with their own graphs load as transformers.js's ModernBert/DebertaV2 classes and agree too.
    for (const [name, modelType, config] of [['modern', 'modernbert', { ...MODERNBERT, vocab_size: VOCAB.length }], ['deb', 'deberta-v2', { ...DEBERTA_V3, vocab_size: VOCAB.length }]] as const) {
      const dirOf = path.join(dir, name);
      await hfRef('make-head-model', { dir: dirOf, seed: 6, architecture: `${FAMILIES[modelType].prefix}ForSequenceClassification`, modelType,
        config: { ...config, num_labels: 2, id2label: { 0: 'no', 1: 'yes' }, label2id: { no: 0, yes: 1 } } });
      writeVocab(dirOf);
      const m = await BertPreTrainedModel.fromPretrained(dirOf, { device: 'cpu', threads: 1 });
      const l = [...(await m.forward({ shape: [1, n], inputIds: Int32Array.from(enc.inputIds) })).logits!];
      await m.dispose();
      const p = softmax(l), k = p[1] > p[0] ? 1 : 0;
      await exportOnnx(dirOf, path.join(dir, 'exported', name));
      const [got] = await (await pipeline('text-classification', name, { dtype: 'fp32' }))(sentence) as Array<{ label: string; score: number }>;
      console.log(`transformers.js ${modelType} text-classification: ${JSON.stringify(got)}; ours ${['no', 'yes'][k]} ${p[k]}`);
      assert.equal(got.label, ['no', 'yes'][k]);
      assert.ok(Math.abs(got.score - p[k]) < 1e-5, `${modelType} score ${got.score} vs ${p[k]}`);
    }
    const q8 = await pipeline('text-classification', 'cls', { dtype: 'q8' });
    const [topQ] = await q8(sentence) as Array<{ label: string; score: number }>;
    assert.ok(Math.abs(topQ.score - probs[best]) < 0.05 || topQ.label === top.label, `q8 ${JSON.stringify(topQ)}`);

    // token-classification: our per-token labels.
    const ner = path.join(dir, 'ner');
    const tags = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC'];
    await hfRef('make-head-model', { dir: ner, seed: 7, architecture: 'BertForTokenClassification', modelType: 'bert',
      config: { ...TINY, vocab_size: VOCAB.length, num_labels: 5, id2label: Object.fromEntries(tags.map((x, i) => [i, x])), label2id: Object.fromEntries(tags.map((x, i) => [x, i])) } });
    writeVocab(ner);
    const nerModel = await BertPreTrainedModel.fromPretrained(ner, { device: 'cpu', threads: 1 });
    const nerLogits = (await nerModel.forward({ shape: [1, n], inputIds: Int32Array.from(enc.inputIds), tokenTypeIds: Int32Array.from(enc.tokenTypeIds) })).logits!;
    await nerModel.dispose();
    await exportOnnx(ner, path.join(dir, 'exported', 'ner'));
    const tagger = await pipeline('token-classification', 'ner', { dtype: 'fp32' });
    const entities = await tagger(sentence, { ignore_labels: [] }) as Array<{ entity: string; score: number; index: number }>;
    assert.equal(entities.length, n - 2, 'one entry per word piece between [CLS] and [SEP]');
    for (const e of entities) {
      const row = softmax([...nerLogits.subarray(e.index * 5, e.index * 5 + 5)]);
      const k = row.indexOf(Math.max(...row));
      assert.equal(e.entity, tags[k]);
      assert.ok(Math.abs(e.score - row[k]) < 1e-5);
    }

    // fill-mask: our likeliest token and its probability at [MASK].
    const mlm = path.join(dir, 'mlm');
    await hfRef('make-head-model', { dir: mlm, seed: 10, architecture: 'BertForMaskedLM', modelType: 'bert', config: { ...TINY, vocab_size: VOCAB.length } });
    writeVocab(mlm);
    const masked = 'the cat saw the [MASK] dog';
    const me = t.encode(masked);
    const at = me.inputIds.indexOf(VOCAB.indexOf('[MASK]'));
    const mlmModel = await BertPreTrainedModel.fromPretrained(mlm, { device: 'cpu', threads: 1 });
    const ml = (await mlmModel.forward({ shape: [1, me.inputIds.length], inputIds: Int32Array.from(me.inputIds), tokenTypeIds: Int32Array.from(me.tokenTypeIds) })).logits!;
    await mlmModel.dispose();
    const pm = softmax([...ml.subarray(at * VOCAB.length, (at + 1) * VOCAB.length)]);
    const bestToken = pm.indexOf(Math.max(...pm));
    await exportOnnx(mlm, path.join(dir, 'exported', 'mlm'));
    const filler = await pipeline('fill-mask', 'mlm', { dtype: 'fp32' });
    const [fill] = await filler(masked) as Array<{ token: number; score: number; token_str: string }>;
    console.log(`transformers.js fill-mask: ${JSON.stringify(fill)}; ours ${VOCAB[bestToken]} ${pm[bestToken]}`);
    assert.equal(fill.token, bestToken);
    assert.ok(Math.abs(fill.score - pm[bestToken]) < 1e-5, `score ${fill.score} vs ${pm[bestToken]}`);

    // question-answering: the same span and score as our logits give.
    const qa = path.join(dir, 'qa');
    await hfRef('make-head-model', { dir: qa, seed: 8, architecture: 'BertForQuestionAnswering', modelType: 'bert', config: { ...TINY, vocab_size: VOCAB.length } });
    writeVocab(qa);
    await exportOnnx(qa, path.join(dir, 'exported', 'qa'));
    const answerer = await pipeline('question-answering', 'qa', { dtype: 'fp32' });
    const question = 'where is the dog';
    const ans = await answerer(question, sentence) as { answer: string; score: number };
    // Ours: the pipeline's rule on our logits (softmax over [CLS] and the context's tokens, [CLS]'s share then dropped;
    // the best start <= end by the product).
    const qaModel = await BertPreTrainedModel.fromPretrained(qa, { device: 'cpu', threads: 1 });
    const pair = t.encode(question, sentence);
    const L = pair.inputIds.length, sep = pair.inputIds.indexOf(t.sepId);
    const qo = await qaModel.forward({ shape: [1, L], inputIds: Int32Array.from(pair.inputIds), tokenTypeIds: Int32Array.from(pair.tokenTypeIds) });
    await qaModel.dispose();
    const context = (i: number) => i > sep && i < L - 1;
    const sm = (v: Float32Array) => softmax([...v].map((x, i) => (i === 0 || context(i) ? x : -Infinity))).map((p, i) => (i === 0 ? 0 : p));
    const ps = sm(qo.startLogits!), pe = sm(qo.endLogits!);
    let bestSpan = [0, 0], bestScore = -1;
    for (let i = 0; i < L; i++) for (let j = i; j < L; j++) if (ps[i] * pe[j] > bestScore) { bestScore = ps[i] * pe[j]; bestSpan = [i, j]; }
    const expected = Array.from(pair.inputIds.slice(bestSpan[0], bestSpan[1] + 1), (id) => t.idToToken(id)).join(' ').replace(/ ##/g, '');
    console.log(`transformers.js question-answering: ${JSON.stringify(ans)}; ours ${JSON.stringify(expected)} ${bestScore}`);
    assert.equal(ans.answer, expected);
    assert.ok(Math.abs(ans.score - bestScore) < 1e-5, `score ${ans.score} vs ${bestScore}`);
  } finally {
    cleanup();
  }
});

test('external data (what a model past 2 GB gets): the weights in onnx/model.onnx_data, the same outputs in onnxruntime-node and transformers.js', async () => {
  const { dir, cleanup } = tempDir('onnx-ext-');
  try {
    const model = path.join(dir, 'model'), out = path.join(dir, 'exported', 'ext');
    await hfRef('make-head-model', { dir: model, seed: 3, architecture: 'BertForSequenceClassification', modelType: 'bert', config: TINY });
    writeVocab(model);
    const r = await exportOnnx(model, out, { externalData: true, quantize: true });
    assert.deepEqual(r.files.filter((f) => f.endsWith('_data')).sort(), ['onnx/model.onnx_data', 'onnx/model_quantized.onnx_data']);
    const graphBytes = (await fs.stat(path.join(out, 'onnx', 'model.onnx'))).size, dataBytes = (await fs.stat(path.join(out, 'onnx', 'model.onnx_data'))).size;
    assert.ok(dataBytes > 4 * graphBytes, `the weights are outside the graph: ${graphBytes} + ${dataBytes} bytes (tensors under 1 KB stay inside)`);
    assert.equal(JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8'))['transformers.js_config'].use_external_data_format, true);
    const b = tinyBatch(2, 7, 9);
    const ours = await BertPreTrainedModel.fromPretrained(model, { device: 'cpu', threads: 1 });
    const want = (await ours.forward({ shape: b.shape, inputIds: b.inputIds, attentionMask: b.attentionMask, tokenTypeIds: b.tokenTypeIds })).logits!;
    await ours.dispose();
    const session = await ort.InferenceSession.create(path.join(out, 'onnx', 'model.onnx'));
    const got = await session.run({ input_ids: int64(b.inputIds, b.shape), attention_mask: int64(b.attentionMask, b.shape), token_type_ids: int64(b.tokenTypeIds, b.shape) });
    await session.release();
    assert.ok(maxDiff(want, got.logits.data as Float32Array) <= 1e-4);
    const { pipeline, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = path.join(dir, 'exported');
    const [top] = await (await pipeline('text-classification', 'ext', { dtype: 'fp32' }))('the cat saw the dog') as Array<{ label: string; score: number }>;
    assert.match(top.label, /^LABEL_[01]$/);
  } finally {
    cleanup();
  }
});

test('node train.js export writes the folder and refuses what it cannot export, naming the file', async () => {
  const { dir, cleanup } = tempDir('onnx-cli-');
  try {
    const model = path.join(dir, 'model');
    await hfRef('make-head-model', { dir: model, seed: 9, architecture: 'BertForSequenceClassification', modelType: 'bert', config: TINY });
    writeVocab(model);
    const r = await runCli(['export', '--model', model, '--output-dir', path.join(dir, 'out'), '--quantize']);
    assert.equal(r.code, 0, r.stderr);
    const sizes = await Promise.all(['onnx/model.onnx', 'onnx/model_quantized.onnx'].map(async (f) => (await fs.stat(path.join(dir, 'out', f))).size));
    assert.ok(sizes[1] < sizes[0], `the int8 file is smaller: ${sizes}`);
    const missing = await runCli(['export', '--model', path.join(dir, 'nope'), '--output-dir', path.join(dir, 'out2')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope.*config\.json: not found/);
    const mc = path.join(dir, 'mc');
    await hfRef('make-head-model', { dir: mc, seed: 9, architecture: 'BertForMultipleChoice', modelType: 'bert', config: TINY });
    writeVocab(mc);
    const refused = await runCli(['export', '--model', mc, '--output-dir', path.join(dir, 'out3')]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /BertForMultipleChoice cannot be exported to ONNX here/);
  } finally {
    cleanup();
  }
});

const browser = chromium();
test('examples/browser: headless Chromium classifies a sentence with the int8 model in transformers.js and shows our label', { skip: browser ? false : 'no Chromium installed (apt-get install chromium); .ci/run installs it' }, async () => {
  const { dir, cleanup } = tempDir('onnx-browser-');
  const { default: puppeteer } = await import('puppeteer-core');
  let b: Awaited<ReturnType<typeof puppeteer.launch>> | undefined;
  const model = path.join(dir, 'model'), out = path.join(dir, 'exported');
  await hfRef('make-head-model', { dir: model, seed: 6, architecture: 'BertForSequenceClassification', modelType: 'bert',
    config: { ...TINY, vocab_size: VOCAB.length, num_labels: 2, id2label: { 0: 'not_equivalent', 1: 'equivalent' }, label2id: { not_equivalent: 0, equivalent: 1 } } });
  writeVocab(model);
  // A decisive classifier (bias 0 vs 1: p about 0.73), so int8 rounding cannot flip the label the page must show.
  const weights = path.join(model, 'model.safetensors'), st = await readSafetensors(weights);
  const bias = st.tensors.find((t) => t.name === 'classifier.bias')!;
  bias.data = new Uint8Array(Float32Array.of(0, 1).buffer);
  await writeSafetensors(weights, st.tensors, { format: 'pt' });
  const r = await runCli(['export', '--model', model, '--output-dir', out, '--quantize']);
  assert.equal(r.code, 0, r.stderr);
  const sentence = 'the cat saw the big dog near the red car';
  const ours = await BertPreTrainedModel.fromPretrained(model, { device: 'cpu', threads: 1 });
  const enc = (await BertTokenizer.fromPretrained(model)).encode(sentence);
  const logits = [...(await ours.forward({ shape: [1, enc.inputIds.length], inputIds: Int32Array.from(enc.inputIds), tokenTypeIds: Int32Array.from(enc.tokenTypeIds) })).logits!];
  await ours.dispose();
  const p1 = 1 / (1 + Math.exp(logits[0] - logits[1])), label = p1 > 0.5 ? 'equivalent' : 'not_equivalent', score = Math.max(p1, 1 - p1);
  const server = spawn(process.execPath, [path.join(root, 'examples', 'browser', 'server.mjs'), '--model', out, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      server.stdout!.on('data', (d) => { buf += d; const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(buf); if (m) resolve(m[1]); });
      server.on('exit', (code) => reject(new Error(`the example server exited (${code}): ${buf}`)));
    });
    b = await puppeteer.launch({ executablePath: browser, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    const page = await b.newPage();
    const requests: string[] = [];
    page.on('request', (q) => requests.push(q.url()));
    await page.goto(url);
    await page.waitForFunction(() => document.querySelector('#result')?.getAttribute('data-label') || document.querySelector('#status')?.getAttribute('data-error'), { timeout: 120_000 });
    const error = await page.$eval('#status', (e) => e.getAttribute('data-error'));
    assert.equal(error, null, `the page failed: ${error}`);
    const shown = await page.$eval('#result', (e) => ({ label: e.getAttribute('data-label'), score: Number(e.getAttribute('data-score')), text: e.textContent }));
    const shot = process.env.BROWSER_EXAMPLE_SCREENSHOT ?? path.join(os.tmpdir(), 'bert-trainer-browser-example.png');  // kept after the test
    await page.screenshot({ path: shot });
    console.log(`browser example: shows ${JSON.stringify(shown.text)}; ours (fp32) ${label} ${score.toFixed(4)}; screenshot ${shot}; ` +
      `requests: ${[...new Set(requests.map((u) => new URL(u).pathname.split('/').slice(0, 3).join('/')))].join(', ')}`);
    assert.equal(shown.label, label);
    assert.ok(Math.abs(shown.score - score) < 0.05, `int8 score ${shown.score} vs fp32 ${score}`);
    assert.ok(requests.every((u) => u.startsWith(url)), `every request goes to the loopback server: ${requests.filter((u) => !u.startsWith(url))}`);
    assert.ok(requests.some((u) => u.endsWith('/models/model/onnx/model_quantized.onnx')), 'the int8 model was loaded');
  } finally {
    await b?.close();
    server.kill();
    cleanup();
  }
});
