// GLUE metrics against scikit-learn and scipy on random and edge-case inputs: equal to 1e-9.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { accuracy, f1, glueMetric, matthewsCorrelation, pearson, spearman } from '../src/metrics.js';
import { pythonForTests, root, tempDir } from './helpers.js';

test('accuracy, F1, MCC, Pearson and Spearman equal scikit-learn/scipy', () => {
  let s = 9;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const cases: Array<{ pred: number[]; ref: number[]; x?: number[]; y?: number[] }> = [];
  for (let k = 0; k < 40; k++) {
    const n = 1 + Math.floor(rnd() * 60), classes = k % 3 === 0 ? 3 : 2;
    const ref = Array.from({ length: n }, () => Math.floor(rnd() * classes));
    const pred = ref.map((r) => (rnd() < 0.7 ? r : Math.floor(rnd() * classes)));
    const x = Array.from({ length: n }, () => Math.round(rnd() * 5 * 4) / 4), y = x.map((v) => v + Math.round((rnd() - 0.5) * 8) / 4);
    cases.push({ pred, ref, x, y });
  }
  cases.push({ pred: [1, 1, 1, 1], ref: [1, 1, 1, 1] });          // all one class
  cases.push({ pred: [0, 0, 0, 0], ref: [0, 1, 0, 1] });          // constant prediction, no positives predicted
  cases.push({ pred: [0, 0, 0], ref: [0, 0, 0] });                // no positives at all: F1 0 by zero_division
  cases.push({ pred: [1, 0, 1, 0], ref: [0, 1, 0, 1], x: [1, 2, 2, 3], y: [3, 3, 1, 1] });  // ties
  cases.push({ pred: [1], ref: [0], x: [1, 1, 1], y: [1, 2, 3] }); // constant x: NaN as scipy
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'cases.json');
    writeFileSync(file, JSON.stringify(cases));
    const ref = JSON.parse(execFileSync(pythonForTests(), [path.join(root, 'test', 'python', 'metrics_ref.py'), file], { cwd: os.tmpdir() }).toString());
    let worst = 0;
    const close = (a: number, b: number | null, what: string, i: number) => {
      if (b === null) return assert.ok(Number.isNaN(a), `${what} case ${i}: expected NaN, got ${a}`);
      worst = Math.max(worst, Math.abs(a - b));
      assert.ok(Math.abs(a - b) <= 1e-9, `${what} case ${i}: ${a} vs ${b}`);
    };
    cases.forEach((c, i) => {
      close(accuracy(c.pred, c.ref), ref[i].accuracy, 'accuracy', i);
      close(matthewsCorrelation(c.pred, c.ref), ref[i].matthews, 'mcc', i);
      if ('f1' in ref[i]) close(f1(c.pred, c.ref), ref[i].f1, 'f1', i);
      if (c.x) { close(pearson(c.x, c.y!), ref[i].pearson, 'pearson', i); close(spearman(c.x, c.y!), ref[i].spearman, 'spearman', i); }
    });
    console.log(`metrics: ${cases.length} cases, max abs diff vs scikit-learn/scipy ${worst.toExponential(2)}`);
  } finally {
    cleanup();
  }
  assert.deepEqual(Object.keys(glueMetric('mrpc', [1, 0], [1, 1])), ['accuracy', 'f1']);
  assert.deepEqual(Object.keys(glueMetric('stsb', [1, 2, 3], [1, 2, 4])), ['pearson', 'spearmanr']);
  assert.deepEqual(Object.keys(glueMetric('cola', [1, 0], [1, 1])), ['matthews_correlation']);
});
