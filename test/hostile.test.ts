// Issue 17's hostile-user findings, each reproduced: labels read through the model, --task on files, tokenizer
// vs config, resume edge cases, concurrent train(), partial accumulation, signals, output-dir lock and checks,
// the final save as a unit, a closed stdout. Each test failed before its fix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome, makePairs, makeTinyModel } from './fixtures.js';
import { pythonForTests, root, tempDir } from './helpers.js';
import { BertForSequenceClassification, BertTokenizer, loadDataFile, loadGlue, tokenizeDataset, Trainer } from '../src/index.js';
import { parseConfig } from '../src/config.js';
import { addon } from '../src/native.js';

let home: string, work: { dir: string; cleanup: () => void }, trained: string;
const env = () => ({ ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' });
const BASE = ['--model', 'tiny/bert', '--threads', '1', '--device', 'cpu', '--learning-rate', '1e-3'];
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: env(), maxBuffer: 1 << 26 },
    (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })));
}
function csv(file: string, rows: { sentence1: string[]; sentence2: string[]; label: Array<string | number> }) {
  writeFileSync(file, 'sentence1,sentence2,label\n' + rows.sentence1.map((s, i) => `${s},${rows.sentence2[i]},${rows.label[i]}`).join('\n') + '\n');
  return file;
}

