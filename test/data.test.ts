// Data side without the addon: datasets in every format, bad rows, GLUE from a cache, tokenization, collation, sampling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { loadDataFile, loadGlue } from '../src/datasets.js';
import { GLUE_TASKS, glueMetricNames } from '../src/glue.js';
import { BertTokenizer, truncatedLengths } from '../src/tokenizer.js';
import { batches, collate, lengthGroupedOrder, shuffledOrder } from '../src/collator.js';
import { InputError } from '../src/errors.js';
import { glueParquet, makeHfHome, makeTinyModel, VOCAB } from './fixtures.js';
import { tempDir } from './helpers.js';

test('every GLUE config is registered with its columns, labels and metric', () => {
  assert.deepEqual(Object.keys(GLUE_TASKS).sort(), ['ax', 'cola', 'mnli', 'mrpc', 'qnli', 'qqp', 'rte', 'sst2', 'stsb', 'wnli']);
  assert.deepEqual(GLUE_TASKS.mrpc.textColumns, ['sentence1', 'sentence2']);
  assert.deepEqual(GLUE_TASKS.mrpc.labelNames, ['not_equivalent', 'equivalent']);
  assert.equal(GLUE_TASKS.stsb.isRegression, true);
  assert.equal(GLUE_TASKS.mnli.validationSplit, 'validation_matched');
  assert.deepEqual(glueMetricNames('mrpc'), ['accuracy', 'f1']);
  assert.deepEqual(glueMetricNames('cola'), ['matthews_correlation']);
  assert.deepEqual(glueMetricNames('stsb'), ['pearson', 'spearmanr']);
});

test('GLUE loads offline from the HF cache, with label names from the parquet metadata; test labels are hidden', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const home = await makeHfHome(dir);
    const o = { cacheDir: path.join(home, 'hub'), offline: true };
    const train = await loadGlue('mrpc', 'train', o);
    assert.equal(train.text1.length, 96);
    assert.deepEqual(train.labelNames, ['not_equivalent', 'equivalent']);
    assert.ok(train.labels instanceof Int32Array && train.labels.every((l) => l === 0 || l === 1));
    assert.equal((await loadGlue('mrpc', 'test', o)).labels, null);
    await assert.rejects(loadGlue('mrpc', 'dev', o), /has no split "dev"/);
    await assert.rejects(loadGlue('rte', 'train', o), /cannot get rte\/train-00000-of-00001.parquet of dataset nyu-mll\/glue/);
  } finally {
    cleanup();
  }
});

test('local CSV, TSV (GLUE/MRPC format), JSON Lines and parquet files load with inferred columns', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const csv = path.join(dir, 'a.csv');
    await fs.writeFile(csv, 'sentence1,sentence2,label\n"He said, ""hi"".",She left.,1\nA cat.,A dog.,0\n');
    const c = await loadDataFile(csv);
    assert.deepEqual(c.text1, ['He said, "hi".', 'A cat.']);
    assert.deepEqual(Array.from(c.labels!), [1, 0]);
    const tsv = path.join(dir, 'msr_paraphrase_train.txt');
    await fs.writeFile(tsv, '\uFEFFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said " yes " .\tHe agreed .\n0\t3\t4\tRain .\tSun .\n');
    const t = await loadDataFile(tsv);
    assert.deepEqual(t.text1, ['He said " yes " .', 'Rain .']);
    assert.deepEqual(Array.from(t.labels!), [1, 0]);
    const jsonl = path.join(dir, 'a.jsonl');
    await fs.writeFile(jsonl, '{"premise":"p1","hypothesis":"h1","label":"entailment"}\n{"premise":"p2","hypothesis":"h2","label":"neutral"}\n');
    const j = await loadDataFile(jsonl);
    assert.deepEqual(j.labelNames, ['entailment', 'neutral']);
    assert.deepEqual(Array.from(j.labels!), [0, 1]);
    const pq = path.join(dir, 'a.parquet');
    await fs.writeFile(pq, Buffer.from(glueParquet({ sentence1: ['x y'], sentence2: ['z'], label: [1] })));
    const p = await loadDataFile(pq);
    assert.deepEqual(p.labelNames, ['not_equivalent', 'equivalent']);
    const reg = path.join(dir, 'sts.csv');
    await fs.writeFile(reg, 'sentence1,sentence2,label\na,b,3.8\nc,d,0.25\n');
    const r = await loadDataFile(reg, { isRegression: true });
    assert.ok(r.labels instanceof Float32Array && Math.abs(r.labels[0] - 3.8) < 1e-6);
  } finally {
    cleanup();
  }
});

