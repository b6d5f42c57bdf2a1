// The Trainer and CLI end to end on a tiny generated model and MRPC-shaped data in a generated HF cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { makeHfHome } from './fixtures.js';
import { hfRef, root, tempDir } from './helpers.js';
import { BertForSequenceClassification, BertTokenizer, loadGlue, tokenizeDataset, Trainer } from '../src/index.js';

let home: string, work: { dir: string; cleanup: () => void };
const env = () => ({ ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' });

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: { ...env(), ...extraEnv }, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const BASE = ['--model', 'tiny/bert', '--threads', '1', '--device', 'cpu', '--learning-rate', '1e-3', '--batch-size', '8'];

before(async () => {
  work = tempDir('trainer-test-');
  home = await makeHfHome(path.join(work.dir, 'hf-home'));
});
after(() => work.cleanup());

test('node train.js trains, evaluates every epoch, prints the table and writes HF-shaped files', async () => {
  const out = path.join(work.dir, 'run1');
  const r = await cli([...BASE, '--epochs', '3', '--output-dir', out, '--logging-steps', '10', '--save-steps', '20']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Epoch\s+\| Training Loss \| Validation Loss \| Accuracy \| F1/);
  const rows = r.stdout.split('\n').filter((l) => /^[123]\s+\|/.test(l));
  assert.equal(rows.length, 3, r.stdout);
  assert.match(r.stdout, /TrainOutput\(global_step=36, training_loss=/);
  assert.match(r.stderr, /newly initialized: \["classifier.weight","classifier.bias"\]|were not initialized/);
  for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'all_results.json', 'trainer_state.json', 'checkpoint-20/optimizer.safetensors', 'checkpoint-36/trainer_state.json'])
    await fs.access(path.join(out, f));
  const state = JSON.parse(readFileSync(path.join(out, 'trainer_state.json'), 'utf8'));
  assert.equal(state.global_step, 36);
  assert.equal(state.log_history.filter((e: object) => 'eval_loss' in e).length, 3);
  assert.ok(state.log_history.some((e: { loss?: number }) => e.loss !== undefined));
  const results = JSON.parse(readFileSync(path.join(out, 'all_results.json'), 'utf8'));
  assert.ok(results.eval_accuracy > 0.5 && results.eval_f1 >= 0 && results.train_runtime > 0 && results.total_flos > 0, JSON.stringify(results));

  // The saved model in Python transformers: no missing/unexpected keys, the same predictions on the validation split.
  const tok = await BertTokenizer.fromPretrained(out);
  const val = await tokenizeDataset(await loadGlue('mrpc', 'validation', { cacheDir: path.join(home, 'hub'), offline: true }), tok);
  const model = await BertForSequenceClassification.fromPretrained(out, { device: 'cpu' });
  const pred = await new Trainer({ model, tokenizer: tok }).predict(val);
  await model.dispose();
  const seq = Array.from({ length: val.enc.length }, (_, i) => Array.from(val.enc.ids.subarray(val.enc.offsets[i], val.enc.offsets[i + 1])));
  const maxLen = Math.max(...seq.map((s) => s.length));
  const batch = {
    shape: [seq.length, maxLen],
    inputIds: seq.flatMap((s) => [...s, ...Array(maxLen - s.length).fill(0)]),
    attentionMask: seq.flatMap((s) => [...s.map(() => 1), ...Array(maxLen - s.length).fill(0)]),
    tokenTypeIds: seq.flatMap((s, i) => [...Array.from(val.enc.typeIds.subarray(val.enc.offsets[i], val.enc.offsets[i + 1])), ...Array(maxLen - s.length).fill(0)]),
    labels: Array.from(val.labels!),
  };
  const py = await hfRef('check-saved', { dir: out, batch });
  assert.deepEqual([py.missing, py.unexpected], [[], []]);
  const pyPred = Array.from({ length: seq.length }, (_, i) => (py.logits[2 * i + 1] > py.logits[2 * i] ? 1 : 0));
  assert.deepEqual(Array.from(pred.predictions), pyPred);
});

test('resuming from a checkpoint reproduces the uninterrupted run bit for bit', async () => {
  const a = path.join(work.dir, 'full'), b = path.join(work.dir, 'resumed');
  const args = [...BASE, '--epochs', '2', '--save-steps', '5', '--eval-strategy', 'no'];
  assert.equal((await cli([...args, '--output-dir', a])).code, 0);
  const r = await cli([...args, '--output-dir', b, '--resume-from-checkpoint', path.join(a, 'checkpoint-15')]);
  assert.equal(r.code, 0, r.stderr);
  const wa = readFileSync(path.join(a, 'model.safetensors')), wb = readFileSync(path.join(b, 'model.safetensors'));
  assert.ok(wa.equals(wb), 'final weights differ after resume');
});

test('--bf16 trains and evaluates under bfloat16 autocast and records bf16 in training_args.json', async () => {
  const dir = path.join(work.dir, 'bf16');
  const r = await cli([...BASE, '--max-steps', '6', '--save-steps', '6', '--bf16', '--output-dir', dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const evalLine = lines.find((l) => 'eval_loss' in l);
  assert.ok(evalLine && Number.isFinite(evalLine.eval_loss) && evalLine.eval_accuracy >= 0, r.stdout);
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'checkpoint-6', 'training_args.json'), 'utf8')).bf16, true);
});

