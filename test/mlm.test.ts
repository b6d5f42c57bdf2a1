// `node train.js mlm` (run_mlm.py): the masking against transformers' DataCollatorForLanguageModeling on the same
// batch over many draws (chosen share, the 80/10/10 split, special tokens and padding never touched), the text
// grouping, and the command end to end (perplexity = exp(eval_loss)).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome, makeTinyModel, TOPICS, VOCAB } from './fixtures.js';
import { hfRef, runCli, tempDir } from './helpers.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { collate, collatePairs, maskTokens, mulberry32 } from '../src/collator.js';
import { tokenizeForMlm } from '../src/mlm.js';

let work: { dir: string; cleanup: () => void }, home: string, modelDir: string;
before(async () => {
  work = tempDir('mlm-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
  modelDir = await makeTinyModel(path.join(work.dir, 'tiny'));
});
after(() => work.cleanup());

const cli = (args: string[]) => runCli(args, { HF_HOME: home, HF_HUB_OFFLINE: '1' });

test('masking: chosen share, 80/10/10 split and untouched special tokens as DataCollatorForLanguageModeling, over 2,000 draws', async () => {
  const tok = await BertTokenizer.fromPretrained(modelDir);
  const enc = tok.encodeBatch(['the big cat saw a red bus today .', 'a dog .', 'the old boat runs near the green train again and again .'], null);
  const batch = collate(enc, [0, 1, 2], { padId: tok.padId });
  const draws = 2000, p = 0.15, vocabSize = VOCAB.length;  // the tokenizer's length: transformers draws torch.randint(len(tokenizer))
  const special = new Set([tok.clsId, tok.sepId, tok.padId]);
  const rng = mulberry32(3);
  const ours = { eligible: 0, chosen: 0, mask: 0, other: 0, same: 0, specialTouched: 0 };
  for (let d = 0; d < draws; d++) {
    const m = maskTokens(batch, { mlmProbability: p, maskId: tok.maskId, vocabSize, specialIds: special }, rng);
    for (let i = 0; i < m.inputIds.length; i++) {
      const isSpecial = batch.attentionMask![i] === 0 || special.has(batch.inputIds[i]);
      const chosen = (m.labels as Int32Array)[i] !== -100;
      if (!isSpecial) ours.eligible++;
      if (isSpecial && (chosen || m.inputIds[i] !== batch.inputIds[i])) ours.specialTouched++;
      if (!chosen) continue;
      assert.equal((m.labels as Int32Array)[i], batch.inputIds[i], 'a label is the original token');
      ours.chosen++;
      if (m.inputIds[i] === tok.maskId) ours.mask++;
      else if (m.inputIds[i] === batch.inputIds[i]) ours.same++;
      else ours.other++;
    }
  }
  const theirs = await hfRef('mlm-mask-stats', { dir: modelDir, seed: 1, p, draws, shape: batch.shape, inputIds: [...batch.inputIds], attentionMask: [...batch.attentionMask!] });
  assert.equal(ours.eligible, theirs.eligible, 'the same tokens are eligible');
  assert.equal(ours.specialTouched, 0);
  assert.equal(theirs.specialTouched, 0);
  // Two-proportion z: ours against transformers', and each against the design value. |z| < 4.5 (a false alarm about
  // once in 150,000 runs per check).
  const z = (k1: number, n1: number, k2: number, n2: number) => {
    const pooled = (k1 + k2) / (n1 + n2);
    return (k1 / n1 - k2 / n2) / Math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
  };
  const z1 = (k: number, n: number, q: number) => (k / n - q) / Math.sqrt((q * (1 - q)) / n);
  const checks = [
    ['chosen share', z(ours.chosen, ours.eligible, theirs.chosen, theirs.eligible), z1(ours.chosen, ours.eligible, p)],
    ['[MASK] share', z(ours.mask, ours.chosen, theirs.mask, theirs.chosen), z1(ours.mask, ours.chosen, 0.8)],
    ['unchanged share', z(ours.same, ours.chosen, theirs.same, theirs.chosen), z1(ours.same, ours.chosen, 0.1 + 0.1 / vocabSize)],
  ] as const;
  console.log(`masking over ${draws} draws: ours ${JSON.stringify(ours)}; transformers ${JSON.stringify(theirs)}; z ${checks.map(([n, a, b]) => `${n} ${a.toFixed(2)} / ${b.toFixed(2)}`).join(', ')}`);
  for (const [name, vsTheirs, vsDesign] of checks) {
    assert.ok(Math.abs(vsTheirs) < 4.5, `${name}: ours vs transformers z ${vsTheirs}`);
    assert.ok(Math.abs(vsDesign) < 4.5, `${name}: ours vs the design value z ${vsDesign}`);
  }
});

test('group_texts: every line with its [CLS] ... [SEP] joined and cut into blocks, the remainder dropped; line_by_line skips empty lines', async () => {
  const tok = await BertTokenizer.fromPretrained(modelDir);
  const lines = ['the cat saw a dog .', '', 'a red bus .', 'the boat runs fast again .'];
  const all = tok.encodeBatch(lines, null, { truncation: false });
  const grouped = tokenizeForMlm(lines, tok, { maxSeqLength: 8 });
  assert.equal(grouped.enc.length, Math.floor(all.ids.length / 8));
  assert.deepEqual(Array.from(grouped.enc.ids), Array.from(all.ids.subarray(0, grouped.enc.length * 8)));
  const byLine = tokenizeForMlm(lines, tok, { maxSeqLength: 6, lineByLine: true });
  assert.equal(byLine.enc.length, 3);
  assert.ok(byLine.enc.offsets[1] - byLine.enc.offsets[0] === 6, 'truncated to max_seq_length');
});

test('node train.js mlm fine-tunes a masked LM on text lines: eval loss falls, perplexity = exp(eval_loss), saved as BertForMaskedLM', async () => {
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  // A predictable language: "the <topic> saw the <same topic> ." so a masked word can be learned.
  const lines = Array.from({ length: 400 }, () => { const t = TOPICS[Math.floor(rnd() * TOPICS.length)]; return `the ${t} saw the ${t} .`; });
  const file = path.join(work.dir, 'lines.txt');
  writeFileSync(file, lines.join('\n') + '\n');
  const out = path.join(work.dir, 'out');
  const r = await cli(['mlm', '--model', modelDir, '--train-file', file, '--output-dir', out, '--epochs', '4', '--learning-rate', '3e-3', '--max-seq-length', '32',
    '--threads', '1', '--device', 'cpu', '--save-strategy', 'no', '--eval-strategy', 'epoch', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const evals = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'eval_loss' in l);
  assert.equal(evals.length, 4);
  assert.ok(evals[3].eval_loss < evals[0].eval_loss, `eval loss ${evals.map((e) => e.eval_loss).join(' -> ')}`);
  assert.ok(evals[3].eval_accuracy > 0 && evals[3].eval_accuracy <= 1);
  const results = JSON.parse(readFileSync(path.join(out, 'eval_results.json'), 'utf8'));
  assert.ok(Math.abs(results.perplexity - Math.exp(results.eval_loss)) < 1e-9);
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).architectures, ['BertForMaskedLM']);
  const e = await cli(['evaluate', '--model', out, '--validation-file', file, '--max-length', '32', '--device', 'cpu', '--json']);
  assert.equal(e.code, 0, e.stderr);
  const em = JSON.parse(e.stdout);
  assert.ok(Number.isFinite(em.eval_loss) && em.eval_accuracy >= 0 && Math.abs(em.perplexity - Math.exp(em.eval_loss)) < 1e-9, e.stdout);
  // The fill-mask pipeline from `predict`: the top-k tokens for the mask, likeliest first.
  const fill = await cli(['predict', '--model', out, '--sentence1', 'the cat saw the [MASK] .', '--top-k', '4', '--device', 'cpu', '--json']);
  assert.equal(fill.code, 0, fill.stderr);
  const candidates = JSON.parse(fill.stdout) as Array<{ token_str: string; score: number }>;
  assert.equal(candidates.length, 4);
  assert.ok(candidates.every((c, i) => c.score > 0 && (i === 0 || c.score <= candidates[i - 1].score)));
  assert.ok(candidates.some((c) => c.token_str === 'cat'), `after training on "the X saw the X .", "cat" is among the 4 likeliest of ${VOCAB.length}: ${fill.stdout}`);
  const bad = await cli(['mlm', '--model', modelDir, '--train-file', file, '--output-dir', path.join(work.dir, 'bad'), '--mlm-probability', '1.5']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--mlm-probability must be in \(0, 1\), got 1.5/);
});