test('bad rows give an error with the file, the row and the reason', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: Array<[string, string | Buffer, RegExp, object?]> = [
      ['missing.csv', 'sentence1,sentence2,label\na,,1\n', /row 2: column "sentence2" is empty/],
      ['empty.tsv', 'sentence1\tsentence2\tlabel\na\tb\t1\n \tc\t0\n', /row 3: column "sentence1" is empty/],
      ['label.csv', 'sentence1,sentence2,label\na,b,1\nc,d,7\n', /row 3: label "7" is not one of the 2 classes \(0=no, 1=yes\)/, { labelNames: ['no', 'yes'] }],
      ['utf8.tsv', Buffer.concat([Buffer.from('sentence1\tsentence2\tlabel\na\tb\t1\nc\t'), Buffer.from([0xff, 0xfe]), Buffer.from('\t0\n')]), /line 3: invalid UTF-8/],
      ['fields.tsv', 'sentence1\tsentence2\tlabel\na\tb\n', /line 2: 2 fields, the header has 3/],
      ['bad.jsonl', '{"sentence":"a","label":1}\n{"sentence":\n', /line 2: invalid JSON Lines row/],
      ['nocol.jsonl', '{"sentence":"a","label":1}\n{"label":0}\n', /row 2: missing column "sentence"/],
      ['what.xlsx', 'x', /unknown data format ".xlsx"/],
      ['nolabel.csv', 'sentence1,sentence2,label\na,b,\n', /row 2: missing label/],
      ['cols.csv', 'foo,bar\n1,2\n', /cannot tell the text column/],
    ];
    for (const [name, content, re, opts] of cases) {
      const f = path.join(dir, name);
      await fs.writeFile(f, content);
      await assert.rejects(loadDataFile(f, opts), (e: Error) => e instanceof InputError && e.message.startsWith(f) && re.test(e.message), name);
    }
    await assert.rejects(loadDataFile(path.join(dir, 'none.csv')), /none.csv: cannot read \(ENOENT\)/);
    await fs.writeFile(path.join(dir, 'broken.parquet'), 'PAR1 not really');
    await assert.rejects(loadDataFile(path.join(dir, 'broken.parquet')), /broken.parquet: not a readable parquet file/);
  } finally {
    cleanup();
  }
});

test('tokenizer.json and vocab.txt give the same encodings; pairs follow [CLS] a [SEP] b [SEP]', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const m = await makeTinyModel(path.join(dir, 'm'));
    const fromJson = await BertTokenizer.fromPretrained(m);
    const vocabOnly = path.join(dir, 'v');
    await fs.mkdir(vocabOnly);
    for (const f of ['vocab.txt', 'tokenizer_config.json']) await fs.copyFile(path.join(m, f), path.join(vocabOnly, f));
    const fromVocab = await BertTokenizer.fromPretrained(vocabOnly);
    const e = fromJson.encode('The Cats saw', 'a dog runs');
    assert.deepEqual(e.inputIds, [VOCAB.indexOf('[CLS]'), VOCAB.indexOf('the'), VOCAB.indexOf('cat'), VOCAB.indexOf('##s'), VOCAB.indexOf('saw'), VOCAB.indexOf('[SEP]'),
      VOCAB.indexOf('a'), VOCAB.indexOf('dog'), VOCAB.indexOf('runs'), VOCAB.indexOf('[SEP]')]);
    assert.deepEqual(e.tokenTypeIds, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert.deepEqual(fromVocab.encode('The Cats saw', 'a dog runs'), e);
    assert.deepEqual(fromJson.encode('zebra').inputIds, [2, VOCAB.indexOf('[UNK]'), 3]);
    const t = fromJson.encode('the cat saw the dog and the bird again', 'a fish', { maxLength: 8 });
    assert.equal(t.inputIds.length, 8);
    assert.throws(() => fromJson.encodeBatch(['a'], ['b'], { maxLength: 2 }), /maxLength must be an integer >= 3/);
    await fs.writeFile(path.join(dir, 'v', 'tokenizer_config.json'), '{"cls_token": "[NOPE]"}');
    await assert.rejects(BertTokenizer.fromPretrained(vocabOnly), /special token \[NOPE\]/);
    await fs.rm(path.join(dir, 'v', 'vocab.txt'));
    await assert.rejects(BertTokenizer.fromPretrained(vocabOnly), /no tokenizer.json and no vocab.txt/);
  } finally {
    cleanup();
  }
});

