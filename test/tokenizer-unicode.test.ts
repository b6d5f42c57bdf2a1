// Tokenization equals Hugging Face's BertTokenizerFast (Rust `tokenizers`) on text in many scripts, not only English:
// a seeded corpus (accents and combining marks, Greek final sigma, Cyrillic, Arabic, Hebrew, Devanagari, Thai, CJK in
// and outside the BMP, kana, Hangul, emoji sequences, zero-width and control characters, Unicode spaces, recently
// added characters, long words, special-token literals, empty strings), singles and pairs, truncation at several
// max_lengths, cased and uncased, tokenizer.json and vocab.txt folders. Python tokenizes in batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BertTokenizer } from '../src/tokenizer.js';
import { pythonForTests, root, tempDir } from './helpers.js';

const PIECES = [
  'Café', 'naïve', 'ÀÉÎÕÜ', 'Ångström', 'e\u0301le\u0300ve', 'a\u0308\u0301\u0323', 'İstanbul', 'ß', 'ẞ', 'ǅungla', 'ﬁnance', 'Œuvre', 'Ø',
  'ΑΣ', 'ΟΔΥΣΣΕΥΣ', 'Σίσυφος', 'ς', 'ΣΑΣ.', 'ΐ', 'Привет', 'МИР!', 'Ёжик', 'Ґ', 'مرحبا', 'مَرْحَبًا', '،؟', 'שָׁלוֹם', 'नमस्ते', 'क्षत्रिय', '॥',
  'สวัสดีครับ', '中文字符', '日本語のテキスト', 'カタカナ', 'ひらがな', 'ｶﾀｶﾅ', '𠹥', '𪞣', '𫝀', '\u{30000}', '\u{2F800}', '豈', '한국어', '텍스트', '가',
  '👍🏽', '👨‍👩‍👧', '🇫🇷', '❤️', '©®™', '\u200b', '\u200d', '\ufeff', '\u0000', '\u0007', '\u00ad', '\ufffd', '\u2028', '\u0085', '\u00a0', '\u2003',
  '\u3000', '\u202f', '\u1680', '\u180e', '\t', '\n', '\r\n', '🫠', '🪿', '\u{1E030}', '\u2E5D', '\u{11F45}', '\u{13439}', '\u{1B11F}', '₀', '⸻', '∑∫',
  'a'.repeat(101), 'x'.repeat(99) + 'é', 'Donaudampfschifffahrtsgesellschaftskapitän', '[CLS]', '[SEP] x', '[MASK]ed', '[cls]', '[UNK]', 'hello,world!!',
  '$100', 'a+b=c', 'foo_bar', 'e.g.', "don't", '¿Qué?', '«quote»', '—', '…', '٣٤٥', '১২৩', 'Ⅻ', 'ℌ', 'ǈ', 'ᾼ', 'ﷺ', 'ﬀ', '㍿', '①', 'Ꭰ', 'ꭰ',
];
const SEPS = [' ', '', ' ', ', ', '-', '  ', '\u00a0', '.'];

function corpus(seed: number) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const text = () => {
    const n = 1 + Math.floor(rnd() * 6);
    let t = '';
    for (let i = 0; i < n; i++) t += (i ? SEPS[Math.floor(rnd() * SEPS.length)] : '') + PIECES[Math.floor(rnd() * PIECES.length)];
    return t;
  };
  const singles = [...PIECES, '', '   ', '\t\n', ...Array.from({ length: 500 }, text)];
  const pairs = Array.from({ length: 300 }, () => [text(), text()] as [string, string]);
  pairs.push(['', 'x'], ['ΑΣ', '']);
  return { singles, pairs };
}

test('multilingual text: 0 mismatches with BertTokenizerFast, cased and uncased, tokenizer.json and vocab.txt, several max_lengths', async () => {
  const { dir, cleanup } = tempDir('tok-unicode-');
  try {
    const { singles, pairs } = corpus(7);
    const maxLengths = [null, 16, 64];
    const args = path.join(dir, 'args.json'), out = path.join(dir, 'out.json');
    writeFileSync(args, JSON.stringify({ dir, singles, pairs, maxLengths }));
    execFileSync(pythonForTests(), [path.join(root, 'test', 'python', 'unicode_tokenize_ref.py'), args, out], { cwd: os.tmpdir(), env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' }, stdio: ['ignore', 'ignore', 'inherit'] });
    const ref = JSON.parse(readFileSync(out, 'utf8'));
    const report: string[] = [];
    let total = 0, bad = 0;
    for (const name of ['uncased', 'cased'])
      for (const source of ['json', 'vocab']) {
        const tok = await BertTokenizer.fromPretrained(path.join(dir, `${name}-${source}`));
        for (const ml of maxLengths) {
          const r = ref[`${name}/${ml}`];
          const o = ml ? { maxLength: ml } : {};
          const s = tok.encodeBatch(singles, null, o), p = tok.encodeBatch(pairs.map((x) => x[0]), pairs.map((x) => x[1]), o);
          const row = (d: typeof s, i: number) => Array.from(d.ids.subarray(d.offsets[i], d.offsets[i + 1]));
          let n = 0;
          singles.forEach((t, i) => { total++; if (JSON.stringify(row(s, i)) !== JSON.stringify(r.singles[i])) { n++; if (n <= 3) report.push(`${name}-${source} ${ml}: ${JSON.stringify(t)} -> ${JSON.stringify(row(s, i))} vs ${JSON.stringify(r.singles[i])}`); } });
          pairs.forEach((pr, i) => {
            total++;
            const types = Array.from(p.typeIds.subarray(p.offsets[i], p.offsets[i + 1]));
            if (JSON.stringify(row(p, i)) !== JSON.stringify(r.pairs[i]) || JSON.stringify(types) !== JSON.stringify(r.pairTypes[i])) { n++; if (n <= 3) report.push(`${name}-${source} ${ml} pair: ${JSON.stringify(pr)}`); }
          });
          bad += n;
        }
      }
    console.log(`multilingual tokenizer parity: ${bad} mismatches of ${total} encodings`);
    assert.equal(bad, 0, report.join('\n'));
  } finally {
    cleanup();
  }
});

test('lone surrogates are refused with their position, on the tokenizer and the data paths alike', async () => {
  const { dir, cleanup } = tempDir('tok-surrogate-');
  try {
    const { makeTinyModel } = await import('./fixtures.js');
    const tok = await BertTokenizer.fromPretrained(await makeTinyModel(path.join(dir, 'm')));
    assert.throws(() => tok.encodeBatch(['a cat \ud800 .'], null), /lone surrogate \(U\+D800\) at position 6/);
    assert.throws(() => tok.encodeBatch(['ok'], ['\udc00']), /lone surrogate \(U\+DC00\) at position 0/);
    assert.deepEqual(Array.from(tok.encodeBatch(['😀'], null).ids).length, 3);  // a valid pair is one character
    // Files: UTF-8 cannot carry one (invalid UTF-8 is refused); a JSON escape can, and is refused with its row.
    const { loadDataFile } = await import('../src/datasets.js');
    const f = path.join(dir, 'sur.jsonl');
    writeFileSync(f, '{"sentence": "fine", "label": 0}\n{"sentence": "half \\ud83d pair", "label": 1}\n');
    await assert.rejects(loadDataFile(f), /sur.jsonl: row 2: column "sentence" has a lone surrogate \(U\+D83D\) at position 5/);
  } finally {
    cleanup();
  }
});