// Issue 25 (1): on CPUs without AVX-512 (an AMD EPYC with AVX2 only) oneDNN refuses bf16 weight packing, and
// --bf16 stopped in its first evaluation. ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN, and libtorch's bf16 check that
// reads it, answer as such a CPU does, on any machine; evaluation must then take autocast's plain products.
test('--bf16 on a CPU whose oneDNN has no bf16 kernels (ONEDNN_MAX_CPU_ISA=AVX2) trains, evaluates and predicts on the plain autocast path', async () => {
  const dir = path.join(work.dir, 'bf16-avx2');
  const avx2 = { ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };  // ATen's AVX2 kernels too, as on that CPU
  const probe = JSON.parse(await new Promise<string>((resolve, reject) => execFile(process.execPath, ['-e',
    `import(${JSON.stringify(path.join(root, 'dist', 'src', 'native.js'))}).then((m) => console.log(JSON.stringify(m.addon().runtime())))`],
  { env: { ...env(), ...avx2 } }, (e, out) => (e ? reject(e) : resolve(out)))));
  assert.equal(probe.packedBf16, false, 'with ONEDNN_MAX_CPU_ISA=AVX2 the addon must not choose prepacked bf16 weights');
  const r = await cli([...BASE, '--max-steps', '4', '--save-strategy', 'no', '--bf16', '--output-dir', dir, '--json'], avx2);
  assert.equal(r.code, 0, r.stderr);
  const evalLine = r.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((l) => 'eval_loss' in l);
  assert.ok(evalLine && Number.isFinite(evalLine.eval_loss), r.stdout);
  const p = await cli(['predict', '--model', dir, '--sentence1', 'a cat .', '--sentence2', 'a dog .', '--bf16', '--device', 'cpu', '--json'], avx2);
  assert.equal(p.code, 0, p.stderr);
  assert.ok(Number.isFinite(JSON.parse(p.stdout).score), p.stdout);
});

test('Ctrl-C stops after the current step, saves a checkpoint and exits 130', async () => {
  const out = path.join(work.dir, 'sigint');
  const child = spawn(process.execPath, [path.join(root, 'train.js'), ...BASE, '--epochs', '200', '--output-dir', out, '--eval-strategy', 'no', '--save-strategy', 'no'], { env: env() });
  let stdout = '';
  const code: number = await new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('progress') && !child.killed) child.kill('SIGINT');
    });
    child.stderr.resume();
    child.on('exit', (c) => resolve(c ?? -1));
  });
  assert.equal(code, 130, stdout);
  const cps = (await fs.readdir(out)).filter((n) => n.startsWith('checkpoint-'));
  assert.equal(cps.length, 1);
  await fs.access(path.join(out, cps[0], 'model.safetensors'));
  assert.ok(!(await fs.readdir(out)).some((n) => n.includes('.tmp')));
});

