// Forward latency of a bert-base-sized random model (batch 8, sequence 128, fp32): the addon vs PyTorch eager
// on the same libtorch and thread count, alternating rounds. Usage: npm run bench:forward [-- --threads N --rounds R]
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { BertForSequenceClassification } from '../src/model.js';
import { BERT_BASE_UNCASED, parseConfig } from '../src/config.js';
import { addon } from '../src/native.js';
import { projectPython, root } from './paths.js';

const arg = (n: string, d: number) => { const i = process.argv.indexOf(`--${n}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const threads = arg('threads', os.cpus().length), rounds = arg('rounds', 3), batch = arg('batch', 8), seq = arg('seq', 128);
const iters = arg('iters', 10), warmup = 3;
const python = projectPython();
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

const model = await BertForSequenceClassification.fromConfig(parseConfig({ ...BERT_BASE_UNCASED }, 'bert-base-uncased config'), { device: 'cpu', threads });
const inputIds = new Int32Array(batch * seq).map(() => 1000 + Math.floor(Math.random() * 29000));
const b = { shape: [batch, seq] as [number, number], inputIds, attentionMask: new Int32Array(batch * seq).fill(1), tokenTypeIds: new Int32Array(batch * seq) };
const ours: number[] = [], theirs: number[] = [];
for (let r = 0; r < rounds; r++) {
  for (let i = 0; i < warmup + iters; i++) {
    const t = performance.now();
    await model.forward(b);
    if (i >= warmup) ours.push(performance.now() - t);
  }
  const py = JSON.parse(execFileSync(python, [path.join(root, 'scripts', 'bench', 'forward_ref.py'), JSON.stringify({ batch, seq, threads, iters, warmup })], { cwd: os.tmpdir() }).toString().trim().split('\n').pop()!);
  theirs.push(...py.ms);
}
await model.dispose();
const mo = median(ours), mt = median(theirs);
console.log(`forward, bert-base config (random weights), batch ${batch}, seq ${seq}, fp32, ${threads} threads, libtorch ${addon().runtime().torchVersion}, ${rounds} alternating rounds of ${iters}:`);
console.log(`  addon     median ${mo.toFixed(1)} ms (min ${Math.min(...ours).toFixed(1)}, max ${Math.max(...ours).toFixed(1)})`);
console.log(`  PyTorch   median ${mt.toFixed(1)} ms (min ${Math.min(...theirs).toFixed(1)}, max ${Math.max(...theirs).toFixed(1)})`);
console.log(`  ratio addon/PyTorch ${(mo / mt).toFixed(3)}`);
