// TrainingArguments: every setting of a run with transformers' defaults, the choice lists, and the one validation
// of them (as training_args.py). The CLI's flags, the Trainer and the model card all read these.
import { OPTIMIZER_DEFAULTS, OPTIMIZERS, type Optimizer } from './model.js';
import { show, UsageError } from './errors.js';

/** The values each choice argument takes: validation, types and the CLI's --help all read these. */
export const LR_SCHEDULERS = ['linear', 'cosine', 'constant', 'constant_with_warmup', 'cosine_with_restarts', 'polynomial', 'inverse_sqrt',
  'cosine_with_min_lr', 'warmup_stable_decay'] as const;
/** lr_scheduler_kwargs each schedule takes (transformers' schedule functions' extra arguments). */
export const LR_SCHEDULER_KWARGS: Record<(typeof LR_SCHEDULERS)[number], readonly string[]> = {
  linear: [], constant: [], constant_with_warmup: [], cosine: ['num_cycles'], cosine_with_restarts: ['num_cycles'],
  polynomial: ['lr_end', 'power'], inverse_sqrt: ['timescale'], cosine_with_min_lr: ['num_cycles', 'min_lr', 'min_lr_rate'],
  warmup_stable_decay: ['num_decay_steps', 'num_stable_steps', 'warmup_type', 'decay_type', 'min_lr_ratio', 'num_cycles'],
};
export type LrSchedulerKwargs = Record<string, number | string>;
export const STRATEGIES = ['no', 'steps', 'epoch'] as const;
export const NON_FINITE_LOSS = ['stop', 'skip'] as const;
export const REPORT_TO = ['none', 'tensorboard'] as const;
export type LrScheduler = (typeof LR_SCHEDULERS)[number];
export type Strategy = (typeof STRATEGIES)[number];

/** TrainingArguments, camelCase; defaults are transformers' (with evalStrategy 'epoch' as the notebook sets it). */
export interface TrainingArguments {
  outputDir: string;
  numTrainEpochs: number;
  maxSteps: number;
  learningRate: number;
  lrSchedulerType: LrScheduler;
  /** lr_scheduler_kwargs: the schedule's extra arguments (LR_SCHEDULER_KWARGS), e.g. { min_lr_rate: 0.1 }; a JSON string is accepted. */
  lrSchedulerKwargs: LrSchedulerKwargs;
  /** The optimizer (TrainingArguments.optim). */
  optim: Optimizer;
  /** optim_args: "momentum=0.9" for sgd (the only key an optimizer here takes). */
  optimArgs: string | null;
  /** label_smoothing_factor: cross-entropy against (1 - e) one-hot + e uniform, as the Trainer's LabelSmoother (training and evaluation loss). */
  labelSmoothingFactor: number;
  warmupRatio: number;
  warmupSteps: number;
  weightDecay: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEpsilon: number;
  maxGradNorm: number;
  perDeviceTrainBatchSize: number;
  perDeviceEvalBatchSize: number;
  gradientAccumulationSteps: number;
  evalStrategy: Strategy;
  evalSteps: number | null;
  loggingSteps: number;
  saveStrategy: Strategy;
  saveSteps: number;
  saveTotalLimit: number | null;
  seed: number;
  groupByLength: boolean;
  dataloaderDropLast: boolean;
  padToMultipleOf: number | null;
  /** What to do when a training loss is NaN or infinite: stop with an error (default) or skip the update. */
  onNonFiniteLoss: (typeof NON_FINITE_LOSS)[number];
  /** bfloat16 autocast for forward passes and the loss, in training and evaluation (weights and AdamW stay fp32). */
  bf16: boolean;
  /** Where logs go besides log_history: 'tensorboard' writes event files into loggingDir. */
  reportTo: Array<(typeof REPORT_TO)[number]>;
  /** TensorBoard's run folder; null: <outputDir>/runs/<Mon DD_HH-MM-SS>_<host>, as transformers; a resumed run keeps its checkpoint's. */
  loggingDir: string | null;
  /** Keep the best checkpoint (by metricForBestModel) through rotation and load it at the end. Needs saves at evaluations. */
  loadBestModelAtEnd: boolean;
  /** An eval metric ("loss", "f1", "eval_accuracy", ...); null: "loss" when loadBestModelAtEnd. */
  metricForBestModel: string | null;
  /** null: true unless the metric ends with "loss", as transformers infers it. */
  greaterIsBetter: boolean | null;
  /** Evaluate once before the first step (a baseline in the log). */
  evalOnStart: boolean;
  /** Log the first step too, not only every loggingSteps. */
  loggingFirstStep: boolean;
  /** On a resume, give callbacks (early stopping's patience counter) the state the checkpoint saved. Off, as in transformers. */
  restoreCallbackStatesFromCheckpoint: boolean;
  /** Upload the model to the Hub (pushToHub() at the end; with hubStrategy every_save also each checkpoint). */
  pushToHub: boolean;
  /** "name" or "namespace/name"; null: the output folder's name under the token's user. */
  hubModelId: string | null;
  hubStrategy: HubStrategy;
  /** null: HF_TOKEN. Never written to training_args.json. */
  hubToken: string | null;
  hubPrivateRepo: boolean;
}