test('predict classifies pairs from flags, --json gives one JSON object per line', async () => {
  const out = path.join(work.dir, 'run1');
  const r = await cli(['predict', '--model', out, '--sentence1', 'the cat runs .', '--sentence2', 'a cat saw the dog .', '--sentence1', 'the bus .', '--sentence2', 'a boat .', '--json', '--device', 'cpu']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  for (const l of lines) {
    assert.ok(['not_equivalent', 'equivalent'].includes(l.label_name));
    assert.ok(Math.abs(l.probabilities[0] + l.probabilities[1] - 1) < 1e-6);
  }
  const t = await cli([...BASE, '--epochs', '1', '--output-dir', path.join(work.dir, 'json'), '--json', '--logging-steps', '4']);
  assert.equal(t.code, 0, t.stderr);
  const events = t.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(events.some((e) => 'eval_accuracy' in e) && events.some((e) => 'loss' in e) && events.some((e) => e.event === 'end'));
  const e = await cli(['evaluate', '--model', out, '--json', '--device', 'cpu']);
  assert.equal(e.code, 0, e.stderr);
  assert.ok('eval_f1' in JSON.parse(e.stdout.trim()));
});

test('usage errors exit 2 with one clear line and no stack trace', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--epochs', 'abc'], /epochs/],
    [['--task', 'nope'], /unknown GLUE task "nope"/],
    [['--device', 'tpu'], /--device must be auto, cpu, cuda or cuda:N/],
    [['--no-such-flag'], /Unknown argument/i],
    [['--gradient-accumulation-steps', '0'], /--gradient-accumulation-steps must be an integer >= 1/],
    [['--seed', '1', '--seed', '2'], /--seed was given more than once/],
    [["--model", "missing/model"], /cannot get \S+ of model missing\/model .*HF_HUB_OFFLINE/],
    [['--model', './no-such-dir'], /not a folder/],
    [['--lr-scheduler', 'exp'], /Invalid values|choices/i],
    [['predict', '--model', path.join(work.dir, 'run1')], /predict needs --sentence1/],
  ];
  for (const [args, re] of cases) {
    const kept: string[] = [];
    for (let i = 0; i < BASE.length; i += 2) if (!args.includes(BASE[i])) kept.push(BASE[i], BASE[i + 1]);
    const base = args[0] === 'predict' ? [] : [...kept, '--output-dir', path.join(work.dir, 'usage')];
    const r = await cli([...base, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.ok(!/\n\s+at /.test(r.stderr), `stack trace for ${args.join(' ')}: ${r.stderr}`);
  }
  const h = await cli(['--help']);
  assert.equal(h.code, 0);
  for (const flag of ['--learning-rate', '--warmup-ratio', '--lr-scheduler', '--resume-from-checkpoint', '--json', '[default: 0.00005]'])
    assert.ok(h.stdout.includes(flag), flag);
});

test('the event loop stays responsive while training (p99 delay < 50 ms)', async () => {
  const hub = { cacheDir: path.join(home, 'hub'), offline: true };
  const tok = await BertTokenizer.fromPretrained('tiny/bert', hub);
  const train = await tokenizeDataset(await loadGlue('mrpc', 'train', hub), tok);
  const val = await tokenizeDataset(await loadGlue('mrpc', 'validation', hub), tok);
  const model = await BertForSequenceClassification.fromPretrained('tiny/bert', { ...hub, device: 'cpu', labels: train.labelNames });
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  const out = await new Trainer({ model, tokenizer: tok, trainDataset: train, evalDataset: val,
    args: { numTrainEpochs: 2, outputDir: path.join(work.dir, 'lib'), saveStrategy: 'no', learningRate: 1e-3 } }).train();
  h.disable();
  await model.dispose();
  const p99 = h.percentile(99) / 1e6;
  console.log(`event-loop delay during training: p50 ${(h.percentile(50) / 1e6).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms over ${out.globalStep} steps`);
  assert.ok(p99 < 50, `p99 event-loop delay ${p99} ms`);
});

test('a non-finite training loss stops the run with the step number, or is skipped on request', async () => {
  const hub = { cacheDir: path.join(home, 'hub'), offline: true };
  const tok = await BertTokenizer.fromPretrained('tiny/bert', hub);
  const train = await tokenizeDataset(await loadGlue('mrpc', 'train', hub), tok);
  const { readSafetensors, writeSafetensors } = await import('../src/safetensors.js');
  const dir = path.join(work.dir, 'nan-model');
  await fs.cp(path.dirname((await (await import('../src/hub.js')).cachedFile('tiny/bert', 'config.json', hub))!), dir, { recursive: true, dereference: true });
  const file = path.join(dir, 'model.safetensors');
  const { tensors } = await readSafetensors(file);
  const w = tensors.find((t) => t.name.endsWith('pooler.dense.weight'))!;
  const poisoned = new Float32Array(new Uint8Array(w.data).buffer);
  poisoned[0] = NaN;
  w.data = new Uint8Array(poisoned.buffer);
  await writeSafetensors(file, tensors, { format: 'pt' });
  for (const onNonFiniteLoss of ['stop', 'skip'] as const) {
    const model = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu', labels: train.labelNames });
    const warnings: string[] = [];
    const trainer = new Trainer({ model, tokenizer: tok, trainDataset: train, events: { warning: (m) => warnings.push(m) },
      args: { maxSteps: 3, outputDir: path.join(work.dir, 'nan'), saveStrategy: 'no', evalStrategy: 'no', onNonFiniteLoss } });
    if (onNonFiniteLoss === 'stop') {
      await assert.rejects(trainer.train(), /training loss is NaN at step 1 \(epoch 1\); stopped before the update/);
    } else {
      const out = await trainer.train();
      assert.equal(out.globalStep, 3);
      assert.equal(warnings.length, 3);
      assert.match(warnings[0], /loss is NaN at step 1; the update was skipped/);
      // A run that only ever skips has diverged: it stops after MAX_SKIPPED_IN_A_ROW, never "succeeds".
      const long = new Trainer({ model, tokenizer: tok, trainDataset: train,
        args: { maxSteps: 30, outputDir: path.join(work.dir, 'nan'), saveStrategy: 'no', evalStrategy: 'no', onNonFiniteLoss } });
      await assert.rejects(long.train(), /training loss was not finite for 10 steps in a row/);
    }
    await model.dispose();
  }
  // Nor is a prediction ever printed from non-finite logits.
  const p = await cli(['predict', '--model', dir, '--sentence1', 'a cat .', '--device', 'cpu']);
  assert.equal(p.code, 1);
  assert.match(p.stderr, /gives non-finite logits \(NaN, NaN\) for input 1/);
  assert.ok(!p.stdout.includes('label'));
});
