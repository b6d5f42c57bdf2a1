// Issue 25's hostile-user findings (the third round), each reproduced and each failing before its fix: predict on a
// one-class file, the rendezvous store's address, configs too large for memory, signals that fit the command, an
// unusable --master-addr, resuming with another number of processes, damaged prebuilds (prebuild.test.ts), a stale
// "Gloo not found", messages, the dashboard's Host check, a full disk, Hub tokens in relayed errors.
// (The bf16 finding on CPUs without AVX-512 is in trainer.test.ts, the dropout test's size in parity.test.ts.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { makeHfHome, makePairs, makeTinyModel } from './fixtures.js';
import { root, tempDir } from './helpers.js';
import { BertForSequenceClassification, BertTokenizer, Dashboard, loadGlue, tokenizeDataset, Trainer } from '../src/index.js';
import { parameterCount, parseConfig } from '../src/config.js';
import { addon } from '../src/native.js';
import { maskToken } from '../src/hub.js';
import { pushFolder } from '../src/push.js';

let home: string, work: { dir: string; cleanup: () => void }, trained: string;
const env = (extra: Record<string, string> = {}) => ({ ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1', ...extra });
const BASE = ['--model', 'tiny/bert', '--threads', '1', '--device', 'cpu', '--learning-rate', '1e-3'];
const NO_GLOO = !addon().runtime().distributedBackends.includes('gloo') && 'this addon was built without Gloo (apt-get install libgloo-dev && npm run rebuild)';
type Result = { code: number; stdout: string; stderr: string; ms: number };
function cli(args: string[], extra: Record<string, string> = {}): Promise<Result> {
  const t0 = performance.now();
  return new Promise((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: env(extra), maxBuffer: 1 << 26 },
    (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr, ms: performance.now() - t0 })));
}
/** A child's exit, with its stderr, and how long after `since` it came. */
function exited(child: ChildProcess, since = () => performance.now()): Promise<{ code: number | null; signal: string | null; stderr: string; afterMs: number }> {
  let stderr = '';
  child.stderr?.on('data', (d) => { stderr += d; });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr, afterMs: performance.now() - since() })));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Processes whose command line holds `marker` (Linux /proc), so a test can see that none was left behind. */
async function processesWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(marker) && Number(p) !== process.pid) pids.push(Number(p));
  }
  return pids;
}
async function freePort(): Promise<number> {
  return new Promise((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address() as net.AddressInfo; s.close(() => resolve(port)); }); });
}

before(async () => {
  work = tempDir('hostile3-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
  process.env.HF_HOME = home;  // the in-process tests load tiny/bert and MRPC from it too
  process.env.HF_HUB_OFFLINE = '1';
  trained = path.join(work.dir, 'trained');
  const r = await cli([...BASE, '--max-steps', '4', '--output-dir', trained, '--save-strategy', 'no', '--eval-strategy', 'no']);
  assert.equal(r.code, 0, r.stderr);
});
after(() => work.cleanup());

test('predict --file reads no labels: a file whose label column has a single class (or unknown names) is predicted', async () => {
  const rows = makePairs(6, 3);
  const file = path.join(work.dir, 'one-class.csv');
  writeFileSync(file, 'sentence1,sentence2,label\n' + rows.sentence1.map((s, i) => `${s},${rows.sentence2[i]},spam`).join('\n') + '\n');
  const r = await cli(['predict', '--model', trained, '--file', file, '--device', 'cpu', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split('\n').length, 6);
  const out = path.join(work.dir, 'pred-out');
  const w = await cli(['predict', '--model', trained, '--file', file, '--device', 'cpu', '--output-dir', out]);
  assert.equal(w.code, 0, w.stderr);
  assert.match(readFileSync(path.join(out, 'predict_results_None.txt'), 'utf8'), /^index\tprediction\n0\t/);
  // Training a new head from such a file is still refused: two classes are needed there.
  const t = await cli([...BASE, '--train-file', file, '--validation-file', file, '--output-dir', path.join(work.dir, 'one-class-train'), '--max-steps', '1']);
  assert.equal(t.code, 2);
  assert.match(t.stderr, /one-class.csv: column "label" has a single label \("spam"\) in all 6 rows: a classifier needs at least 2 classes/);
});

test('a config too large for memory is refused from config.json in one line, before anything is allocated', async () => {
  const cases = [
    { num_hidden_layers: 1000, intermediate_size: 1048576 },  // each within its range; 1.6e12 parameters together
    { vocab_size: 10_000_000, hidden_size: 65536, num_attention_heads: 64 },
  ];
  for (const [i, extra] of cases.entries()) {
    const dir = await makeTinyModel(path.join(work.dir, `huge-${i}`));
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, ...extra }));
    const r = await cli(['evaluate', '--model', dir, '--device', 'cpu']);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /config\.json: this configuration makes a model of [\d.]+e\+\d+ parameters .*: its fp32 weights alone need [\d.]+ GB, and this machine has [\d.]+ GB of memory available$/);
    assert.ok(r.ms < 30_000, `took ${r.ms} ms`);
  }
  // The count is the addon's own (what it allocates), for a head with 3 labels.
  const c = parseConfig({ vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 24, num_labels: 3 }, 'x');
  const m = await BertForSequenceClassification.fromConfig(c, { device: 'cpu' });
  assert.equal(parameterCount(c), m.numParameters);
  await m.dispose();
});