export const DEFAULT_ARGS: TrainingArguments = {
  outputDir: 'test-trainer', numTrainEpochs: 3, maxSteps: -1, learningRate: 5e-5, lrSchedulerType: 'linear', lrSchedulerKwargs: {},
  optim: OPTIMIZER_DEFAULTS.optim, optimArgs: null, labelSmoothingFactor: 0,
  warmupRatio: 0, warmupSteps: 0, weightDecay: OPTIMIZER_DEFAULTS.weightDecay, adamBeta1: OPTIMIZER_DEFAULTS.beta1,
  adamBeta2: OPTIMIZER_DEFAULTS.beta2, adamEpsilon: OPTIMIZER_DEFAULTS.eps, maxGradNorm: OPTIMIZER_DEFAULTS.maxGradNorm,
  perDeviceTrainBatchSize: 8, perDeviceEvalBatchSize: 8, gradientAccumulationSteps: 1, evalStrategy: 'epoch',
  evalSteps: null, loggingSteps: 500, saveStrategy: 'steps', saveSteps: 500, saveTotalLimit: null, seed: 42,
  groupByLength: false, dataloaderDropLast: false, padToMultipleOf: null, onNonFiniteLoss: 'stop', bf16: false,
  reportTo: [], loggingDir: null, loadBestModelAtEnd: false, metricForBestModel: null, greaterIsBetter: null,
  evalOnStart: false, loggingFirstStep: false, restoreCallbackStatesFromCheckpoint: false,
  pushToHub: false, hubModelId: null, hubStrategy: 'end', hubToken: null, hubPrivateRepo: false,
};


export const HUB_STRATEGIES = ['end', 'every_save'] as const;
export type HubStrategy = (typeof HUB_STRATEGIES)[number];

/**
 * TrainingArguments with their defaults, every field checked. `nameOf` says what a field is called where the
 * value came from (the CLI passes its flag names), so messages name what the user typed.
 */