test('longest_first truncation splits the budget as the tokenizers crate does', () => {
  // (n1, n2, maxLength) -> kept lengths; the budget excludes the 3 special tokens of a pair.
  assert.deepEqual(truncatedLengths(5, 5, true, 13), [5, 5]);
  assert.deepEqual(truncatedLengths(20, 3, true, 13), [7, 3]);
  assert.deepEqual(truncatedLengths(3, 20, true, 13), [3, 7]);
  assert.deepEqual(truncatedLengths(20, 20, true, 13), [5, 5]);
  assert.deepEqual(truncatedLengths(20, 20, true, 14), [5, 6]);
  assert.deepEqual(truncatedLengths(21, 20, true, 14), [6, 5]);
  assert.deepEqual(truncatedLengths(8, 6, true, 14), [6, 5]);
  assert.deepEqual(truncatedLengths(30, 0, false, 10), [8, 0]);
});

test('the collator pads to the longest row (or a multiple), with masks, type ids and labels', () => {
  const enc = { ids: Int32Array.from([2, 5, 3, 2, 6, 7, 3, 8, 3]), typeIds: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 1]), offsets: Int32Array.from([0, 3, 9]), length: 2 };
  const b = collate(enc, [1, 0], { padId: 0, labels: Int32Array.from([1, 0]) });
  assert.deepEqual(b.shape, [2, 6]);
  assert.deepEqual(Array.from(b.inputIds), [2, 6, 7, 3, 8, 3, 2, 5, 3, 0, 0, 0]);
  assert.deepEqual(Array.from(b.attentionMask!), [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  assert.deepEqual(Array.from(b.tokenTypeIds!), [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(b.labels!), [0, 1]);
  assert.equal(collate(enc, [0], { padId: 0, padToMultipleOf: 8 }).shape[1], 8);
  assert.ok(collate(enc, [0, 1], { padId: 0, labels: Float32Array.from([0.5, 2]) }).labels instanceof Float32Array);
});

test('the sampler is a seeded permutation that changes with the epoch; length grouping and drop_last work', () => {
  const a = shuffledOrder(100, 42, 0), b = shuffledOrder(100, 42, 0), c = shuffledOrder(100, 42, 1);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(Array.from(a).sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.equal(batches(a, 8).length, 13);
  assert.equal(batches(a, 8, true).length, 12);
  const lens = Array.from({ length: 64 }, (_, i) => (i * 7) % 13 + 1);
  const offsets = Int32Array.from([0, ...lens.map((_, i) => lens.slice(0, i + 1).reduce((x, y) => x + y, 0))]);
  const enc = { ids: new Int32Array(offsets[64]), typeIds: new Uint8Array(offsets[64]), offsets, length: 64 };
  const g = lengthGroupedOrder(enc, 4, 42, 0);
  assert.deepEqual(Array.from(g).sort((x, y) => x - y), Array.from({ length: 64 }, (_, i) => i));
  for (let i = 1; i < 64; i++) assert.ok(lens[g[i - 1]] >= lens[g[i]], 'one mega-batch sorted longest first');
});