test('signals fit the command: evaluate and a rendezvous stop at once without checkpoint talk; the launcher leaves no worker', { skip: NO_GLOO }, async () => {
  // A worker waiting at the rendezvous for a rank that never comes: SIGTERM ends it at once (it used to wait for
  // the native call, up to --ddp-timeout).
  const port = await freePort();
  const marker = `hostile3-rdzv-${port}`;
  const w = spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--output-dir', path.join(work.dir, marker)],
    { env: env({ MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RANK: '0', WORLD_SIZE: '2' }) });
  const wDone = exited(w);
  await sleep(3000);
  assert.equal(w.exitCode, null, 'the worker should still be waiting for its peer');
  let sent = performance.now();
  w.kill('SIGTERM');
  const ws = await wDone;
  assert.equal(ws.code, 130, ws.stderr);
  assert.ok(performance.now() - sent < 5000, `exited ${performance.now() - sent} ms after SIGTERM`);
  assert.match(ws.stderr, /Interrupted \(SIGTERM\): stopping before training started \(nothing to save\)/);
  assert.doesNotMatch(ws.stderr, /checkpoint/);

  // The launcher of a 2-node job whose other node never comes: SIGTERM stops both workers at once; SIGKILL of the
  // launcher leaves no worker behind.
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const p = await freePort();
    const m = `hostile3-launch-${signal}-${p}`;
    const l = spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--output-dir', path.join(work.dir, m), '--nproc-per-node', '2', '--nnodes', '2', '--master-port', String(p)], { env: env() });
    const done = exited(l);
    await sleep(4000);
    assert.equal((await processesWith(m)).length, 3, 'a launcher and two workers');
    sent = performance.now();
    l.kill(signal);
    const ls = await done;
    let left = await processesWith(m);
    for (let i = 0; i < 50 && left.length; i++) { await sleep(100); left = await processesWith(m); }
    for (const pid of left) process.kill(pid, 'SIGKILL');
    assert.deepEqual(left, [], `${signal}: workers outlived the launcher`);
    if (signal === 'SIGTERM') {
      assert.equal(ls.code, 130, ls.stderr);
      assert.ok(performance.now() - sent < 5000);
      assert.doesNotMatch(ls.stderr, /saving a checkpoint/);
    }
  }

  // evaluate, interrupted while it works: no checkpoint to save, so it says so and stops now.
  const big = path.join(work.dir, 'big.csv');
  const rows = makePairs(200, 9);
  writeFileSync(big, 'sentence1,sentence2,label\n' + Array.from({ length: 300 }, () => rows.sentence1.map((s, i) => `${s},${rows.sentence2[i]},${rows.label[i]}`).join('\n')).join('\n') + '\n');
  const e = spawn(process.execPath, [path.join(root, 'train.js'), 'evaluate', '--model', trained, '--validation-file', big, '--device', 'cpu', '--threads', '1'], { env: env() });
  const eDone = exited(e);
  await sleep(1500);
  sent = performance.now();
  e.kill('SIGTERM');
  const es = await eDone;
  assert.equal(es.code, 130, `evaluate of 60,000 rows finished before the signal, or ignored it: ${es.stderr}`);
  assert.ok(performance.now() - sent < 5000);
  assert.match(es.stderr, /^Interrupted \(SIGTERM\): stopping$/m);
  assert.doesNotMatch(es.stderr, /checkpoint/);
});

