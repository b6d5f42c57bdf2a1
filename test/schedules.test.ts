// The learning-rate schedules (every LR_SCHEDULERS entry; warmup by steps or ratio) against transformers' own
// get_scheduler, step by step: the Trainer's learning rate at step s is what TrainingArguments would give.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lrLambda } from '../src/optimization.js';
import { LR_SCHEDULERS, type LrScheduler, type LrSchedulerKwargs } from '../src/training-args.js';
import { hfRef } from './helpers.js';

test('every schedule, with and without warmup, equals transformers.get_scheduler at every step (1e-12)', async () => {
  const lr = 5e-5;
  // lr_scheduler_kwargs: the defaults ({}), and each schedule's extra arguments set (warmup_stable_decay and
  // cosine_with_min_lr require some).
  const kwargsOf: Record<LrScheduler, LrSchedulerKwargs[]> = {
    linear: [{}], constant: [{}], constant_with_warmup: [{}], cosine: [{}, { num_cycles: 1.5 }], cosine_with_restarts: [{}, { num_cycles: 3 }],
    polynomial: [{}, { lr_end: 1e-6, power: 2 }], inverse_sqrt: [{}, { timescale: 50 }],
    cosine_with_min_lr: [{ min_lr_rate: 0.1 }, { min_lr: 1e-6, num_cycles: 0.75 }],
    warmup_stable_decay: [{ num_decay_steps: 4 }, { num_decay_steps: 300, num_stable_steps: 500, min_lr_ratio: 0.05, decay_type: 'linear', warmup_type: 'cosine' },
      { num_decay_steps: 200, decay_type: '1-sqrt', warmup_type: '1-sqrt' }],
  };
  const cases = LR_SCHEDULERS.flatMap((kind) => kwargsOf[kind].flatMap((kwargs) =>
    [[0, 10], [3, 10], [1, 1], [10, 10], [7, 1377], [0, 1377], [138, 1377]].map(([warmup, total]) => ({ kind, warmup, total, kwargs }))))
    .filter((c) => !(c.kind === 'polynomial' && c.warmup >= c.total))  // transformers itself divides by zero there
    // warmup_stable_decay derives its plateau as total - warmup - decay: only where that is not negative.
    .filter((c) => !(c.kind === 'warmup_stable_decay' && c.kwargs.num_stable_steps === undefined && c.warmup + (c.kwargs.num_decay_steps as number) > c.total));
  const ref = (await hfRef('schedules', { lr, cases })) as number[][];
  let worst = 0;
  cases.forEach((c, i) => {
    for (let s = 0; s <= c.total; s++) {
      const ours = lr * lrLambda(c.kind, s, c.warmup, c.total, lr, c.kwargs);
      const d = Math.abs(ours - ref[i][s]);
      worst = Math.max(worst, d);
      assert.ok(d <= 1e-12, `${c.kind} ${JSON.stringify(c.kwargs)} warmup ${c.warmup} total ${c.total} step ${s}: ours ${ours}, transformers ${ref[i][s]}`);
    }
  });
  console.log(`schedules: largest difference from transformers ${worst.toExponential(2)} over ${cases.length} cases`);
});
