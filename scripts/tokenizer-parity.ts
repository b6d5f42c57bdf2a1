// Token ids, type ids and masks for all MRPC pairs vs transformers' BertTokenizerFast, from tokenizer.json and
// from vocab.txt, with truncation=True and with max_length=32. Needs ../shared (skips clearly without it).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadGlue } from '../src/datasets.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { projectPython, root } from './paths.js';

const shared = path.resolve(root, '..', 'shared', 'hf-home');
if (!existsSync(shared)) {
  console.log(`SKIP tokenizer parity: ${shared} is absent (it holds the MRPC data this check tokenizes)`);
  process.exit(0);
}
const home = execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'prepare-minilm.js')], { encoding: 'utf8' }).trim().split('\n').pop()!;
const hub = { cacheDir: path.join(home, 'hub'), offline: true };
const model = (await import('../src/hub.js')).cachedFile;
const modelDir = path.dirname((await model('sentence-transformers/all-MiniLM-L6-v2', 'tokenizer.json', hub))!);
const splits = await Promise.all(['train', 'validation', 'test'].map((s) => loadGlue('mrpc', s, hub)));
const a = splits.flatMap((s) => s.text1), b = splits.flatMap((s) => s.text2!);
console.log(`${a.length} MRPC pairs`);
const python = projectPython();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tokparity-'));
let failures = 0;
try {
  for (const source of ['tokenizer.json', 'vocab.txt'] as const) {
    // A folder holding only what this source needs, so the JS side takes the same path.
    const dir = path.join(tmp, source);
    execFileSync('mkdir', ['-p', dir]);
    for (const f of ['tokenizer_config.json', source]) writeFileSync(path.join(dir, f), readFileSync(path.join(modelDir, f)));
    const tok = await BertTokenizer.fromPretrained(dir);
    for (const maxLength of [null, 32]) {
      const t0 = performance.now();
      const enc = tok.encodeBatch(a, b, maxLength ? { maxLength } : {});
      const ms = performance.now() - t0;
      const argsFile = path.join(tmp, 'args.json'), outFile = path.join(tmp, 'out.json');
      writeFileSync(argsFile, JSON.stringify({ dir, source, pairs: a.map((x, i) => [x, b[i]]), maxLength }));
      execFileSync(python, [path.join(root, 'test', 'python', 'tokenize_ref.py'), argsFile, outFile], { stdio: ['ignore', 'ignore', 'inherit'], cwd: os.tmpdir() });
      const ref = JSON.parse(readFileSync(outFile, 'utf8')) as { input_ids: number[][]; token_type_ids: number[][]; attention_mask: number[][] };
      let mismatches = 0, first = -1;
      for (let i = 0; i < a.length; i++) {
        const s = enc.offsets[i], e = enc.offsets[i + 1];
        const ids = Array.from(enc.ids.subarray(s, e)), types = Array.from(enc.typeIds.subarray(s, e));
        const ok = ids.length === ref.input_ids[i].length && ids.every((v, j) => v === ref.input_ids[i][j]) &&
          types.every((v, j) => v === ref.token_type_ids[i][j]) && ref.attention_mask[i].every((v) => v === 1);
        if (!ok) { mismatches++; if (first < 0) first = i; }
      }
      console.log(`${source}, ${maxLength ? `max_length=${maxLength}` : 'truncation=True'}: ${mismatches} mismatches of ${a.length} (JS tokenization ${ms.toFixed(0)} ms)` +
        (first >= 0 ? `; first at pair ${first}: ${JSON.stringify([a[first], b[first]])}` : ''));
      failures += mismatches;
      tok.clearCache();
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
if (failures) {
  console.log(`FAIL: ${failures} mismatches`);
  process.exit(1);
}
console.log('tokenizer parity: 0 mismatches');
