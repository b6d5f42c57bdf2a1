// The learning-rate schedules (every LR_SCHEDULERS entry; warmup by steps or ratio) against transformers' own
// get_scheduler, step by step: the Trainer's learning rate at step s is what TrainingArguments would give.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lrLambda, LR_SCHEDULERS } from '../src/trainer.js';
import { hfRef } from './helpers.js';

test('every schedule, with and without warmup, equals transformers.get_scheduler at every step (1e-12)', async () => {
  const lr = 5e-5;
  const cases = LR_SCHEDULERS.flatMap((kind) => [[0, 10], [3, 10], [1, 1], [10, 10], [7, 1377], [0, 1377], [138, 1377]].map(([warmup, total]) => ({ kind, warmup, total })))
    .filter((c) => !(c.kind === 'polynomial' && c.warmup >= c.total));  // transformers itself divides by zero there
  const ref = (await hfRef('schedules', { lr, cases })) as number[][];
  let worst = 0;
  cases.forEach((c, i) => {
    for (let s = 0; s <= c.total; s++) {
      const ours = lr * lrLambda(c.kind, s, c.warmup, c.total, lr);
      const d = Math.abs(ours - ref[i][s]);
      worst = Math.max(worst, d);
      assert.ok(d <= 1e-12, `${c.kind} warmup ${c.warmup} total ${c.total} step ${s}: ours ${ours}, transformers ${ref[i][s]}`);
    }
  });
  console.log(`schedules: largest difference from transformers ${worst.toExponential(2)} over ${cases.length} cases`);
});
