// Data parallelism on c10d Gloo, on 127.0.0.1 only: 2 processes x batch 4 train to the weights of 1 process x
// batch 8 (with and without gradient accumulation), evaluate exactly as 1 process does, resume from their own
// checkpoints, start under torchrun, and fail fast and clean when a worker dies or the environment is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makePairs, makeTinyModel } from './fixtures.js';
import { pythonForTests, root, tempDir } from './helpers.js';
import { readSafetensors } from '../src/safetensors.js';
import { shardBatches, torchrunEnv } from '../src/distributed.js';
import { batches } from '../src/collator.js';
import { UsageError } from '../src/errors.js';
import { addon } from '../src/native.js';

const TRAIN = path.join(root, 'train.js');
// The addon has Gloo when its headers were there at build time (libgloo-dev; .ci/run installs it).
const NO_GLOO = !addon().runtime().distributedBackends.includes('gloo')
  ? 'this addon was built without Gloo headers (apt-get install libgloo-dev, then npm run rebuild)' : false;
const cleanEnv = () => {
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HUB_OFFLINE: '1' };
  for (const k of ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']) delete env[k];
  return env;
};

function run(cmd: string, args: string[], env = cleanEnv(), cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(cmd, args, { env, cwd, maxBuffer: 1 << 26 }, (e, stdout, stderr) =>
    resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr })));
}

async function fixture(dir: string, dropout = 0) {
  const model = await makeTinyModel(path.join(dir, 'model'), 7, { hidden_dropout_prob: dropout, attention_probs_dropout_prob: dropout });
  const write = async (n: number, seed: number, file: string) => {
    const p = makePairs(n, seed);
    await fs.writeFile(file, p.sentence1.map((s, i) => JSON.stringify({ sentence1: s, sentence2: p.sentence2[i], label: p.label[i] })).join('\n') + '\n');
    return file;
  };
  // 64 rows: whole batches of 8; 43 validation rows: 6 eval batches of 8, the last short, split 3/3 between ranks.
  return ['--model', model, '--train-file', await write(64, 1, path.join(dir, 'train.jsonl')), '--validation-file', await write(43, 2, path.join(dir, 'val.jsonl')),
    '--device', 'cpu', '--threads', '1', '--json', '--learning-rate', '1e-3', '--adam-epsilon', '1e-6', '--logging-steps', '2'];
}

const f32 = (d: Uint8Array) => new Float32Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));

/**
 * The largest per-tensor difference, relative to the tensor's largest value. The attention key biases are
 * compared in absolute terms: softmax ignores a per-query constant, so their gradient is exactly zero in theory
 * and float rounding noise in practice (values ~1e-10, different in every summation order).
 */
async function weightDiff(a: string, b: string) {
  const [x, y] = await Promise.all([readSafetensors(a), readSafetensors(b)]);
  let rel = 0, keyBiasAbs = 0, worst = '';
  for (const t of x.tensors) {
    const u = y.tensors.find((v) => v.name === t.name);
    assert.ok(u, `${t.name} missing in ${b}`);
    const p = f32(t.data), q = f32(u.data);
    let num = 0, den = 0;
    for (let i = 0; i < p.length; i++) { num = Math.max(num, Math.abs(p[i] - q[i])); den = Math.max(den, Math.abs(p[i])); }
    if (/attention\.self\.key\.bias$/.test(t.name)) keyBiasAbs = Math.max(keyBiasAbs, num);
    else if (num / den > rel) { rel = num / den; worst = t.name; }
  }
  return { rel, keyBiasAbs, worst };
}

const evals = (stdout: string) => stdout.split('\n').filter((l) => l.includes('"eval_loss"')).map((l) => JSON.parse(l))
  .map(({ eval_runtime: _r, eval_samples_per_second: _s, eval_steps_per_second: _t, ...m }) => m);