export function validateArgs(a: Partial<TrainingArguments>, nameOf: (field: keyof TrainingArguments) => string = (f) => f): TrainingArguments {
  const args = { ...DEFAULT_ARGS, ...a };
  const bad = (name: keyof TrainingArguments, want: string, v: unknown) => { throw new UsageError(`${nameOf(name)} must be ${want}, got ${show(v)}`); };
  const posInt = (n: keyof TrainingArguments) => { if (!Number.isInteger(args[n]) || (args[n] as number) < 1) bad(n, 'an integer >= 1', args[n]); };
  const nonNeg = (n: keyof TrainingArguments) => { if (typeof args[n] !== 'number' || !Number.isFinite(args[n]) || (args[n] as number) < 0) bad(n, 'a finite number >= 0', args[n]); };
  if (typeof args.outputDir !== 'string' || !args.outputDir) bad('outputDir', 'a folder path', args.outputDir);
  nonNeg('numTrainEpochs');
  if (!Number.isInteger(args.maxSteps) || args.maxSteps < -1 || args.maxSteps === 0) bad('maxSteps', '-1 (use epochs) or an integer >= 1', args.maxSteps);
  nonNeg('learningRate'); nonNeg('warmupRatio'); nonNeg('weightDecay'); nonNeg('maxGradNorm');
  if (args.warmupRatio > 1) bad('warmupRatio', 'in [0, 1]', args.warmupRatio);
  if (!Number.isInteger(args.warmupSteps) || args.warmupSteps < 0) bad('warmupSteps', 'an integer >= 0', args.warmupSteps);
  for (const n of ['adamBeta1', 'adamBeta2'] as const) if (!(args[n] >= 0 && args[n] < 1)) bad(n, 'in [0, 1)', args[n]);
  if (!(args.adamEpsilon > 0)) bad('adamEpsilon', '> 0', args.adamEpsilon);
  posInt('perDeviceTrainBatchSize'); posInt('perDeviceEvalBatchSize'); posInt('gradientAccumulationSteps');
  posInt('loggingSteps'); posInt('saveSteps');
  const oneOf = (n: keyof TrainingArguments, list: readonly string[]) => { if (!list.includes(args[n] as string)) bad(n, `one of ${list.join(', ')}`, args[n]); };
  oneOf('lrSchedulerType', LR_SCHEDULERS);
  oneOf('optim', OPTIMIZERS);
  if (!(args.labelSmoothingFactor >= 0 && args.labelSmoothingFactor < 1)) bad('labelSmoothingFactor', 'in [0, 1)', args.labelSmoothingFactor);
  if (args.optimArgs !== null) {
    const pairs = typeof args.optimArgs === 'string' ? optimArgPairs(args.optimArgs) : [];
    if (!pairs.length || pairs.some((kv) => kv.length !== 2)) bad('optimArgs', 'comma-separated key=value pairs', args.optimArgs);
    for (const [k, v] of pairs) {
      if (args.optim !== 'sgd' || k !== 'momentum') bad('optimArgs', `keys ${args.optim} takes here (sgd: momentum; the others: none)`, args.optimArgs);
      if (!(Number(v) >= 0 && Number(v) < 1)) bad('optimArgs', 'momentum in [0, 1)', args.optimArgs);
    }
  }
  if (typeof args.lrSchedulerKwargs === 'string') {
    try {
      args.lrSchedulerKwargs = JSON.parse(args.lrSchedulerKwargs);
    } catch {
      bad('lrSchedulerKwargs', 'a JSON object', args.lrSchedulerKwargs);
    }
  }
  checkSchedulerKwargs(args.lrSchedulerType, args.lrSchedulerKwargs, (want, v) => bad('lrSchedulerKwargs', want, v));
  oneOf('evalStrategy', STRATEGIES);
  oneOf('saveStrategy', STRATEGIES);
  oneOf('onNonFiniteLoss', NON_FINITE_LOSS);
  if (args.evalSteps !== null && (!Number.isInteger(args.evalSteps) || args.evalSteps < 1)) bad('evalSteps', 'an integer >= 1', args.evalSteps);
  if (args.saveTotalLimit !== null && (!Number.isInteger(args.saveTotalLimit) || args.saveTotalLimit < 1)) bad('saveTotalLimit', 'an integer >= 1', args.saveTotalLimit);
  if (!Number.isInteger(args.seed) || args.seed < 0) bad('seed', 'an integer >= 0', args.seed);
  if (args.padToMultipleOf !== null && (!Number.isInteger(args.padToMultipleOf) || args.padToMultipleOf < 1)) bad('padToMultipleOf', 'an integer >= 1', args.padToMultipleOf);
  if (typeof args.bf16 !== 'boolean') bad('bf16', 'true or false', args.bf16);
  if (!Array.isArray(args.reportTo) || args.reportTo.some((r) => !REPORT_TO.includes(r))) bad('reportTo', `a list of ${REPORT_TO.join(', ')}`, args.reportTo);
  if (args.loggingDir !== null && (typeof args.loggingDir !== 'string' || !args.loggingDir)) bad('loggingDir', 'a folder path', args.loggingDir);
  oneOf('hubStrategy', HUB_STRATEGIES);
  for (const n of ['hubModelId', 'hubToken'] as const) if (args[n] !== null && (typeof args[n] !== 'string' || !args[n])) bad(n, 'a non-empty string', n === 'hubToken' ? '(hidden)' : args[n]);
  for (const n of ['loadBestModelAtEnd', 'evalOnStart', 'loggingFirstStep', 'restoreCallbackStatesFromCheckpoint', 'pushToHub', 'hubPrivateRepo'] as const) if (typeof args[n] !== 'boolean') bad(n, 'true or false', args[n]);
  if (args.metricForBestModel !== null && (typeof args.metricForBestModel !== 'string' || !args.metricForBestModel)) bad('metricForBestModel', 'a metric name', args.metricForBestModel);
  if (args.greaterIsBetter !== null && typeof args.greaterIsBetter !== 'boolean') bad('greaterIsBetter', 'true or false', args.greaterIsBetter);
  // As TrainingArguments.__post_init__: the best model needs a checkpoint at every evaluation.
  if (args.loadBestModelAtEnd) {
    if (args.evalStrategy === 'no' || args.saveStrategy !== args.evalStrategy)
      bad('saveStrategy', `the same as ${nameOf('evalStrategy')} (not "no") with ${nameOf('loadBestModelAtEnd')}`, args.saveStrategy);
    if (args.evalStrategy === 'steps' && args.saveSteps % (args.evalSteps ?? args.loggingSteps) !== 0)
      bad('saveSteps', `a multiple of the evaluation steps (${args.evalSteps ?? args.loggingSteps}) with ${nameOf('loadBestModelAtEnd')}`, args.saveSteps);
    args.metricForBestModel ??= 'loss';
  }
  if (args.metricForBestModel !== null && args.greaterIsBetter === null) args.greaterIsBetter = !args.metricForBestModel.endsWith('loss');
  return args;
}