test('the rendezvous store listens on MASTER_ADDR only (127.0.0.1 for one machine), never on every interface', { skip: NO_GLOO }, async () => {
  const port = await freePort();
  const l = spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--output-dir', path.join(work.dir, 'bind'), '--nproc-per-node', '2',
    '--nnodes', '2', '--master-port', String(port)], { env: env() });
  const done = exited(l);
  try {
    // Listening sockets on the port, from /proc/net/tcp{,6}: local address in hex, state 0A = LISTEN.
    let listening: string[] = [];
    for (let i = 0; i < 100 && !listening.length; i++) {
      await sleep(100);
      for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        for (const line of (await fs.readFile(f, 'utf8').catch(() => '')).split('\n').slice(1)) {
          const [, local, , state] = line.trim().split(/\s+/);
          if (state === '0A' && local && parseInt(local.split(':')[1], 16) === port) listening.push(local.split(':')[0]);
        }
      }
    }
    assert.ok(listening.length > 0, 'rank 0 never listened');
    assert.deepEqual(listening, ['0100007F'], `the store listens on ${listening.join(', ')} (0100007F is 127.0.0.1; zeros are every interface)`);
  } finally {
    l.kill('SIGTERM');
    await done;
  }
});

test('--master-addr and MASTER_ADDR: a port, a bad name or an unresolvable host fails in one line at once; --nproc-per-node is bounded', async () => {
  for (const [addr, message] of [['127.0.0.1:5', /--master-addr "127.0.0.1:5" has a port: give the host alone \(127.0.0.1\) and the port as --master-port/],
    ['no such host', /--master-addr must be a host name or an IP address, got "no such host"/],
    ['nonexistent-host.invalid', /--master-addr "nonexistent-host.invalid" does not resolve to an address/]] as const) {
    const r = await cli([...BASE, '--output-dir', path.join(work.dir, 'addr'), '--nproc-per-node', '2', '--master-addr', addr]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.ms < 20_000);
  }
  const w = await cli([...BASE, '--output-dir', path.join(work.dir, 'addr-env')], { MASTER_ADDR: '127.0.0.1:5', MASTER_PORT: '29555', RANK: '0', WORLD_SIZE: '2' });
  assert.equal(w.code, 2, w.stderr);
  assert.match(w.stderr, /MASTER_ADDR "127.0.0.1:5" has a port/);
  const n = await cli([...BASE, '--output-dir', path.join(work.dir, 'nproc'), '--nproc-per-node', '9007199254740991']);
  assert.equal(n.code, 2);
  assert.match(n.stderr, /--nproc-per-node must be an integer in \[1, 1024\], got 9007199254740991/);
});

test('resuming with another number of processes is refused, naming both (steps would not line up with epochs)', { skip: NO_GLOO }, async () => {
  const out = path.join(work.dir, 'world');
  const a = await cli([...BASE, '--epochs', '1', '--output-dir', out, '--save-strategy', 'epoch', '--eval-strategy', 'no']);
  assert.equal(a.code, 0, a.stderr);
  const ckpt = (await fs.readdir(out)).find((d) => d.startsWith('checkpoint-'))!;
  assert.equal(JSON.parse(readFileSync(path.join(out, ckpt, 'training_args.json'), 'utf8')).worldSize, 1);
  const r = await cli([...BASE, '--epochs', '3', '--output-dir', out, '--eval-strategy', 'no', '--resume-from-checkpoint', path.join(out, ckpt), '--nproc-per-node', '2']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`${ckpt} was saved by a run of 1 process \\(8 rows a step\\); this run has 2 \\(16 rows a step\\).*Resume with one process`));
  assert.doesNotMatch(r.stdout, /Epoch/);
});