for (const accum of [1, 2])
test(`2 processes x batch 4 train to 1 process x batch 8's weights (gradient accumulation ${accum}); evaluation equal exactly`, { skip: NO_GLOO }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = [...await fixture(dir), '--epochs', '2', '--save-strategy', 'no', '--eval-on-start', '--gradient-accumulation-steps', String(accum)];
    const one = await run(process.execPath, [TRAIN, ...base, '--batch-size', '8', '--output-dir', path.join(dir, 'one')]);
    assert.equal(one.code, 0, one.stderr);
    const two = await run(process.execPath, [TRAIN, ...base, '--batch-size', '4', '--nproc-per-node', '2', '--output-dir', path.join(dir, 'two')]);
    assert.equal(two.code, 0, two.stderr);
    assert.match(two.stdout, /"world_size":2/);
    const d = await weightDiff(path.join(dir, 'one', 'model.safetensors'), path.join(dir, 'two', 'model.safetensors'));
    console.log(`ddp accum ${accum}: weights max rel diff ${d.rel.toExponential(2)} (${d.worst}), key biases ${d.keyBiasAbs.toExponential(2)} abs`);
    assert.ok(d.rel <= 1e-5, `weights differ by ${d.rel} relative (${d.worst})`);
    assert.ok(d.keyBiasAbs <= 1e-8, `key biases differ by ${d.keyBiasAbs}`);
    // The same steps, the same mean losses (as logged: averaged over ranks), the same evaluations.
    const state = async (o: string) => JSON.parse(await fs.readFile(path.join(dir, o, 'trainer_state.json'), 'utf8'));
    const [s1, s2] = [await state('one'), await state('two')];
    assert.equal(s2.global_step, s1.global_step);
    assert.equal(s1.global_step, 2 * Math.ceil(8 / accum));
    const losses = (s: { log_history: Record<string, number>[] }) => s.log_history.filter((e) => 'loss' in e).map((e) => e.loss);
    assert.deepEqual(losses(s2), losses(s1));
    const [e1, e2] = [evals(one.stdout), evals(two.stdout)];
    assert.equal(e1.length, 3);
    assert.deepEqual(e2[0], e1[0], 'evaluation before training (same weights) must be identical');
    for (let i = 1; i < e1.length; i++) {
      assert.equal(e2[i].eval_accuracy, e1[i].eval_accuracy);
      assert.equal(e2[i].eval_f1, e1[i].eval_f1);
      assert.ok(Math.abs(e2[i].eval_loss - e1[i].eval_loss) <= 1e-6, `eval_loss ${e2[i].eval_loss} vs ${e1[i].eval_loss}`);
    }
    // Rank 0 alone wrote the output folder; the other rank printed nothing of its own.
    assert.ok(existsSync(path.join(dir, 'two', 'all_results.json')));
    assert.equal(two.stdout.split('\n').filter((l) => l.includes('"event":"end"')).length, 1);
  } finally {
    cleanup();
  }
});

test('2 processes with dropout: a resumed run ends with the uninterrupted run\'s weights, bit for bit (rng_state_<rank>)', { skip: NO_GLOO }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const base = [...await fixture(dir, 0.1), '--epochs', '2', '--save-steps', '4', '--batch-size', '4', '--nproc-per-node', '2'];
    const full = await run(process.execPath, [TRAIN, ...base, '--output-dir', path.join(dir, 'a')]);
    assert.equal(full.code, 0, full.stderr);
    const ck = path.join(dir, 'a', 'checkpoint-4');
    assert.deepEqual((await fs.readdir(ck)).filter((f) => f.startsWith('rng_state')).sort(), ['rng_state_0.safetensors', 'rng_state_1.safetensors']);
    await fs.mkdir(path.join(dir, 'b'));
    await fs.cp(ck, path.join(dir, 'b', 'checkpoint-4'), { recursive: true });
    const resumed = await run(process.execPath, [TRAIN, ...base, '--output-dir', path.join(dir, 'b'), '--resume-from-checkpoint', 'latest']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.ok((await fs.readFile(path.join(dir, 'a', 'model.safetensors'))).equals(await fs.readFile(path.join(dir, 'b', 'model.safetensors'))));
  } finally {
    cleanup();
  }
});

test('the workers start under torchrun --no-python (its agent hosts the store) and train as under --nproc-per-node', { skip: NO_GLOO }, async (t) => {
  const python = pythonForTests();
  try {
    execFileSync(python, ['-c', 'import torch.distributed.run'], { stdio: 'ignore' });
  } catch {
    t.skip('no torch in the test Python environment');
    return;
  }
  const { dir, cleanup } = tempDir();
  try {
    const base = [...await fixture(dir), '--max-steps', '4', '--save-strategy', 'no', '--batch-size', '4'];
    const ours = await run(process.execPath, [TRAIN, ...base, '--nproc-per-node', '2', '--output-dir', path.join(dir, 'ours')]);
    assert.equal(ours.code, 0, ours.stderr);
    const tr = await run(python, ['-m', 'torch.distributed.run', '--standalone', '--nproc-per-node', '2', '--no-python', process.execPath, TRAIN, ...base, '--output-dir', path.join(dir, 'torchrun')]);
    assert.equal(tr.code, 0, tr.stderr);
    assert.ok((await fs.readFile(path.join(dir, 'ours', 'model.safetensors'))).equals(await fs.readFile(path.join(dir, 'torchrun', 'model.safetensors'))));
  } finally {
    cleanup();
  }
});

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const childrenOf = (pid: number) => execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }).split('\n').map((s) => Number(s.trim())).filter(Boolean);