before(async () => {
  work = tempDir('hostile-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
  trained = path.join(work.dir, 'trained');
  const r = await cli([...BASE, '--epochs', '2', '--output-dir', trained, '--save-strategy', 'no', '--eval-strategy', 'no']);
  assert.equal(r.code, 0, r.stderr);
});
after(() => work.cleanup());

test('evaluate --validation-file reads string labels through the model\'s label2id, and refuses labels it does not know', async () => {
  const rows = makePairs(40, 2);
  const names = ['not_equivalent', 'equivalent'];
  const byId = csv(path.join(work.dir, 'val-ids.csv'), rows);
  const byName = csv(path.join(work.dir, 'val-names.csv'), { ...rows, label: rows.label.map((l) => names[l]) });
  const a = await cli(['evaluate', '--model', trained, '--validation-file', byId, '--json', '--device', 'cpu']);
  const b = await cli(['evaluate', '--model', trained, '--validation-file', byName, '--json', '--device', 'cpu']);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const [ma, mb] = [JSON.parse(a.stdout), JSON.parse(b.stdout)];
  assert.equal(mb.eval_accuracy, ma.eval_accuracy, 'names and ids of the same labels must score the same');
  assert.notEqual(ma.eval_accuracy, 0.5);
  const unknown = csv(path.join(work.dir, 'val-unknown.csv'), { ...rows, label: rows.label.map((l) => (l ? 'yes' : 'no')) });
  const c = await cli(['evaluate', '--model', trained, '--validation-file', unknown, '--device', 'cpu']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /val-unknown.csv: row 2: label "(yes|no)" is not one of the 2 classes \(0=not_equivalent, 1=equivalent\)/);
});

test('file labels: numbers map by name (1/2 is two classes), floats are regression, "0" and "0.0" are one class, one label or a doubled column is refused', async () => {
  const jl = (name: string, labels: unknown[]) => {
    const f = path.join(work.dir, name);
    writeFileSync(f, labels.map((l, i) => JSON.stringify({ sentence1: `a cat ${i} .`, sentence2: 'a dog .', label: l })).join('\n') + '\n');
    return f;
  };
  const train = await loadDataFile(jl('t12.jsonl', [1, 2, 2, 1]));
  assert.deepEqual(train.labelNames, ['1', '2']);
  const val = await loadDataFile(jl('v12.jsonl', [2, 1]), { labelNames: train.labelNames });
  assert.deepEqual(Array.from(val.labels!), [1, 0]);
  await assert.rejects(loadDataFile(jl('v0.jsonl', [0, 1]), { labelNames: train.labelNames }), /label 0 is not one of the 2 classes/);
  const reg = await loadDataFile(jl('reg.jsonl', [0.5, 3.25, 5, 1]));
  assert.equal(reg.isRegression, true);
  assert.ok(reg.labels instanceof Float32Array);
  assert.deepEqual((await loadDataFile(jl('zeros.jsonl', ['0', '0.0', '1', 1]))).labelNames, ['0', '1']);
  await assert.rejects(loadDataFile(jl('one.jsonl', ['x', 'x', 'x']), { requireLabels: true }), /has a single label \("x"\) in all 3 rows/);
  // A giant row is refused by its size while streaming (a 200 MB line used to abort V8).
  const big = path.join(work.dir, 'big.jsonl');
  writeFileSync(big, JSON.stringify({ sentence1: 'a', sentence2: 'b', label: 0 }) + '\n' + JSON.stringify({ sentence1: 'x'.repeat(3 << 20), sentence2: 'b', label: 1 }) + '\n');
  await assert.rejects(loadDataFile(big), /big.jsonl: line 2: row larger than 1048576 bytes/);
  const dup = path.join(work.dir, 'dup.csv');
  writeFileSync(dup, 'sentence1,sentence2,label,label\na,b,0,1\nc,d,1,0\n');
  await assert.rejects(loadDataFile(dup), /dup.csv: line 1: column "label" appears twice/);
});

test('--task with --train-file sets the label names (in the task\'s order); float scores without --task train a regression model', async () => {
  const rows = makePairs(24, 5);
  const train = csv(path.join(work.dir, 'train-names.csv'), { ...rows, label: rows.label.map((l) => (l ? 'equivalent' : 'not_equivalent')) });
  const out = path.join(work.dir, 'task-file');
  const r = await cli([...BASE, '--task', 'mrpc', '--train-file', train, '--epochs', '1', '--output-dir', out, '--save-strategy', 'no']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')).id2label, { 0: 'not_equivalent', 1: 'equivalent' });
  const scores = csv(path.join(work.dir, 'train-scores.csv'), { ...rows, label: rows.label.map((l, i) => (l * 4 + (i % 3) * 0.25).toFixed(2)) });
  const out2 = path.join(work.dir, 'scores');
  const s = await cli([...BASE, '--train-file', scores, '--epochs', '1', '--output-dir', out2, '--save-strategy', 'no']);
  assert.equal(s.code, 0, s.stderr);
  assert.equal(JSON.parse(readFileSync(path.join(out2, 'config.json'), 'utf8')).problem_type, 'regression');
});

test('a tokenizer with ids beyond the model\'s vocab_size is refused when the Trainer is made, naming the tokenizer', async () => {
  const dir = await makeTinyModel(path.join(work.dir, 'small-vocab'));
  const tok = await BertTokenizer.fromPretrained(dir);
  const model = await BertForSequenceClassification.fromConfig(parseConfig({ ...JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')), vocab_size: 10 }, 'c'), { device: 'cpu' });
  try {
    assert.throws(() => new Trainer({ model, tokenizer: tok }), /tokenizer.json: the tokenizer produces ids up to \d+, but the model's config.json has vocab_size 10/);
  } finally {
    await model.dispose();
  }
});

test('train() called again while it runs is refused at once; a partial accumulation step averages over its own batches', async () => {
  const tok = await BertTokenizer.fromPretrained(path.join(home, 'hub', 'models--tiny--bert', 'snapshots', (await fs.readdir(path.join(home, 'hub', 'models--tiny--bert', 'snapshots')))[0]));
  const ds = await tokenizeDataset(await loadGlue('mrpc', 'train', { cacheDir: path.join(home, 'hub'), offline: true }), tok);
  const model = await BertForSequenceClassification.fromPretrained(trained, { device: 'cpu', threads: 1 });
  try {
    // 96 rows, batch 8 = 12 batches, one optimizer step of 12 batches out of 1000: the logged loss is their mean.
    const t = new Trainer({ model, tokenizer: tok, trainDataset: ds, args: { outputDir: path.join(work.dir, 'lib'), gradientAccumulationSteps: 1000, numTrainEpochs: 1, saveStrategy: 'no', evalStrategy: 'no', loggingSteps: 1 } });
    const first = t.train();
    await assert.rejects(t.train(), /already running/);
    const r = await first;
    assert.equal(r.globalStep, 1);
    assert.ok(r.trainingLoss > 0.2, `training loss ${r.trainingLoss}: divided by 1000 instead of 12 batches`);
    const samples = r.metrics.train_samples_per_second * r.metrics.train_runtime;
    assert.ok(Math.abs(samples - 96) < 2, `samples counted ${samples}, 96 rows were trained`);
  } finally {
    await model.dispose();
  }
});

test('resume: scheduler.json must match, changed arguments warn, a checkpoint at the last step warns and saves', async () => {
  const out = path.join(work.dir, 'resume');
  const args = [...BASE, '--output-dir', out, '--max-steps', '6', '--save-steps', '3', '--eval-strategy', 'no'];
  assert.equal((await cli(args)).code, 0);
  const cp = path.join(out, 'checkpoint-3');
  const changed = await cli([...args, '--batch-size', '4', '--resume-from-checkpoint', cp]);
  assert.equal(changed.code, 0, changed.stderr);
  assert.match(changed.stderr, /warning: resuming from .*checkpoint-3 with changed arguments: perDeviceTrainBatchSize 8 -> 4/);
  const done = await cli([...args, '--resume-from-checkpoint', path.join(out, 'checkpoint-6')]);
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stderr, /is at step 6 and this run ends at step 6: nothing is left to train/);
  writeFileSync(path.join(cp, 'scheduler.json'), JSON.stringify({ last_epoch: 5, type: 'linear' }));
  const bad = await cli([...args, '--resume-from-checkpoint', cp]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /scheduler.json: last_epoch 5 does not match trainer_state.json's global_step 3/);
  const missing = await cli([...args, '--resume-from-checkpoint', path.join(out, 'checkpoint-99')]);
  assert.match(missing.stderr, /checkpoint-99: does not exist/);
});

function spawnTrain(out: string, extra: string[] = []) {
  return spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--epochs', '200', '--output-dir', out, '--eval-strategy', 'no', '--save-strategy', 'no', ...extra], { env: env() });
}

test('SIGTERM and SIGHUP stop like Ctrl-C with a checkpoint; a second signal at the same moment is the same request', async () => {
  for (const sigs of [['SIGTERM'], ['SIGHUP'], ['SIGINT', 'SIGTERM']] as NodeJS.Signals[][]) {
    const out = path.join(work.dir, `sig-${sigs.join('-')}`);
    const child = spawnTrain(out);
    let stdout = '';
    const code: number = await new Promise((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('progress') && !child.killed) for (const s of sigs) child.kill(s);
      });
      child.stderr.resume();
      child.on('exit', (c) => resolve(c ?? -1));
    });
    assert.equal(code, 130, `${sigs}: ${stdout}`);
    assert.equal((await fs.readdir(out)).filter((n) => /^checkpoint-\d+$/.test(n)).length, 1, `${sigs}: no checkpoint`);
  }
});

test('one run per output dir: a live holder is named; a dead one\'s lock and leftovers are cleaned; an unusable dir fails before training', async () => {
  const out = path.join(work.dir, 'locked');
  await fs.mkdir(out, { recursive: true });
  writeFileSync(path.join(out, '.trainer.lock'), JSON.stringify({ pid: process.pid, started: 'now' }));
  const r = await cli([...BASE, '--max-steps', '2', '--output-dir', out]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`in use by another training run \\(pid ${process.pid}`));
  // A dead process (pid beyond pid_max) left its lock and a half-written checkpoint.
  writeFileSync(path.join(out, '.trainer.lock'), JSON.stringify({ pid: 2 ** 30, started: 'then' }));
  await fs.mkdir(path.join(out, `checkpoint-1.tmp-${2 ** 30}`));
  const ok = await cli([...BASE, '--max-steps', '2', '--output-dir', out, '--eval-strategy', 'no']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(!existsSync(path.join(out, `checkpoint-1.tmp-${2 ** 30}`)) && !existsSync(path.join(out, '.trainer.lock')));
  const file = path.join(work.dir, 'a-file');
  writeFileSync(file, 'x');
  for (const bad of [file, path.join(file, 'sub')]) {
    const t0 = performance.now();
    const f = await cli([...BASE, '--epochs', '50', '--output-dir', bad]);
    assert.equal(f.code, 2, f.stderr);
    assert.match(f.stderr, /not a folder|ENOTDIR|EEXIST/);
    assert.ok(!f.stdout.includes('progress') && performance.now() - t0 < 20000);
  }
});

test('the final save is one unit: a folder left mid-save is refused; a closed stdout never stops training', async () => {
  const out = path.join(work.dir, 'pipe');
  const child = spawnTrain(out, ['--max-steps', '30', '--logging-steps', '1']);
  child.stdout.once('data', () => child.stdout.destroy());  // as `| head -1` does
  child.stderr.resume();
  const code: number = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
  assert.equal(code, 0);
  assert.ok(existsSync(path.join(out, 'model.safetensors')) && !existsSync(path.join(out, '.incomplete-save')));
  writeFileSync(path.join(out, '.incomplete-save'), 'pid 1\n');
  const p = await cli(['predict', '--model', out, '--sentence1', 'a cat .', '--device', 'cpu']);
  assert.equal(p.code, 2);
  assert.match(p.stderr, /its last save was interrupted/);
});

test('V8 is told each model\'s native size (weights, then gradients and AdamW moments), and dispose() gives it back', async () => {
  const cfg = parseConfig({ vocab_size: 1000, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 128, max_position_embeddings: 32, type_vocab_size: 2, model_type: 'bert' }, 'c');
  const ext = () => addon().runtime().v8ExternalMemory;  // process.memoryUsage().external counts ArrayBuffers only
  const before = ext();
  const model = await BertForSequenceClassification.fromConfig(cfg, { device: 'cpu', threads: 1 });
  const bytes = model.numParameters * 4;
  const near = (got: number, want: number) => Math.abs(got - want) < 0.05 * want;
  assert.ok(near(ext() - before, bytes), `external grew by ${ext() - before}, weights are ${bytes} bytes`);
  const batch = { shape: [2, 4] as [number, number], inputIds: Int32Array.from([2, 5, 6, 3, 2, 7, 8, 3]), labels: Int32Array.from([0, 1]) };
  await model.trainStep(batch);
  await model.optimizerStep({ lr: 1e-3 });
  await model.trainStep(batch);
  assert.ok(near(ext() - before, 4 * bytes), `after training: ${ext() - before}, want weights + grads + 2 moments = ${4 * bytes}`);
  await model.dispose();
  assert.ok(Math.abs(ext() - before) < 0.05 * bytes, `after dispose: ${ext() - before}`);
});

test('messages point the right way: label header with a trailing space, --pad-to-multiple-of, --epochs 1e400, --lr-scheduler exp, JSON arrays, zstd parquet', async () => {
  const f = path.join(work.dir, 'space.csv');
  writeFileSync(f, 'sentence1,sentence2,label \na cat .,a dog .,0\nthe bus .,a bus .,1\n');
  const a = await cli([...BASE, '--train-file', f, '--output-dir', path.join(work.dir, 'space')]);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /space.csv: no label column: .* among the columns "sentence1", "sentence2", "label "; name it with --label-column/);
  assert.doesNotMatch(a.stderr, /config.json/);
  const b = await cli([...BASE, '--pad-to-multiple-of', '1000', '--output-dir', path.join(work.dir, 'pad')]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /--pad-to-multiple-of\) is 1000, more than the model's longest input \(64 positions\)/);
  const c = await cli([...BASE, '--epochs', '1e400']);
  assert.match(c.stderr, /--epochs must be a finite number >= 0, got Infinity/);
  const d = await cli([...BASE, '--lr-scheduler', 'exp']);
  assert.equal(d.code, 2);
  assert.equal(d.stderr.trim().split('\n').length, 1, d.stderr);
  // A .json file holding an array of rows, as `datasets` reads it.
  const arr = path.join(work.dir, 'rows.json');
  writeFileSync(arr, JSON.stringify([{ sentence1: 'a cat .', sentence2: 'a dog .', label: 0 }, { sentence1: 'a bus .', sentence2: 'a bus .', label: 1 }], null, 2));
  assert.deepEqual(Array.from((await loadDataFile(arr)).labels!), [0, 1]);
  writeFileSync(arr, '[{"sentence1": "a", "sentence2": "b", "label": 0}, 3]');
  await assert.rejects(loadDataFile(arr), /rows.json: row 2: not a JSON object/);
  // Parquet compressed with zstd (pyarrow's and datasets' default codecs include it), written by pyarrow.
  const pq = path.join(work.dir, 'zstd.parquet');
  execFileSync(pythonForTests(), ['-c', `import pyarrow as pa, pyarrow.parquet as q; q.write_table(pa.table({"sentence1": ["a cat .", "a bus ."], "sentence2": ["a dog .", "a bus ."], "label": [0, 1]}), ${JSON.stringify(pq)}, compression="zstd")`]);
  const z = await loadDataFile(pq);
  assert.deepEqual([z.text1, Array.from(z.labels!)], [['a cat .', 'a bus .'], [0, 1]]);
});

test('an interrupt during evaluation stops it at the next batch and saves the checkpoint; the progress bar clears its line', async () => {
  const tok = await BertTokenizer.fromPretrained(trained);
  const hub = { cacheDir: path.join(home, 'hub'), offline: true };
  const train = await tokenizeDataset(await loadGlue('mrpc', 'train', hub), tok);
  const big = await tokenizeDataset({ ...(await loadGlue('mrpc', 'validation', hub)) }, tok);
  const model = await BertForSequenceClassification.fromPretrained(trained, { device: 'cpu', threads: 1 });
  const controller = new AbortController();
  const evals: object[] = [];
  try {
    // The interrupt arrives as step 2 ends, just before its evaluation: no evaluation entry may follow.
    const t = new Trainer({ model, tokenizer: tok, trainDataset: train, evalDataset: big, signal: controller.signal,
      args: { outputDir: path.join(work.dir, 'eval-int'), maxSteps: 10, evalStrategy: 'steps', evalSteps: 2, saveStrategy: 'no', perDeviceEvalBatchSize: 2 },
      events: { progress: (p) => { if (p.step === 2) controller.abort(); }, evaluate: (m) => evals.push(m) } });
    const r = await t.train();
    assert.equal(r.interrupted, true);
    assert.equal(r.globalStep, 2);
    assert.equal(evals.length, 0, 'the evaluation ran to the end after the interrupt');
    assert.ok(existsSync(path.join(work.dir, 'eval-int', 'checkpoint-2', 'model.safetensors')));
  } finally {
    await model.dispose();
  }
  // On a terminal (script(1) gives one) every bar redraw ends by clearing the rest of the line: no stray "]".
  try { execFileSync('script', ['--version'], { stdio: 'ignore' }); } catch { return; }
  const out = path.join(work.dir, 'tty');
  const cmd = [process.execPath, path.join(root, 'train.js'), ...BASE, '--max-steps', '12', '--output-dir', out, '--save-strategy', 'no', '--eval-strategy', 'no'].map((x) => `'${x}'`).join(' ');
  const typed = execFileSync('script', ['-qec', cmd, '/dev/null'], { env: env(), encoding: 'utf8' });
  const redraws = typed.split('\r').filter((s) => /^\s*\d+%\|/.test(s));
  assert.ok(redraws.length > 2, typed.slice(0, 300));
  for (const r of redraws) assert.ok(r.includes('\x1b[K'), JSON.stringify(r));
});

test('exit codes: user errors 2 with one line; a bug in our code (a built-in TypeError) 1, its stack with --debug', async () => {
  const { errorReport } = await import('../src/cli.js');
  const { UsageError, InputError } = await import('../src/errors.js');
  const { HubError } = await import('../src/hub.js');
  for (const e of [new UsageError('--epochs must be ...'), new InputError('f.csv', 'row 2: bad'), new HubError('not cached')])
    assert.deepEqual(errorReport(e, true), { code: 2, lines: [`error: ${e.message}`] });
  const bug = new TypeError("Cannot read properties of undefined (reading 'x')");
  assert.deepEqual(errorReport(bug, false), { code: 1, lines: [`error: ${bug.message}`] });
  const dbg = errorReport(bug, true);
  assert.equal(dbg.code, 1);
  assert.match(dbg.lines[1], /TypeError: Cannot read properties[\s\S]*\n\s+at /);
  // yargs' own usage errors are the user's too, on one line.
  const yerr = Object.assign(new Error('Invalid values:\n  Argument: lr-scheduler'), { name: 'YError' });
  assert.deepEqual(errorReport(yerr, true), { code: 2, lines: ['error: Invalid values: Argument: lr-scheduler'] });
});