test('a worker that dies: the others stop without promising a checkpoint they cannot save', { skip: NO_GLOO }, async () => {
  const port = await freePort();
  const marker = `hostile3-die-${port}`;
  const l = spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--epochs', '500', '--save-steps', '3', '--eval-strategy', 'no',
    '--output-dir', path.join(work.dir, marker), '--nproc-per-node', '2', '--master-port', String(port)], { env: env() });
  const done = exited(l);
  await sleep(5000);
  const pids = (await processesWith(marker)).filter((p) => p !== l.pid);
  assert.equal(pids.length, 2);
  process.kill(Math.max(...pids), 'SIGKILL');  // the later-started worker: rank 1
  const r = await done;
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /worker rank \d \(pid \d+\) was killed by SIGKILL/);
  assert.doesNotMatch(r.stderr, /saving a checkpoint/);
  assert.match(r.stderr, /rank 0: (worker rank 1 failed; stopping without a checkpoint|a collective failed)/);
  assert.doesNotMatch(r.stderr, /GLHF|Read error|\.cpp:\d+/);
  assert.deepEqual(await processesWith(marker), []);
});

test('messages: a --logging-dir that is a file, an unknown BERT_TRAINER_VARIANT, 200,000 labels, a multi-label model in evaluate', async () => {
  const file = path.join(work.dir, 'not-a-dir');
  writeFileSync(file, 'x');
  const r = await cli([...BASE, '--output-dir', path.join(work.dir, 'ld'), '--logging-dir', file, '--report-to', 'tensorboard']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--logging-dir .*not-a-dir: is a file, not a folder/);
  assert.doesNotMatch(r.stderr, /initialized/, 'refused before the model loads');
  const r2 = await cli([...BASE, '--output-dir', path.join(work.dir, 'ld2'), '--logging-dir', path.join(file, 'runs')]);
  assert.equal(r2.code, 2, r2.stderr);
  assert.match(r2.stderr, /not-a-dir is a file, not a folder/);

  const v = await cli(['predict', '--model', trained, '--sentence1', 'a cat .'], { BERT_TRAINER_VARIANT: 'gpu' });
  assert.equal(v.code, 2, v.stderr);
  assert.match(v.stderr, /BERT_TRAINER_VARIANT must be cpu or cuda .* got "gpu"/);

  const id2label = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [String(i), `L${i}`]));
  assert.throws(() => parseConfig({ id2label }, 'big/config.json'), /big\/config.json: the number of labels must be an integer in \[1, 100000\], got 200000/);

  const multi = await makeTinyModel(path.join(work.dir, 'multi'));
  const m = await BertForSequenceClassification.fromPretrained(multi, { device: 'cpu', labels: ['a', 'b'], problemType: 'multi_label_classification' });
  await m.save(multi);
  await m.dispose();
  const e = await cli(['evaluate', '--model', multi, '--device', 'cpu']);
  assert.equal(e.code, 2, e.stderr);
  assert.match(e.stderr, /multi\/config.json: problem_type "multi_label_classification": evaluate reads one class per row/);
  const p = await cli(['predict', '--model', multi, '--sentence1', 'a cat .', '--device', 'cpu', '--json']);
  assert.equal(p.code, 0, p.stderr);
  const out = JSON.parse(p.stdout);
  assert.ok(out.probabilities.every((x: number) => x > 0 && x < 1) && Math.abs(out.probabilities[0] + out.probabilities[1] - 1) > 1e-6, 'sigmoid scores, not a softmax');
});

test('npm run rebuild configures anew, and a build whose cache says "Gloo not found" does once the headers are there', async () => {
  const { needsReconfigure } = await import(path.join(root, 'scripts', 'cmake-cache.js'));
  const scripts = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).scripts;
  assert.match(scripts.rebuild, /build-addon\.js --reconfigure/);
  const stale = 'CMAKE_BUILD_TYPE:STRING=Release\nGLOO_INCLUDE_DIR:PATH=GLOO_INCLUDE_DIR-NOTFOUND\n';
  assert.equal(needsReconfigure(stale, { glooPresent: true }), true);
  assert.equal(needsReconfigure(stale, { glooPresent: false }), false);
  assert.equal(needsReconfigure('GLOO_INCLUDE_DIR:PATH=/usr/include\n', { glooPresent: true }), false);
  assert.equal(needsReconfigure('GLOO_INCLUDE_DIR:PATH=/usr/include\n', { requested: true }), true);
  assert.equal(needsReconfigure(undefined, { requested: true }), false, 'a new build folder is configured by cmake-js anyway');
});

