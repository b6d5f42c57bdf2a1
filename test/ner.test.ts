// `node train.js ner` (run_ner.py): word-to-piece label alignment against transformers' own code on the same rows,
// the entity-level metrics against the seqeval package, and the command end to end on generated data.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome, makeNerRows, makeTinyModel } from './fixtures.js';
import { hfRef, runCli, tempDir } from './helpers.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { tokenizeTokenDataset } from '../src/ner.js';
import { seqeval } from '../src/seqeval.js';
import { mulberry32 } from '../src/collator.js';

let work: { dir: string; cleanup: () => void }, home: string, modelDir: string;
before(async () => {
  work = tempDir('ner-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
  modelDir = await makeTinyModel(path.join(work.dir, 'tiny'));
});
after(() => work.cleanup());

const jsonl = (file: string, rows: object[]) => { writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n'); return file; };
const cli = (args: string[]) => runCli(args, { HF_HOME: home, HF_HUB_OFFLINE: '1' });

// BERT's WordPiece, byte-level BPE (RoBERTa's: run_ner.py loads it with add_prefix_space=True for pre-split words),
// and Unigram with XLM-RoBERTa's and DeBERTa-v3's Metaspace.
for (const kind of ['wordpiece', 'bpe', 'unigram', 'unigram-cls'] as const)
test(`word ids and label alignment equal run_ner.py's tokenize_and_align_labels (first piece, label_all_tokens, truncation; ${kind})`, async () => {
  // Words that split into several pieces (cats, running), into punctuation (u.s.), unknown words, and a row long
  // enough to be truncated.
  const words = [['the', 'cats', 'saw', 'u.s.', 'running', 'buses', '.'], ['a', 'zebra', 'likes', 'the', 'boat'],
    Array.from({ length: 30 }, (_, i) => ['big', 'cats', 'run', 'fast', 'again'][i % 5])];
  const labelList = ['O', 'B-ANIMAL', 'I-ANIMAL', 'B-VEHICLE', 'I-VEHICLE', 'B-LOC'];
  const tags = words.map((ws) => ws.map((w, i) => (w.startsWith('cat') ? 1 : w.startsWith('bus') || w === 'boat' ? 3 : w === 'u.s.' ? 5 : i % 7 === 6 ? 2 : 0)));
  let dir = modelDir;
  if (kind !== 'wordpiece') {
    dir = path.join(work.dir, `tok-${kind}`);
    await hfRef('make-tokenizer', { dir, kind, texts: [...words.map((ws) => ws.join(' ')), 'the zebras ran to the u.s. and back', 'buses and boats'], vocabSize: kind === 'bpe' ? 300 : 120 });
  }
  const tok = await BertTokenizer.fromPretrained(dir);
  const ds = { source: 'rows', words, tags: tags.map((t) => Int32Array.from(t)), labelNames: labelList };
  const ref = await hfRef('ner-align', { dir, words, tags, labelList, maxLength: 24, addPrefixSpace: kind === 'bpe' });
  for (const labelAllTokens of [false, true]) {
    const ours = tokenizeTokenDataset(ds, tok, { maxLength: 24, labelAllTokens });
    for (let r = 0; r < words.length; r++) {
      const [s, e] = [ours.enc.offsets[r], ours.enc.offsets[r + 1]];
      assert.deepEqual(Array.from(ours.enc.ids.subarray(s, e)), ref.input_ids[r], `row ${r}: input ids`);
      assert.deepEqual(Array.from(ours.wordIds!.subarray(s, e)), ref.word_ids[r], `row ${r}: word ids`);
      assert.deepEqual(Array.from(ours.tokenLabels!.subarray(s, e)), (labelAllTokens ? ref.labelAll : ref.labels)[r], `row ${r}: labels (label_all_tokens ${labelAllTokens})`);
    }
  }
  assert.ok(ref.word_ids.some((row: number[]) => row.some((w, i) => w >= 0 && row.indexOf(w) !== i)), 'the test needs a word of several pieces');
  assert.equal(ref.input_ids[2].length, 24, 'the test needs a truncated row');
});

test('entity-level precision, recall, F1 and accuracy equal the seqeval package on random tag sequences', async () => {
  const rnd = mulberry32(5);
  const tagSet = ['O', 'O', 'O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG', 'B-MISC-X', 'I-MISC-X'];
  const sentence = (n: number) => Array.from({ length: n }, () => tagSet[Math.floor(rnd() * tagSet.length)]);
  const references: string[][] = [], predictions: string[][] = [];
  for (let i = 0; i < 300; i++) {
    const ref = sentence(1 + Math.floor(rnd() * 12));
    references.push(ref);
    // Mostly right, with wrong types, dropped and malformed (I- without B-) entities.
    predictions.push(ref.map((t) => (rnd() < 0.2 ? tagSet[Math.floor(rnd() * tagSet.length)] : t)));
  }
  predictions[0] = references[0].map(() => 'O');  // a sentence with no predicted entity
  const ours = seqeval(predictions, references);
  const theirs = await hfRef('seqeval', { predictions, references });
  for (const k of ['overall_precision', 'overall_recall', 'overall_f1', 'overall_accuracy'] as const) assert.ok(Math.abs(ours[k] - theirs[k]) < 1e-12, `${k}: ${ours[k]} vs ${theirs[k]}`);
  assert.deepEqual(Object.keys(ours.types).sort(), Object.keys(theirs).filter((k) => !k.startsWith('overall_')).sort());
  for (const [type, m] of Object.entries(ours.types))
    for (const k of ['precision', 'recall', 'f1', 'number'] as const) assert.ok(Math.abs(m[k] - theirs[type][k]) < 1e-12, `${type} ${k}: ${m[k]} vs ${theirs[type][k]}`);
  console.log(`seqeval over 300 sentences: F1 ${ours.overall_f1.toFixed(4)} (seqeval ${theirs.overall_f1.toFixed(4)}), ${Object.keys(ours.types).length} types`);
});

test('node train.js ner trains, evaluates each epoch with seqeval metrics, saves a token classifier; predict and evaluate read it', async () => {
  const train = jsonl(path.join(work.dir, 'train.jsonl'), makeNerRows(240, 1));
  const validation = jsonl(path.join(work.dir, 'validation.jsonl'), makeNerRows(60, 2));
  const out = path.join(work.dir, 'out');
  const r = await cli(['ner', '--model', modelDir, '--train-file', train, '--validation-file', validation, '--output-dir', out, '--epochs', '4',
    '--learning-rate', '2e-3', '--threads', '1', '--device', 'cpu', '--save-strategy', 'no', '--return-entity-level-metrics', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const evals = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'eval_loss' in l);
  assert.equal(evals.length, 4);
  const last = evals[evals.length - 1];
  for (const k of ['eval_overall_f1', 'eval_ANIMAL_f1', 'eval_VEHICLE_number', 'eval_overall_accuracy']) assert.ok(k in last, `${k} missing from ${JSON.stringify(last)}`);
  assert.ok(last.eval_overall_f1 > 0.8, `entity F1 after 4 epochs: ${last.eval_overall_f1}`);
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['BertForTokenClassification']);
  assert.deepEqual(Object.values(config.id2label), ['B-ANIMAL', 'B-VEHICLE', 'I-ANIMAL', 'I-VEHICLE', 'O']);
  const p = await cli(['predict', '--model', out, '--sentence1', 'the big cat saw a bus .', '--device', 'cpu', '--json']);
  assert.equal(p.code, 0, p.stderr);
  const pred = JSON.parse(p.stdout);
  assert.deepEqual(pred.words, ['the', 'big', 'cat', 'saw', 'a', 'bus', '.']);
  assert.equal(pred.tags.length, 7);
  assert.match(`${pred.tags[2]} ${pred.tags[5]} ${pred.tags[0]}`, /^[BI]-ANIMAL [BI]-VEHICLE O$/, JSON.stringify(pred));
  assert.ok(pred.scores.every((x: number) => x > 0 && x <= 1));
  const e = await cli(['evaluate', '--model', out, '--validation-file', validation, '--device', 'cpu', '--json']);
  assert.equal(e.code, 0, e.stderr);
  const em = JSON.parse(e.stdout);
  assert.ok(Math.abs(em.eval_f1 - last.eval_overall_f1) < 1e-12 && Math.abs(em.eval_loss - last.eval_loss) < 1e-6, `${JSON.stringify(em)} vs ${JSON.stringify(last)}`);
  // Bad input: a tag outside the training labels, a row whose tags and words differ in number.
  const bad = jsonl(path.join(work.dir, 'bad.jsonl'), [{ tokens: ['a', 'cat'], ner_tags: ['O', 'B-PLANT'] }]);
  const b = await cli(['evaluate', '--model', out, '--validation-file', bad, '--device', 'cpu']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /bad.jsonl: row 1: tag 2 "B-PLANT" is not one of the 5 labels/);
  const short = jsonl(path.join(work.dir, 'short.jsonl'), [{ tokens: ['a', 'cat'], ner_tags: ['O'] }]);
  const s = await cli(['ner', '--model', modelDir, '--train-file', short, '--output-dir', path.join(work.dir, 'short-out'), '--device', 'cpu']);
  assert.equal(s.code, 2);
  assert.match(s.stderr, /short.jsonl: row 1: 1 tags for 2 words/);
});