test('a worker killed mid-run: the launcher names it, stops the other and exits non-zero within the timeout; no process is left', { skip: NO_GLOO }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = [TRAIN, ...await fixture(dir), '--epochs', '500', '--save-strategy', 'no', '--eval-strategy', 'no', '--batch-size', '4',
      '--nproc-per-node', '2', '--ddp-timeout', '20', '--logging-steps', '1', '--output-dir', path.join(dir, 'out')];
    const launcher = spawn(process.execPath, args, { env: cleanEnv() });
    let stderr = '';
    launcher.stderr.on('data', (d) => { stderr += d; });
    const exited = new Promise<number | null>((resolve) => launcher.once('exit', (c) => resolve(c)));
    await new Promise<void>((resolve) => launcher.stdout.on('data', (d) => { if (String(d).includes('"loss"')) resolve(); }));
    const workers = childrenOf(launcher.pid!);
    assert.equal(workers.length, 2);
    const t0 = performance.now();
    process.kill(workers[1], 'SIGKILL');
    const code = await exited;
    const seconds = (performance.now() - t0) / 1000;
    assert.notEqual(code, 0);
    assert.ok(seconds < 20, `the launcher took ${seconds} s`);
    assert.match(stderr, /worker rank 1 \(pid \d+\) was killed by SIGKILL; stopping the other 1 worker/);
    for (const w of workers) assert.ok(!alive(w), `worker ${w} is still running`);
  } finally {
    cleanup();
  }
});

test('a bad distributed environment: one line naming the variable, exit 2', { skip: NO_GLOO }, async () => {
  const { dir, cleanup } = tempDir();
  try {
    const args = [TRAIN, ...await fixture(dir), '--max-steps', '1', '--output-dir', path.join(dir, 'out'), '--ddp-timeout', '10'];
    const env = (vars: Record<string, string>) => ({ ...cleanEnv(), ...vars });
    const noPort = await run(process.execPath, args, env({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: '127.0.0.1' }));
    assert.equal(noPort.code, 2);
    assert.match(noPort.stderr, /MASTER_PORT is not set/);
    const badRank = await run(process.execPath, args, env({ WORLD_SIZE: '2', RANK: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' }));
    assert.equal(badRank.code, 2);
    assert.match(badRank.stderr, /RANK 2 is not below WORLD_SIZE 2/);
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const busy = await run(process.execPath, args, env({ WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }));
      assert.equal(busy.code, 2, busy.stderr);
      assert.match(busy.stderr, new RegExp(`MASTER_PORT ${port} on 127.0.0.1 is in use`));
      assert.equal(busy.stderr.trim().split('\n').length, 1, busy.stderr);
    } finally {
      server.close();
    }
    const flag = await run(process.execPath, [...args, '--nproc-per-node', '0']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--nproc-per-node must be an integer/);
  } finally {
    cleanup();
  }
});

test('shards as accelerate does: batch i to rank i % world, the last round and a short batch completed from the start', () => {
  const order = Int32Array.from({ length: 11 }, (_, i) => 10 - i);  // 10, 9, ..., 0
  const all = batches(order, 2);  // 6 batches, the last [0]
  const r0 = shardBatches(all, order, 2, 0, 4).map((b) => [...b]);
  const r3 = shardBatches(all, order, 2, 3, 4).map((b) => [...b]);
  assert.deepEqual(r0, [[10, 9], [2, 1]]);
  assert.deepEqual(r3, [[4, 3], [8, 7]]);  // round 2 wraps to batch 1
  assert.deepEqual(shardBatches(all, order, 2, 1, 4).map((b) => [...b]), [[8, 7], [0, 10]]);  // the short batch, filled
  assert.equal(shardBatches(all, order, 2, 0, 1), all);
  assert.throws(() => torchrunEnv({ WORLD_SIZE: 'two' }), UsageError);
  assert.deepEqual(torchrunEnv({ WORLD_SIZE: '4', RANK: '3', MASTER_ADDR: 'h', MASTER_PORT: '1' }),
    { rank: 3, worldSize: 4, localRank: 3, localWorldSize: 4, masterAddr: 'h', masterPort: 1, agentStore: false, storePrefix: '' });
  assert.equal(torchrunEnv({}), null);
});
