// Learning-rate schedules as transformers' optimization.py computes them (get_scheduler's lambdas).
import { DEFAULT_ARGS, type LrScheduler, type LrSchedulerKwargs } from './training-args.js';

/**
 * The learning-rate multiplier transformers' get_scheduler(kind, ..., scheduler_specific_kwargs=kw) gives at optimizer
 * step `step`, with its defaults for what `kw` leaves out (cosine: half a cycle; cosine_with_restarts: 1 cycle;
 * polynomial: lr_end 1e-7, power 1; inverse_sqrt: timescale = warmup or 10,000; warmup_stable_decay: linear warmup,
 * cosine decay, no stable steps beyond what the total leaves). `lr` is the initial learning rate (polynomial and
 * min_lr are absolute).
 */
export function lrLambda(kind: LrScheduler, step: number, warmup: number, total: number, lr = DEFAULT_ARGS.learningRate, kw: LrSchedulerKwargs = {}): number {
  const num = (k: string, d: number) => (typeof kw[k] === 'number' ? (kw[k] as number) : d);
  if (kind === 'constant') return 1;  // get_constant_schedule: transformers ignores the warmup for "constant"
  if (kind === 'warmup_stable_decay') return wsdLambda(step, warmup, total, kw);
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  switch (kind) {
    case 'constant_with_warmup': return 1;
    case 'linear': return Math.max(0, (total - step) / Math.max(1, total - warmup));
    case 'cosine': return Math.max(0, cosineDecay(progress, num('num_cycles', 0.5)));
    case 'cosine_with_restarts':
      return progress >= 1 ? 0 : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((num('num_cycles', 1) * progress) % 1))));
    case 'polynomial': {
      const lrEnd = num('lr_end', 1e-7), power = num('power', 1);
      if (step > total) return lrEnd / lr;
      const remaining = 1 - (step - warmup) / Math.max(1, total - warmup);  // transformers divides by zero when warmup = total
      return ((lr - lrEnd) * remaining ** power + lrEnd) / lr;
    }
    case 'inverse_sqrt': {
      const timescale = num('timescale', warmup || 10_000);
      return 1 / Math.sqrt((step + timescale - warmup) / timescale);
    }
    case 'cosine_with_min_lr': {
      const rate = kw.min_lr !== undefined ? (kw.min_lr as number) / lr : (kw.min_lr_rate as number);
      return Math.max(0, cosineDecay(progress, num('num_cycles', 0.5)) * (1 - rate) + rate);
    }
  }
}

/** transformers' cosine factor: from 1 at progress 0, `cycles` cycles of a cosine over progress 0..1. */
function cosineDecay(progress: number, cycles: number): number { return 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)); }

/** transformers' get_wsd_schedule: warmup, a plateau, then a decay over num_decay_steps towards min_lr_ratio. */
function wsdLambda(step: number, warmup: number, total: number, kw: LrSchedulerKwargs): number {
  const minRatio = typeof kw.min_lr_ratio === 'number' ? kw.min_lr_ratio : 0, decaySteps = kw.num_decay_steps as number;
  const stable = typeof kw.num_stable_steps === 'number' ? kw.num_stable_steps : total - warmup - decaySteps;
  const shape = (type: string, p: number, rising: boolean) =>
    type === 'linear' ? (rising ? p : 1 - p)
    : type === 'cosine' ? (rising ? 0.5 * (1 - Math.cos(Math.PI * p)) : cosineDecay(p, typeof kw.num_cycles === 'number' ? kw.num_cycles : 0.5))
    : rising ? 1 - Math.sqrt(1 - p) : 1 - Math.sqrt(p);
  if (step < warmup) return Math.max(0, shape((kw.warmup_type as string) ?? 'linear', step / Math.max(1, warmup), true) * (1 - minRatio) + minRatio);
  if (step < warmup + stable) return 1;
  if (step < warmup + stable + decaySteps)
    return Math.max(0, shape((kw.decay_type as string) ?? 'cosine', (step - warmup - stable) / Math.max(1, decaySteps), false) * (1 - minRatio) + minRatio);
  return minRatio;
}
