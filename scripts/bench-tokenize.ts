// Pairs/second for tokenizing + collating the MRPC train split (fresh tokenizer each round, so no cache carries
// over) vs Python's `tokenizers` (Rust) encode_batch. Needs ../shared for MRPC and the MiniLM vocabulary.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadGlue } from '../src/datasets.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { batches, collate } from '../src/collator.js';
import { cachedFile } from '../src/hub.js';
import { projectPython, root } from './paths.js';

if (!existsSync(path.resolve(root, '..', 'shared', 'hf-home'))) {
  console.log('SKIP tokenization benchmark: ../shared/hf-home (MRPC) is absent');
  process.exit(0);
}
const home = execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'prepare-minilm.js')], { encoding: 'utf8' }).trim().split('\n').pop()!;
const hub = { cacheDir: path.join(home, 'hub'), offline: true };
const train = await loadGlue('mrpc', 'train', hub);
const tokJson = (await cachedFile('sentence-transformers/all-MiniLM-L6-v2', 'tokenizer.json', hub))!;
const rounds = 5, ours: number[] = [];
for (let r = 0; r < rounds; r++) {
  const tok = await BertTokenizer.fromPretrained(path.dirname(tokJson));
  const t = performance.now();
  const enc = tok.encodeBatch(train.text1, train.text2, { maxLength: 512 });
  for (const rows of batches(Int32Array.from({ length: enc.length }, (_, i) => i), 8)) collate(enc, rows, { padId: tok.padId, labels: train.labels });
  ours.push(train.text1.length / ((performance.now() - t) / 1000));
}
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tokbench-'));
writeFileSync(path.join(tmp, 'pairs.json'), JSON.stringify(train.text1.map((a, i) => [a, train.text2![i]])));
const python = projectPython();
const py = JSON.parse(execFileSync(python, [path.join(root, 'scripts', 'bench', 'tokenize_ref.py'), tokJson, path.join(tmp, 'pairs.json'), String(rounds)], { cwd: os.tmpdir() }).toString());
rmSync(tmp, { recursive: true, force: true });
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`MRPC train (${train.text1.length} pairs), median of ${rounds} rounds:`);
console.log(`  ours (tokenize + collate, JS):          ${med(ours).toFixed(0)} pairs/s`);
console.log(`  Python tokenizers encode_batch (Rust):  ${med(py.pairs_per_s).toFixed(0)} pairs/s (${os.cpus().length} cores, Rust may use all)`);
console.log(`  ratio ours/Rust ${(med(ours) / med(py.pairs_per_s)).toFixed(3)}`);