test('the dashboard answers only Host headers that name this machine (DNS rebinding), and warns when bound beyond loopback', async () => {
  const d = new Dashboard();
  const url = new URL(await d.listen(0, '127.0.0.1'));
  const get = (host: string) => new Promise<number>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: url.port, path: '/', headers: { host } }, (res) => { res.resume(); resolve(res.statusCode!); }).on('error', reject);
  });
  try {
    assert.equal(await get(`127.0.0.1:${url.port}`), 200);
    assert.equal(await get(`localhost:${url.port}`), 200);
    assert.equal(await get(`[::1]:${url.port}`), 200);
    assert.equal(await get(`attacker.example:${url.port}`), 403);
    assert.equal(await get('rebind.attacker.example'), 403);
  } finally {
    await d.close();
  }
  const r = await cli([...BASE, '--max-steps', '1', '--save-strategy', 'no', '--eval-strategy', 'no', '--output-dir', path.join(work.dir, 'dash'), '--dashboard', '0', '--dashboard-host', '0.0.0.0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: --dashboard-host 0\.0\.0\.0: the dashboard .* can be read by anyone who can reach this machine/);
});

test('a checkpoint whose write fails (a full disk) leaves no temporary folder behind', async () => {
  const tok = await BertTokenizer.fromPretrained('tiny/bert');
  const train = await tokenizeDataset(await loadGlue('mrpc', 'train'), tok);
  const model = await BertForSequenceClassification.fromPretrained('tiny/bert', { device: 'cpu', threads: 1, labels: train.labelNames });
  const out = path.join(work.dir, 'full-disk');
  // The tokenizer's save is the second write of a checkpoint; it fails as a full disk fails.
  const full = Object.create(tok, { save: { value: async () => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); } } });
  try {
    const trainer = new Trainer({ model, tokenizer: full, trainDataset: train, args: { outputDir: out, maxSteps: 2, saveSteps: 1, evalStrategy: 'no', loggingSteps: 1 } });
    await assert.rejects(trainer.train(), /ENOSPC/);
    const left = existsSync(out) ? await fs.readdir(out) : [];
    assert.deepEqual(left.filter((n) => n.includes('.tmp-')), [], `left behind: ${left.join(', ')}`);
  } finally {
    await model.dispose();
  }
});

test('a Hub error that echoes the Authorization header never shows the token', async () => {
  const token = 'hf_secretTOKEN1234567890';
  const server = http.createServer((req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `internal error; request had authorization: ${req.headers.authorization}` }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const endpoint = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  try {
    const folder = await makeTinyModel(path.join(work.dir, 'push-src'));
    const e = await pushFolder(folder, 'me/repo', 'msg', { token, endpoint } as never).then(() => null, (x: Error) => x);
    assert.ok(e, 'the push must fail');
    assert.ok(!e.message.includes(token), e.message);
    assert.match(e.message, /<HUB_TOKEN>|failed/);
    // Local model and data: only the upload talks to the (echoing) server.
    const rows = makePairs(16, 4);
    const data = path.join(work.dir, 'push.csv');
    writeFileSync(data, 'sentence1,sentence2,label\n' + rows.sentence1.map((s, i) => `${s},${rows.sentence2[i]},${rows.label[i]}`).join('\n') + '\n');
    const r = await cli(['--model', trained, '--threads', '1', '--device', 'cpu', '--train-file', data, '--max-steps', '1', '--save-strategy', 'no', '--eval-strategy', 'no',
      '--output-dir', path.join(work.dir, 'push-run'), '--push-to-hub', '--hub-model-id', 'me/repo', '--hub-token', token], { HF_HUB_OFFLINE: '0', HF_ENDPOINT: endpoint });
    assert.equal(r.code, 1, r.stderr);
    assert.ok(!(r.stdout + r.stderr).includes(token), r.stderr);
    assert.match(r.stderr, /push to .* failed/);
  } finally {
    server.close();
  }
  assert.equal(maskToken(`Bearer ${token}`, token), 'Bearer <HUB_TOKEN>');
});
