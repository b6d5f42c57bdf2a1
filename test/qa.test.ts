// `node train.js qa` (run_qa.py): the windows, offsets and answer positions against transformers' fast tokenizer
// running run_qa's own preprocessing, the n-best post-processing against utils_qa's, exact match and F1 against the
// official SQuAD evaluation, and the command end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome, makeQaRows, makeTinyModel } from './fixtures.js';
import { hfRef, runCli, tempDir } from './helpers.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { BertForQuestionAnswering } from '../src/model.js';
import { parseConfig } from '../src/config.js';
import { postprocessQa, prepareQaFeatures, squadMetrics, type QaExample } from '../src/qa.js';
import { mulberry32 } from '../src/collator.js';

let work: { dir: string; cleanup: () => void }, home: string, modelDir: string;
before(async () => {
  work = tempDir('qa-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
  modelDir = await makeTinyModel(path.join(work.dir, 'tiny'));
});
after(() => work.cleanup());

const cli = (args: string[]) => runCli(args, { HF_HOME: home, HF_HUB_OFFLINE: '1' });

/** Long contexts (several windows each), a question with leading spaces, an unanswerable one, words of several pieces. */
function examples(): QaExample[] {
  const rows: QaExample[] = makeQaRows(12, 3).map((r, i) => (i % 3 ? r : { ...r, context: `${r.context} ${r.context} the cats saw the buses again .` }));
  rows[1] = { ...rows[1], question: '   ' + rows[1].question };
  rows[2] = { ...rows[2], answers: { text: [], answer_start: [] } };
  // Characters of several UTF-8 lengths, some NFKC rewrites and a double space before the answer: offsets count
  // code points of the original text, as Python's do.
  const prefix = 'Größe café 😀 naïve ﬁne Ｗide ①  two ';  // (NFKC: ﬁ is two letters, Ｗ and ① one each)
  rows[4] = { ...rows[4], context: prefix + rows[4].context, answers: { ...rows[4].answers, answer_start: rows[4].answers.answer_start.map((a) => a + Array.from(prefix).length) } };
  return rows;
}

// BERT's WordPiece, byte-level BPE with RoBERTa's post-processor (offsets trimmed of spaces) and with ModernBERT's
// [CLS] [SEP] template (not trimmed), Unigram with XLM-RoBERTa's and DeBERTa-v3's Metaspace (NFKC normalizer),
// trained on the examples' text.
for (const kind of ['wordpiece', 'bpe', 'bpe-cls', 'unigram', 'unigram-cls'] as const)
test(`windows, offsets and answer positions equal run_qa.py's preprocessing with transformers' fast tokenizer (${kind})`, async () => {
  const ex = examples();
  let dir = modelDir;
  if (kind !== 'wordpiece') {
    dir = path.join(work.dir, `tok-${kind}`);
    await hfRef('make-tokenizer', { dir, kind, texts: ex.flatMap((e) => [e.question, e.context]), vocabSize: 300 });
  }
  const tok = await BertTokenizer.fromPretrained(dir);
  const o = { maxSeqLength: 32, docStride: 8 };
  const ours = prepareQaFeatures(ex, tok, { ...o, train: true, padToMaxLength: true });
  const ref = await hfRef('qa-features', { dir, examples: ex, ...o });
  assert.equal(ours.enc.length, ref.input_ids.length, 'the number of windows');
  assert.ok(ours.enc.length > ex.length + 4, 'the test needs contexts of several windows');
  for (let f = 0; f < ours.enc.length; f++) {
    const [s, e] = [ours.enc.offsets[f], ours.enc.offsets[f + 1]];
    assert.deepEqual(Array.from(ours.enc.ids.subarray(s, e)), ref.input_ids[f], `window ${f}: input ids`);
    assert.equal(ours.exampleIndex[f], ref.sample[f], `window ${f}: its example`);
    assert.deepEqual([ours.positions![2 * f], ours.positions![2 * f + 1]], [ref.start_positions[f], ref.end_positions[f]], `window ${f}: answer positions`);
    const offs = Array.from({ length: e - s }, (_, t) => (ours.contextOffsets[2 * (s + t)] < 0 ? null : [ours.contextOffsets[2 * (s + t)], ours.contextOffsets[2 * (s + t) + 1]]));
    assert.deepEqual(offs, ref.context_offsets[f], `window ${f}: context offsets`);
  }
  assert.ok(ref.start_positions.some((p: number) => p > 0) && ref.start_positions.some((p: number) => p === 0), 'windows with and without the answer');
});

test('post-processing equals utils_qa.py\'s postprocess_qa_predictions (v1 and v2 with a threshold); EM and F1 equal the official SQuAD evaluation', async () => {
  const tok = await BertTokenizer.fromPretrained(modelDir);
  const ex = examples();
  const f = prepareQaFeatures(ex, tok, { maxSeqLength: 32, docStride: 8, train: false });
  const rnd = mulberry32(9);
  const start = Float32Array.from({ length: f.enc.ids.length }, () => rnd() * 8 - 4), end = Float32Array.from({ length: f.enc.ids.length }, () => rnd() * 8 - 4);
  const features = Array.from({ length: f.enc.length }, (_, i) => {
    const [s, e] = [f.enc.offsets[i], f.enc.offsets[i + 1]];
    return { example: f.exampleIndex[i], start: Array.from(start.subarray(s, e)), end: Array.from(end.subarray(s, e)),
      offsets: Array.from({ length: e - s }, (_, t) => (f.contextOffsets[2 * (s + t)] < 0 ? null : [f.contextOffsets[2 * (s + t)], f.contextOffsets[2 * (s + t) + 1]])) };
  });
  for (const [v2, threshold] of [[false, 0], [true, 0], [true, 1.5]] as const) {
    const ours = postprocessQa(ex, f, Float32Array.from({ length: 2 * start.length }, (_, i) => (i % 2 ? end : start)[i >> 1]), { nBestSize: 5, maxAnswerLength: 6, versionTwoWithNegative: v2, nullScoreDiffThreshold: threshold });
    const theirs = await hfRef('qa-postprocess', { examples: ex, features, nBestSize: 5, maxAnswerLength: 6, v2, threshold });
    assert.deepEqual(Object.fromEntries(ours.predictions.map((p) => [p.id, p.prediction_text])), theirs, `v2 ${v2}, threshold ${threshold}`);
    const metrics = squadMetrics(ours.predictions, ex);
    const official = await hfRef('squad-eval', { predictions: theirs, answers: Object.fromEntries(ex.map((e) => [e.id, e.answers.text])) });
    assert.ok(Math.abs(metrics.exact_match - official.exact_match) < 1e-9 && Math.abs(metrics.f1 - official.f1) < 1e-9, `${JSON.stringify(metrics)} vs ${JSON.stringify(official)}`);
  }
  // Normalisation: case, punctuation, articles and spaces do not count; partial overlap gives partial F1.
  const m = squadMetrics([{ id: 'a', prediction_text: 'The  Cat!' }, { id: 'b', prediction_text: 'big red bus' }],
    [{ id: 'a', question: '', context: '', answers: { text: ['cat'], answer_start: [0] } }, { id: 'b', question: '', context: '', answers: { text: ['red bus today'], answer_start: [0] } }]);
  assert.equal(m.exact_match, 50);
  assert.ok(Math.abs(m.f1 - 100 * (1 + 2 / 3) / 2) < 1e-9);
});

test('node train.js qa trains on SQuAD rows, evaluates exact match and F1 each epoch and writes predictions.json', async () => {
  const jsonl = (name: string, rows: object[]) => { const f = path.join(work.dir, name); writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n'); return f; };
  const train = jsonl('train.jsonl', makeQaRows(300, 1)), validation = jsonl('validation.jsonl', makeQaRows(40, 2));
  const out = path.join(work.dir, 'out');
  const r = await cli(['qa', '--model', modelDir, '--train-file', train, '--validation-file', validation, '--output-dir', out, '--epochs', '4', '--learning-rate', '2e-3',
    '--max-seq-length', '64', '--doc-stride', '16', '--threads', '1', '--device', 'cpu', '--save-strategy', 'no', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const evals = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'eval_f1' in l);
  assert.equal(evals.length, 4);
  assert.ok(evals[3].eval_f1 > evals[0].eval_f1 && evals[3].eval_exact_match >= 0 && evals[3].eval_exact_match <= 100, JSON.stringify(evals));
  const predictions = JSON.parse(readFileSync(path.join(out, 'predictions.json'), 'utf8'));
  assert.equal(Object.keys(predictions).length, 40);
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).architectures, ['BertForQuestionAnswering']);
  // evaluate reads the same windows and post-processing: the last epoch's figures again.
  const e = await cli(['evaluate', '--model', out, '--validation-file', validation, '--device', 'cpu', '--json']);
  assert.equal(e.code, 0, e.stderr);
  const em = JSON.parse(e.stdout);
  assert.ok(Math.abs(em.eval_f1 - evals[3].eval_f1) < 1e-9 && Math.abs(em.eval_exact_match - evals[3].eval_exact_match) < 1e-9, `${e.stdout} vs ${JSON.stringify(evals[3])}`);
  // The question-answering pipeline from `predict`: an answer that is the context's text at its offsets.
  const context = 'the dog saw the bus . the cat saw the boat .';
  const p = await cli(['predict', '--model', out, '--question', 'cat saw', '--context', context, '--device', 'cpu', '--json']);
  assert.equal(p.code, 0, p.stderr);
  const answer = JSON.parse(p.stdout);
  assert.ok(answer.answer.length > 0 && answer.score > 0 && answer.score <= 1, p.stdout);
  assert.equal(context.slice(answer.start, answer.end), answer.answer);
  const bad = jsonl('bad.jsonl', [{ id: 'x', question: 'cat saw', context: 'the cat saw the dog .', answers: { text: ['dog'], answer_start: [90] } }]);
  const b = await cli(['qa', '--model', modelDir, '--train-file', bad, '--output-dir', path.join(work.dir, 'bad'), '--device', 'cpu']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /bad.jsonl: example "x" \(1\): answer 1 starts at 90, outside its context of 21 characters/);
});

test('node train.js qa with a RoBERTa checkpoint (byte-level BPE, its own pair layout): trains, evaluates, predicts spans of the context', async () => {
  const jsonl = (name: string, rows: object[]) => { const f = path.join(work.dir, name); writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n'); return f; };
  // "the cat saw": the subject after a space, as in the context (byte-level BPE's "Ġcat" is another token than "cat").
  const the = (rows: ReturnType<typeof makeQaRows>) => rows.map((r) => ({ ...r, question: `the ${r.question}` }));
  const trainRows = the(makeQaRows(300, 1)), valRows = the(makeQaRows(40, 2));
  const train = jsonl('rb-train.jsonl', trainRows), validation = jsonl('rb-validation.jsonl', valRows);
  const dir = path.join(work.dir, 'roberta');
  const t = await hfRef('make-tokenizer', { dir, kind: 'bpe', texts: [...trainRows, ...valRows].flatMap((e) => [e.question, e.context]), vocabSize: 300, maxLength: 128 });
  const config = parseConfig({ model_type: 'roberta', vocab_size: t.vocabSize, pad_token_id: t.padId, type_vocab_size: 1, max_position_embeddings: 130, hidden_size: 32,
    num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 37 }, 'roberta config');
  const m = await BertForQuestionAnswering.fromConfig(config, { device: 'cpu', seed: 4 });
  await m.save(dir);
  await m.dispose();
  const out = path.join(work.dir, 'rb-out');
  const r = await cli(['qa', '--model', dir, '--train-file', train, '--validation-file', validation, '--output-dir', out, '--epochs', '4', '--learning-rate', '2e-3',
    '--max-seq-length', '64', '--doc-stride', '16', '--threads', '1', '--device', 'cpu', '--save-strategy', 'no', '--logging-steps', '40', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const evals = lines.filter((l) => 'eval_f1' in l), losses = lines.filter((l) => 'loss' in l && 'step' in l).map((l) => l.loss as number);
  console.log(`roberta qa: training loss ${losses.map((l) => l.toFixed(2)).join(', ')}; F1 by epoch ${evals.map((e) => e.eval_f1.toFixed(1)).join(', ')}`);
  // (A tiny random model learns this task slowly, BERT's as RoBERTa's: the loss is what moves in 4 epochs; the windows
  // and answer positions are checked against run_qa above.)
  assert.ok(losses.length >= 3 && losses.at(-1)! < 0.8 * losses[0], `the training loss falls: ${losses}`);
  assert.ok(evals.length === 4 && evals.every((e) => e.eval_f1 >= 0 && e.eval_f1 <= 100), JSON.stringify(evals));
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).architectures, ['RobertaForQuestionAnswering']);
  const context = 'the dog saw the bus . the cat saw the boat .';
  const p = await cli(['predict', '--model', out, '--question', 'the cat saw', '--context', context, '--device', 'cpu', '--json']);
  assert.equal(p.code, 0, p.stderr);
  const answer = JSON.parse(p.stdout);
  assert.equal(context.slice(answer.start, answer.end), answer.answer);
  assert.ok(answer.answer.length > 0 && !answer.answer.startsWith(' '), `an answer without its leading space (trimmed offsets): ${p.stdout}`);
});