test('whole-word masking: words (runs of tokens without a gap) chosen whole, at transformers\' rate, over 2,000 draws', async () => {
  const tok = await BertTokenizer.fromPretrained(modelDir);
  // "cats" and "buses" are several pieces; "dog." is one word of two tokens (no gap), as transformers' offsets rule has it.
  const texts = ['the cats saw the buses again .', 'a dog. likes the boats', 'the big red trains and the old cars'];
  const data = tokenizeForMlm(texts, tok, { maxSeqLength: 32, lineByLine: true, wholeWordMask: true });
  const rows = [0, 1, 2];
  const batch = collate(data.enc, rows, { padId: tok.padId });
  const masking = { mlmProbability: 0.15, maskId: tok.maskId, vocabSize: VOCAB.length, specialIds: new Set([tok.clsId, tok.sepId, tok.padId]),
    tokenOffsets: collatePairs(data.enc, data.tokenOffsets!, rows, batch.shape[1]) };
  const draws = 2000;
  const { counts: theirs, wordIds } = await hfRef('mlm-wwm-stats', { dir: modelDir, texts, p: 0.15, draws, seed: 2 });
  const flatWords = (wordIds as number[][]).flat();
  assert.equal(flatWords.length, batch.inputIds.length, 'the same padded batch');
  const rng = mulberry32(4);
  const ours = { words: 0, wordsChosen: 0, wordsPartly: 0, tokensChosen: 0, mask: 0, specialTouched: 0 };
  for (let d = 0; d < draws; d++) {
    const m = maskTokens(batch, masking, rng), y = m.labels as Int32Array;
    for (let b = 0; b < 3; b++) {
      const S = batch.shape[1], ids = new Set(flatWords.slice(b * S, (b + 1) * S).filter((w) => w >= 0));
      for (const w of ids) {
        const sel = [...Array(S).keys()].filter((t) => flatWords[b * S + t] === w).map((t) => y[b * S + t] !== -100);
        ours.words++;
        if (sel.every(Boolean)) ours.wordsChosen++;
        else if (sel.some(Boolean)) ours.wordsPartly++;
      }
    }
    for (let i = 0; i < y.length; i++) {
      if (y[i] !== -100) { ours.tokensChosen++; if (m.inputIds[i] === tok.maskId) ours.mask++; }
      if (flatWords[i] < 0 && (y[i] !== -100 || m.inputIds[i] !== batch.inputIds[i])) ours.specialTouched++;
    }
  }
  const z = (k1: number, n1: number, k2: number, n2: number) => { const q = (k1 + k2) / (n1 + n2); return (k1 / n1 - k2 / n2) / Math.sqrt(q * (1 - q) * (1 / n1 + 1 / n2)); };
  console.log(`whole-word masking over ${draws} draws: ours ${JSON.stringify(ours)}; transformers ${JSON.stringify(theirs)}`);
  assert.equal(ours.words, theirs.words, 'the same words');
  assert.deepEqual([ours.wordsPartly, theirs.wordsPartly, ours.specialTouched, theirs.specialTouched], [0, 0, 0, 0]);
  assert.ok(Math.abs(z(ours.wordsChosen, ours.words, theirs.wordsChosen, theirs.words)) < 4.5, 'chosen-word share');
  assert.deepEqual([ours.mask, theirs.mask], [ours.tokensChosen, theirs.tokensChosen], 'whole words always become [MASK] (transformers sets mask_replace_prob to 1)');
  assert.ok(Math.abs(ours.wordsChosen / ours.words - 0.15) < 4.5 * Math.sqrt(0.15 * 0.85 / ours.words));
});
