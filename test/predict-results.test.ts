// --do-predict writes predict_results_<task>.txt as run_glue.py does: "index\tprediction" then one row per test
// example with the label name (a score to 3 decimals for regression), the same labels `predict` gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { root, tempDir } from './helpers.js';
import { predictResultsText } from '../src/cli.js';

test('run_glue.py\'s predict_results format: label names, or scores as {:3.3f}', () => {
  assert.equal(predictResultsText(Int32Array.from([1, 0]), ['not_equivalent', 'equivalent']), 'index\tprediction\n0\tequivalent\n1\tnot_equivalent\n');
  assert.equal(predictResultsText(Float32Array.from([3.14159, -0.5, 12]), null), 'index\tprediction\n0\t3.142\n1\t-0.500\n2\t12.000\n');
});

test('--do-predict predicts the GLUE test split into predict_results_mrpc.txt, the same labels as `predict --file`', async () => {
  const { dir, cleanup } = tempDir('do-predict-');
  try {
    const home = await makeHfHome(path.join(dir, 'hf'));
    const env = { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' };
    const run = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env }, (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr })));
    const out = path.join(dir, 'out');
    const r = await run(['--model', 'tiny/bert', '--device', 'cpu', '--threads', '1', '--epochs', '1', '--learning-rate', '1e-3', '--save-strategy', 'no', '--output-dir', out, '--do-predict']);
    assert.equal(r.code, 0, r.stderr);
    const lines = readFileSync(path.join(out, 'predict_results_mrpc.txt'), 'utf8').trimEnd().split('\n');
    assert.equal(lines[0], 'index\tprediction');
    assert.equal(lines.length, 21);  // the fixture's test split has 20 rows
    const snap = path.join(home, 'hub', 'datasets--nyu-mll--glue', 'snapshots');
    const testFile = path.join(snap, readdirSync(snap)[0], 'mrpc', 'test-00000-of-00001.parquet');
    const p = await run(['predict', '--model', out, '--file', testFile, '--device', 'cpu', '--json']);
    assert.equal(p.code, 0, p.stderr);
    const names = p.stdout.trim().split('\n').map((l) => JSON.parse(l).label_name);
    assert.deepEqual(lines.slice(1), names.map((n, i) => `${i}\t${n}`));
    // `predict --split test --output-dir` writes the same file as --do-predict did.
    const again = path.join(dir, 'again');
    const s = await run(['predict', '--model', out, '--split', 'test', '--output-dir', again, '--device', 'cpu']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(readFileSync(path.join(again, 'predict_results_mrpc.txt'), 'utf8'), lines.join('\n') + '\n');
    const bad = await run(['predict', '--model', out, '--split', 'dev', '--device', 'cpu']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--split dev: GLUE mrpc has the splits train, validation, test/);
  } finally {
    cleanup();
  }
});