/** lrSchedulerKwargs checked against what `kind` takes, as transformers' schedule functions check theirs. */
function checkSchedulerKwargs(kind: LrScheduler, kw: unknown, bad: (want: string, v: unknown) => never): void {
  if (typeof kw !== 'object' || kw === null || Array.isArray(kw)) bad('a JSON object', kw);
  const o = kw as LrSchedulerKwargs, allowed = LR_SCHEDULER_KWARGS[kind];
  for (const [k, v] of Object.entries(o)) {
    if (!allowed.includes(k)) bad(`keys of the ${kind} schedule (${allowed.join(', ') || 'none'})`, o);
    const choice = k === 'warmup_type' || k === 'decay_type';
    if (choice ? !['linear', 'cosine', '1-sqrt'].includes(v as string) : !(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      bad(choice ? `${k} one of linear, cosine, 1-sqrt` : `${k} a finite number >= 0`, o);
  }
  if (kind === 'cosine_with_min_lr' && (o.min_lr === undefined) === (o.min_lr_rate === undefined)) bad('exactly one of min_lr, min_lr_rate for cosine_with_min_lr', o);
  if (kind === 'warmup_stable_decay' && !Number.isInteger(o.num_decay_steps)) bad('num_decay_steps, an integer, for warmup_stable_decay', o);
}

/** optimArgs ("momentum=0.9,x=y") as [key, value] pairs, as the Trainer splits optim_args. */
export function optimArgPairs(optimArgs: string): string[][] {
  return optimArgs.split(',').map((kv) => kv.split('=').map((x) => x.trim()));
}

/**
 * training_args.json: the arguments, with the Hub token masked as transformers masks it, and the number of processes
 * that trained (a resume checks it: steps count global batches).
 */
export function argsJson(args: TrainingArguments, worldSize: number): string {
  return JSON.stringify({ ...args, hubToken: args.hubToken === null ? null : '<HUB_TOKEN>', worldSize }, null, 2) + '\n';
}
