// load_best_model_at_end, metric_for_best_model and EarlyStoppingCallback: a tiny run's real evaluations are fed to
// transformers' own EarlyStoppingCallback and Trainer._determine_best_metric; the run must stop at the step they
// stop at, keep the checkpoint they pick as best (through save_total_limit 1) and end with its weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { hfRef, root, tempDir } from './helpers.js';
import { Trainer } from '../src/trainer.js';
import { EarlyStoppingCallback } from '../src/trainer-callback.js';
import { BertForSequenceClassification } from '../src/model.js';
import { parseConfig } from '../src/config.js';

test('best model and early stopping choose as transformers does on the same evaluations', async () => {
  const { dir, cleanup } = tempDir('best-model-');
  try {
    const home = await makeHfHome(path.join(dir, 'hf'));
    const out = path.join(dir, 'out');
    const run = (args: string[]) => new Promise<{ code: number; stderr: string }>((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), ...args],
      { env: { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' } }, (e, _o, stderr) => resolve({ code: e ? (e.code as number) : 0, stderr })));
    // lr 1e-3 on the tiny task: validation loss falls, then rises as it overfits, so patience 2 stops it early.
    const r = await run(['--model', 'tiny/bert', '--device', 'cpu', '--threads', '1', '--learning-rate', '1e-3', '--epochs', '25', '--output-dir', out,
      '--eval-strategy', 'epoch', '--save-strategy', 'epoch', '--save-total-limit', '1', '--load-best-model-at-end', '--early-stopping-patience', '2']);
    assert.equal(r.code, 0, r.stderr);
    const state = JSON.parse(readFileSync(path.join(out, 'trainer_state.json'), 'utf8'));
    const evals = state.log_history.filter((e: Record<string, number>) => 'eval_loss' in e).map((e: Record<string, number>) => [e.step, e]);
    const ref = await hfRef('best-and-stop', { metric: 'loss', patience: 2, threshold: 0, evals });
    assert.ok(ref.stopStep !== null && ref.stopStep < 25 * 12, `the fixture should stop early: ${JSON.stringify(ref)}`);
    assert.equal(state.global_step, ref.stopStep);
    assert.equal(state.best_global_step, ref.bestGlobalStep);
    assert.equal(state.best_metric, ref.bestMetric);
    const best = path.join(out, `checkpoint-${ref.bestGlobalStep}`);
    assert.equal(state.best_model_checkpoint, best);
    assert.ok(existsSync(path.join(best, 'model.safetensors')), 'the best checkpoint was rotated away');
    assert.ok(existsSync(path.join(out, `checkpoint-${ref.stopStep}`)), 'the last checkpoint is kept beside the best');
    assert.ok(readFileSync(path.join(out, 'model.safetensors')).equals(readFileSync(path.join(best, 'model.safetensors'))), 'the final model is not the best checkpoint');
    assert.match(r.stderr, /loaded the best model from .*checkpoint-\d+ \(eval_loss /);
    // The patience counter travels in the checkpoint (stateful_callbacks, as transformers writes it). Resumed from the
    // stopping checkpoint with it restored, the next evaluation without improvement stops again at once; without
    // (transformers' default), the counter restarts and patience allows two more epochs.
    const last = path.join(out, `checkpoint-${ref.stopStep}`);
    const saved = JSON.parse(readFileSync(path.join(last, 'trainer_state.json'), 'utf8')).stateful_callbacks.EarlyStoppingCallback;
    assert.deepEqual(saved, { args: { early_stopping_patience: 2, early_stopping_threshold: 0 }, attributes: { early_stopping_patience_counter: 2 } });
    const stepsPerEpoch = ref.stopStep / Math.round(state.epoch);
    for (const [restore, epochs] of [[true, 1], [false, 2]] as const) {
      const o2 = path.join(dir, `resumed-${restore}`);
      mkdirSync(o2);
      cpSync(last, path.join(o2, path.basename(last)), { recursive: true });
      const r2 = await run(['--model', 'tiny/bert', '--device', 'cpu', '--threads', '1', '--learning-rate', '1e-3', '--epochs', '25', '--output-dir', o2,
        '--eval-strategy', 'epoch', '--save-strategy', 'epoch', '--load-best-model-at-end', '--early-stopping-patience', '2',
        '--resume-from-checkpoint', 'latest', ...(restore ? ['--restore-callback-states-from-checkpoint'] : [])]);
      assert.equal(r2.code, 0, r2.stderr);
      const s2 = JSON.parse(readFileSync(path.join(o2, 'trainer_state.json'), 'utf8'));
      assert.equal(s2.global_step, ref.stopStep + epochs * stepsPerEpoch, `restore ${restore}`);
    }
  } finally {
    cleanup();
  }
});

test('greater_is_better is inferred as transformers infers it; early stopping without load_best_model_at_end is refused', async () => {
  const model = await BertForSequenceClassification.fromConfig(parseConfig({ vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 8 }, 'c'), { device: 'cpu' });
  try {
    for (const [metric, want] of [['loss', false], ['f1', true], ['eval_loss', false], ['accuracy', true]] as const) {
      const t = new Trainer({ model, args: { metricForBestModel: metric } });
      assert.equal(t.args.greaterIsBetter, want, metric);
      assert.equal((await hfRef('best-and-stop', { metric, patience: 1, threshold: 0, evals: [] })).greaterIsBetter, want);
    }
    assert.throws(() => new Trainer({ model, callbacks: [new EarlyStoppingCallback(2)] }), /early stopping needs loadBestModelAtEnd/);
    assert.throws(() => new Trainer({ model, args: { loadBestModelAtEnd: true } }), /saveStrategy must be the same as evalStrategy/);
  } finally {
    await model.dispose();
  }
});

test('a callback steers the loop as TrainerControl does: shouldLog, shouldEvaluate, shouldSave, shouldTrainingStop', async () => {
  const { dir, cleanup } = tempDir('control-');
  try {
    const { BertTokenizer } = await import('../src/tokenizer.js');
    const { tokenizeDataset } = await import('../src/data.js');
    const { makePairs, makeTinyModel } = await import('./fixtures.js');
    const modelDir = await makeTinyModel(path.join(dir, 'm'));
    const tok = await BertTokenizer.fromPretrained(modelDir);
    const p = makePairs(32, 3);
    const ds = await tokenizeDataset({ source: 'pairs', text1: p.sentence1, text2: p.sentence2, labels: Int32Array.from(p.label), labelNames: ['0', '1'], isRegression: false }, tok);
    const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: 'cpu', threads: 1 });
    const steps: number[] = [];
    const trainer = new Trainer({ model, tokenizer: tok, trainDataset: ds, evalDataset: ds,
      args: { outputDir: path.join(dir, 'out'), numTrainEpochs: 5, evalStrategy: 'no', saveStrategy: 'no', loggingSteps: 100 },
      callbacks: [{ onStepEnd: (_a, state, control) => {
        steps.push(state.global_step);
        if (state.global_step === 2) control.shouldLog = true;
        if (state.global_step === 3) control.shouldEvaluate = true;
        if (state.global_step === 5) { control.shouldSave = true; control.shouldTrainingStop = true; }
      } }] });
    const out = await trainer.train();
    const h = trainer.trainerState!.log_history;
    assert.deepEqual(steps, [1, 2, 3, 4, 5]);
    assert.equal(out.globalStep, 5);
    assert.deepEqual(h.filter((e) => 'loss' in e).map((e) => e.step), [2]);
    assert.deepEqual(h.filter((e) => 'eval_loss' in e).map((e) => e.step), [3]);
    assert.ok(existsSync(path.join(dir, 'out', 'checkpoint-5', 'model.safetensors')));
    assert.ok(!existsSync(path.join(dir, 'out', 'checkpoint-4')));
    await model.dispose();
  } finally {
    cleanup();
  }
});

test('--eval-on-start evaluates at step 0; --logging-first-step logs step 1', async () => {
  const { dir, cleanup } = tempDir('first-step-');
  try {
    const home = await makeHfHome(path.join(dir, 'hf'));
    const out = path.join(dir, 'out');
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), '--model', 'tiny/bert',
      '--device', 'cpu', '--threads', '1', '--max-steps', '6', '--logging-steps', '5', '--save-strategy', 'no', '--output-dir', out, '--eval-on-start', '--logging-first-step'],
    { env: { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' } }, (e, _o, stderr) => resolve({ code: e ? (e.code as number) : 0, stderr })));
    assert.equal(r.code, 0, r.stderr);
    const history = JSON.parse(readFileSync(path.join(out, 'trainer_state.json'), 'utf8')).log_history;
    assert.equal(history[0].step, 0);
    assert.ok('eval_loss' in history[0], JSON.stringify(history[0]));
    assert.deepEqual(history.filter((e: Record<string, number>) => 'loss' in e).map((e: Record<string, number>) => e.step), [1, 5]);
  } finally {
    cleanup();
  }
});
