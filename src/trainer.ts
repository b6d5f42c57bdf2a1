// The Hugging Face Trainer's loop, readable top to bottom: epochs of shuffled, dynamically padded batches;
// gradient accumulation; clip + AdamW + LR schedule per optimizer step; logging, evaluation and checkpoints on
// the TrainingArguments schedule; resume from a checkpoint; AbortSignal to stop cleanly after the current step.
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { batches, collate, lengthGroupedOrder, mulberry32, shuffledOrder } from './collator.js';
import type { Batch } from './model.js';
import { type BertPreTrainedModel, OPTIMIZER_DEFAULTS } from './model.js';
import type { BertTokenizer } from './tokenizer.js';
import { exampleCount, hasLabels, type TokenizedDataset } from './data.js';
import { nerMetrics } from './seqeval.js';
import { exists, readJson, writeFileAtomic } from './fsutil.js';
import { readSafetensors } from './safetensors.js';
import { defaultLoggingDir, TensorBoardCallback } from './tensorboard.js';
import { glueMetric } from './metrics.js';
import { checkFits, maxSequenceLength } from './config.js';
import { InputError, show, UsageError } from './errors.js';
import { type DistributedContext, shardBatches } from './distributed.js';
import { modelCard, pushFolder, requireHubToken, resolveRepoId } from './push.js';
import { argsJson, optimArgPairs, type TrainingArguments, validateArgs } from './training-args.js';
import { EarlyStoppingCallback, improves, type LogEntry, metricKey, type TrainerCallback, type TrainerControl, type TrainerState } from './trainer-callback.js';
import { lrLambda } from './optimization.js';
import { addon } from './native.js';
import { isOffline } from './hub.js';

export interface TrainerEvents {
  log?: (entry: LogEntry) => void;
  progress?: (p: { step: number; maxSteps: number; epoch: number; stepMs: number }) => void;
  evaluate?: (metrics: LogEntry) => void;
  save?: (checkpointDir: string) => void;
  warning?: (message: string) => void;
}


export interface TrainOutput {
  globalStep: number;
  trainingLoss: number;
  metrics: LogEntry;
  /** True when the AbortSignal stopped the run (a checkpoint was saved). */
  interrupted: boolean;
}

/** What computeMetrics gets (transformers' EvalPrediction): per example, or per token for token classification. */
export interface EvalPrediction {
  predictions: Int32Array | Float32Array;
  /** The labels, aligned with predictions (token classification: -100 where a token is not scored); none for
   * question answering's validation windows, which are scored against their examples. */
  labelIds: Int32Array | Float32Array | null;
  dataset: TokenizedDataset;
}

export interface TrainerOptions {
  model: BertPreTrainedModel;
  args?: Partial<TrainingArguments>;
  trainDataset?: TokenizedDataset;
  evalDataset?: TokenizedDataset;
  tokenizer?: BertTokenizer;
  /** GLUE task name for evaluate.load("glue", task)-style metrics; without it: accuracy (+ f1 for 2 classes). */
  task?: string;
  /**
   * As the Trainer's compute_metrics: the metrics of an evaluation from its predictions (argmax of the logits;
   * regression: the scores) and labels. Defaults: GLUE's metric for sequence classification, seqeval's entity-level
   * precision, recall, F1 and accuracy for token classification.
   */
  computeMetrics?: (p: EvalPrediction) => Record<string, number>;
  /**
   * As the Trainer's data_collator, after padding: makes a batch's model inputs and labels (DataCollatorForLanguage
   * Modeling's masking, maskTokens). `rng` is seeded by the seed, the epoch and the batch, so a resumed run masks
   * as the uninterrupted one, and every evaluation masks alike.
   */
  dataCollator?: (batch: Batch, rng: () => number, from: { rows: ArrayLike<number>; dataset: TokenizedDataset }) => Batch;
  events?: TrainerEvents;
  signal?: AbortSignal;
  callbacks?: TrainerCallback[];
  /**
   * Data parallelism (DistributedContext.init): every rank runs the same Trainer on its shard of each epoch's
   * order, gradients are all-reduced as DDP does, evaluation is sharded and gathered, and only rank 0 logs and
   * writes files (events fire on rank 0 only).
   */
  distributed?: DistributedContext;
}

/** With onNonFiniteLoss 'skip': this many skipped steps in a row stop the run as diverged. */
export const MAX_SKIPPED_IN_A_ROW = 10;

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** TrainerOptions.events as one more callback: progress with the step's wall time, logs, evaluations, saves. */
class EventsCallback implements TrainerCallback {
  private stepStart = 0;
  constructor(private readonly events: TrainerEvents) {}
  onStepBegin() { this.stepStart = performance.now(); }
  onStepEnd(_args: TrainingArguments, state: Readonly<TrainerState>) {
    this.events.progress?.({ step: state.global_step, maxSteps: state.max_steps, epoch: state.epoch, stepMs: performance.now() - this.stepStart });
  }
  onLog(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, entry: LogEntry) { this.events.log?.(entry); }
  onEvaluate(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, metrics: LogEntry) { this.events.evaluate?.(metrics); }
  onSave(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, dir: string) { this.events.save?.(dir); }
}


export class Trainer {
  readonly args: TrainingArguments;
  readonly model: BertPreTrainedModel;
  private state!: TrainerState;
  private training = false;

  constructor(private readonly o: TrainerOptions) {
    this.model = o.model;
    this.args = validateArgs(o.args ?? {});
    this.eventsCallback = new EventsCallback(o.events ?? {});
    if (o.callbacks?.some((c) => c instanceof EarlyStoppingCallback) && !this.args.loadBestModelAtEnd)
      throw new UsageError('early stopping needs loadBestModelAtEnd (--load-best-model-at-end), with evaluations and checkpoints at the same steps');
    if (this.args.pushToHub) requireHubToken({ token: this.args.hubToken ?? undefined });
    if (this.args.pushToHub && isOffline())
      throw new UsageError('--push-to-hub cannot upload with HF_HUB_OFFLINE=1 set (offline mode makes no requests)');
    if (this.args.labelSmoothingFactor > 0 && o.model.problemType !== 'single_label_classification')
      throw new UsageError(`labelSmoothingFactor (--label-smoothing-factor) applies to single-label classification; this model is ${o.model.problemType}`);
    const maxPos = maxSequenceLength(o.model.config);
    if (this.args.padToMultipleOf !== null && this.args.padToMultipleOf > maxPos)
      throw new UsageError(`padToMultipleOf (--pad-to-multiple-of) is ${this.args.padToMultipleOf}, more than the model's longest input (${maxPos} positions): no padded batch would fit`);
    // Checked here, not when a batch first meets such an id (possibly an epoch later).
    const tok = o.tokenizer;
    if (tok && tok.idLimit > o.model.config.vocab_size)
      throw new InputError(tok.source, `the tokenizer produces ids up to ${tok.idLimit - 1}, but the model's config.json has vocab_size ${o.model.config.vocab_size}: they do not belong together`);
  }

  /** trainer_state.json's content (log_history and counters) of the last train() call. */
  get trainerState(): Readonly<TrainerState> | undefined { return this.state; }

  private control: TrainerControl | undefined;

  /** As _determine_best_metric: a new best value of metricForBestModel records the step it was reached at. */
  private updateBest(metrics: LogEntry) {
    const key = metricKey(this.args.metricForBestModel!);
    const value = metrics[key];
    if (value === undefined)
      throw new UsageError(`metricForBestModel: the evaluation has no ${key}; it has ${Object.keys(metrics).filter((k) => k.startsWith('eval_')).join(', ')}`);
    const best = this.state.best_metric ?? (this.args.greaterIsBetter ? -Infinity : Infinity);
    if (improves(this.args, value, best)) {
      this.state.best_metric = value;
      this.state.best_global_step = this.state.global_step;
    }
  }

  private emitLog(entry: LogEntry) {
    this.state.log_history.push(entry);
    for (const c of this.callbacks) c.onLog?.(this.args, this.state, this.control ?? idleControl(), entry);
  }

  /**
   * The user's callbacks, then those report_to adds for this run (TensorBoard), then `events` (rank 0's), as the
   * Trainer's callback handler: the loop reports through this one interface.
   */
  private get callbacks(): TrainerCallback[] {
    return [...(this.o.callbacks ?? []), ...this.reporters, ...(this.isMain && this.o.events ? [this.eventsCallback] : [])];
  }
  private reporters: TrainerCallback[] = [];
  private readonly eventsCallback: EventsCallback;

  /** Progress, log and save events: every process's in a single-process run, rank 0's only under data parallelism. */
  private get events(): TrainerEvents | undefined { return this.isMain ? this.o.events : undefined; }
  /** The process that logs and writes files (rank 0; the only one without data parallelism). */
  private get isMain(): boolean { return this.o.distributed?.isMain ?? true; }

  /** Whose dropout state a checkpoint file holds: undefined (rng_state) in a single process, else this rank. */
  private get rngRank(): number | undefined { const d = this.o.distributed; return d && d.worldSize > 1 ? d.rank : undefined; }

  /** The model's mixed precision in this trainer's training and evaluation. */
  private get precision(): 'no' | 'bf16' { return this.args.bf16 ? 'bf16' : 'no'; }

  private padId(): number { return this.o.tokenizer?.padId ?? 0; }

  async train(o: { resumeFromCheckpoint?: string } = {}): Promise<TrainOutput> {
    // Two loops on one model would mix their gradients: the second call is refused, not queued.
    if (this.training) throw new Error('train() is already running on this Trainer; await it before calling train() again');
    this.training = true;
    try {
      return await this.trainLoop(o);
    } finally {
      this.training = false;
      if (this.state) for (const c of this.callbacks) c.onTrainEnd?.(this.args, this.state, this.control ?? idleControl());
      this.reporters = [];
    }
  }

  private async trainLoop(o: { resumeFromCheckpoint?: string }): Promise<TrainOutput> {
    const { args, model } = this;
    const data = this.o.trainDataset;
    if (!data) throw new UsageError('train() needs a trainDataset');
    if (!hasLabels(data) && !this.o.dataCollator) throw new UsageError('the training dataset has no labels');
    // The weights are in memory already; gradients and AdamW's two moments take three times as much again.
    checkFits(model.config, "the model's config.json", 12, "training's gradients and optimizer state");
    const bs = args.perDeviceTrainBatchSize, accum = args.gradientAccumulationSteps;
    // Under data parallelism each rank takes every worldSize-th batch: an epoch has that many fewer steps.
    const dist = this.o.distributed, world = dist?.worldSize ?? 1, rank = dist?.rank ?? 0;
    const examples = exampleCount(data);
    const allBatches = args.dataloaderDropLast ? Math.floor(examples / bs) : Math.ceil(examples / bs);
    if (allBatches === 0) throw new UsageError(`the training dataset has ${examples} rows, fewer than one batch of ${bs}`);
    const batchesPerEpoch = Math.ceil(allBatches / world);
    const stepsPerEpoch = Math.max(1, Math.ceil(batchesPerEpoch / accum));
    const maxSteps = args.maxSteps > 0 ? args.maxSteps : Math.ceil(args.numTrainEpochs * stepsPerEpoch);
    const numEpochs = args.maxSteps > 0 ? Math.ceil(maxSteps / stepsPerEpoch) : Math.ceil(args.numTrainEpochs);
    const warmup = args.warmupSteps > 0 ? args.warmupSteps : Math.ceil(args.warmupRatio * maxSteps);
    const momentumArg = args.optimArgs ? optimArgPairs(args.optimArgs).find(([k]) => k === 'momentum') : undefined;
    const momentum = momentumArg ? Number(momentumArg[1]) : OPTIMIZER_DEFAULTS.momentum;
    const evalEvery = args.evalStrategy === 'steps' ? (args.evalSteps ?? args.loggingSteps) : 0;
    this.state = {
      global_step: 0, epoch: 0, max_steps: maxSteps, num_train_epochs: numEpochs, logging_steps: args.loggingSteps,
      eval_steps: args.evalStrategy === 'steps' ? evalEvery : null, save_steps: args.saveSteps, train_batch_size: bs,
      total_flos: 0, log_history: [], best_metric: null, best_global_step: null, best_model_checkpoint: null,
      is_local_process_zero: (dist?.localRank ?? 0) === 0, is_world_process_zero: this.isMain, trial_name: null, trial_params: null,
      stateful_callbacks: { TrainerControl: { args: { should_training_stop: false, should_epoch_stop: false, should_save: true, should_evaluate: false, should_log: false }, attributes: {} } },
    };
    this.resumedLoggingDir = undefined;
    await model.seed(args.seed);
    await model.setMixedPrecision(this.precision);
    await model.setLabelSmoothing(args.labelSmoothingFactor);
    await model.setOptimizer({ optim: args.optim, beta1: args.adamBeta1, beta2: args.adamBeta2, eps: args.adamEpsilon, weightDecay: args.weightDecay, momentum, maxGradNorm: args.maxGradNorm });
    if (o.resumeFromCheckpoint) {
      await this.resume(o.resumeFromCheckpoint);
      // Not an error: resuming a run whose last checkpoint is its final step completes a cut-short final save.
      if (this.state.global_step >= maxSteps)
        this.events?.warning?.(`${o.resumeFromCheckpoint} is at step ${this.state.global_step} and this run ends at step ${maxSteps}: nothing is left to train, ` +
          'so the model stays as the checkpoint has it (raise numTrainEpochs / --epochs or maxSteps / --max-steps to train further); training_loss is NaN');
    }
    // As wrapping the model in DistributedDataParallel: after a resume's load, rank 0's weights go to every rank.
    if (dist) await model.distribute(dist);
    if (args.reportTo.includes('tensorboard') && this.isMain) {
      // report_to: the TensorBoard callback joins this run's callbacks (rank 0 only).
      args.loggingDir ??= this.resumedLoggingDir ?? defaultLoggingDir(args.outputDir);
      this.reporters = [new TensorBoardCallback({ worldSize: world, modelConfig: model.config, resumed: o.resumeFromCheckpoint !== undefined })];
    }
    const control = idleControl();
    this.control = control;
    for (const c of this.callbacks) c.onTrainBegin?.(args, this.state, control);
    if (args.evalOnStart && this.o.evalDataset) await this.evaluate(this.o.evalDataset, 'eval', true);  // as eval_on_start: a baseline at the start step
    Object.assign(control, idleControl());  // what callbacks asked for before the first step is not acted on
    const start = performance.now();
    const flopsPerToken = 6 * model.nonEmbeddingParameters;
    let lossSinceLog = 0, stepsSinceLog = 0, totalLoss = 0, totalLossSteps = 0, lastGradNorm = NaN, samples = 0;
    let interrupted = false, skippedInARow = 0;
    const startStep = this.state.global_step;

    outer:
    for (let epoch = Math.floor(startStep / stepsPerEpoch); epoch < numEpochs; epoch++) {
      const order = args.groupByLength && !data.numChoices ? lengthGroupedOrder(data.enc, bs, args.seed, epoch) : shuffledOrder(examples, args.seed, epoch);
      const epochBatches = shardBatches(batches(order, bs, args.dataloaderDropLast), order, bs, rank, world);
      const skipSteps = epoch === Math.floor(startStep / stepsPerEpoch) ? startStep - epoch * stepsPerEpoch : 0;
      for (let s = skipSteps; s < stepsPerEpoch && this.state.global_step < maxSteps; s++) {
        for (const c of this.callbacks) c.onStepBegin?.(args, this.state, control);
        const micro = epochBatches.slice(s * accum, (s + 1) * accum);
        // As the Trainer: a last, partial accumulation step averages over the batches it has, not over `accum`.
        const lossScale = 1 / micro.length;
        let stepLoss = 0, stepFlos = 0;
        for (const [k, rows] of micro.entries()) {
          samples += rows.length * world;
          let batch = collate(data.enc, rows, { padId: this.padId(), padToMultipleOf: args.padToMultipleOf ?? undefined, labels: data.labels, tokenLabels: data.tokenLabels, positions: data.positions, numChoices: data.numChoices });
          if (this.o.dataCollator) batch = this.o.dataCollator(batch, mulberry32(args.seed + 0x9e3779b1 * (epoch + 1) + 7919 * ((s * accum + k) * world + rank)), { rows, dataset: data });
          // Gradients are all-reduced on the step's last micro-batch only (DDP's no_sync before it).
          const loss = await model.trainStep(batch, { lossScale, sync: k === micro.length - 1 })
            .catch((e) => { throw dist && (e as Error).name !== 'UserError' && /gloo|nccl|c10d|connection|timed? ?out/i.test((e as Error).message) ? dist.collectiveError(e) : e; });
          stepLoss += loss * lossScale;
          stepFlos += flopsPerToken * batch.shape[0] * batch.shape[1];
        }
        let aborted = this.o.signal?.aborted ?? false;
        if (dist) {
          // Every rank decides alike: on the mean loss over ranks (what is logged, as the Trainer gathers it), the
          // FLOPs of all ranks, and an interrupt any rank received.
          const v = await dist.allReduce(Float64Array.of(stepLoss, stepFlos, aborted ? 1 : 0));
          stepLoss = v[0] / world; stepFlos = v[1]; aborted = v[2] > 0;
        }
        this.state.total_flos += stepFlos;
        const step = this.state.global_step;
        if (!Number.isFinite(stepLoss)) {
          if (args.onNonFiniteLoss === 'stop')
            throw new Error(`training loss is ${stepLoss} at step ${step + 1} (epoch ${epoch + 1}); stopped before the update. ` +
              'Lower the learning rate, check the data, or pass onNonFiniteLoss: "skip" (--on-non-finite-loss skip) to drop such steps');
          this.events?.warning?.(`training loss is ${stepLoss} at step ${step + 1}; the update was skipped`);
          await model.zeroGrad();
          // Skipping is for the odd bad batch; a run that keeps producing them has diverged and must not end as a success.
          if (++skippedInARow >= MAX_SKIPPED_IN_A_ROW)
            throw new Error(`training loss was not finite for ${skippedInARow} steps in a row (last: step ${step + 1}, epoch ${epoch + 1}): the run has diverged; ` +
              'lower the learning rate or check the data');
        } else {
          const lr = args.learningRate * lrLambda(args.lrSchedulerType, step, warmup, maxSteps, args.learningRate, args.lrSchedulerKwargs);
          lastGradNorm = await model.optimizerStep({ lr });
          lossSinceLog += stepLoss; stepsSinceLog++; totalLoss += stepLoss; totalLossSteps++; skippedInARow = 0;
        }
        this.state.global_step = step + 1;
        this.state.epoch = epoch + (s + 1) / stepsPerEpoch;
        const gs = this.state.global_step;

        for (const c of this.callbacks) c.onStepEnd?.(args, this.state, control);
        if ((gs % args.loggingSteps === 0 || (gs === 1 && args.loggingFirstStep) || control.shouldLog) && stepsSinceLog > 0) {
          this.emitLog({ loss: round4(lossSinceLog / stepsSinceLog), grad_norm: lastGradNorm,
            learning_rate: args.learningRate * lrLambda(args.lrSchedulerType, gs, warmup, maxSteps, args.learningRate, args.lrSchedulerKwargs), epoch: this.state.epoch, step: gs });
          lossSinceLog = 0; stepsSinceLog = 0;
        }
        control.shouldLog = false;
        const endOfEpoch = s === stepsPerEpoch - 1 || gs === maxSteps;
        // As DefaultFlowCallback: every eval_steps, at each epoch end, and at the last step for the steps strategy.
        if (this.o.evalDataset && ((evalEvery && (gs % evalEvery === 0 || gs === maxSteps)) || (args.evalStrategy === 'epoch' && endOfEpoch) || control.shouldEvaluate)) {
          const metrics = await this.evaluate(this.o.evalDataset, 'eval', !dist);  // an interrupt ends it early, unlogged; the checkpoint below follows
          if (args.metricForBestModel && Object.keys(metrics).length) this.updateBest(metrics);
        }
        control.shouldEvaluate = false;
        const saveNow = (args.saveStrategy === 'steps' && gs % args.saveSteps === 0) || (args.saveStrategy === 'epoch' && endOfEpoch) ||
          (args.saveStrategy !== 'no' && gs === maxSteps) || control.shouldSave;
        control.shouldSave = false;
        if (aborted || (!dist && this.o.signal?.aborted)) {  // (one process: also an interrupt during the evaluation)
          await this.saveCheckpoint();
          interrupted = true;
          break outer;
        }
        if (saveNow || (control.shouldTrainingStop && args.saveStrategy !== 'no')) await this.saveCheckpoint();
        if (control.shouldTrainingStop) break outer;
      }
    }
    // As _load_best_model: the weights of the best checkpoint, reported in the log.
    if (!interrupted && args.loadBestModelAtEnd && this.state.best_model_checkpoint) {
      await model.loadWeights(path.join(this.state.best_model_checkpoint, 'model.safetensors'));
      this.events?.warning?.(`loaded the best model from ${this.state.best_model_checkpoint} (${metricKey(args.metricForBestModel!)} ${this.state.best_metric})`);
    }
    const runtime = (performance.now() - start) / 1000;
    const trainedSteps = this.state.global_step - startStep;
    const trainingLoss = totalLossSteps ? totalLoss / totalLossSteps : NaN;
    const metrics: LogEntry = {
      train_runtime: Math.round(runtime * 1e4) / 1e4,
      train_samples_per_second: Math.round((samples / runtime) * 1e3) / 1e3,
      train_steps_per_second: Math.round((trainedSteps / runtime) * 1e3) / 1e3,
      total_flos: this.state.total_flos,
      train_loss: trainingLoss,
      epoch: this.state.epoch,
    };
    this.emitLog({ ...metrics, step: this.state.global_step });
    return { globalStep: this.state.global_step, trainingLoss, metrics, interrupted };
  }

  /** Eval loss (batch-size weighted, as the Trainer computes it) and metrics, prefixed eval_. */
  async evaluate(dataset = this.o.evalDataset, prefix = 'eval', stopOnAbort = false): Promise<LogEntry> {
    if (!dataset) throw new UsageError('evaluate() needs an evalDataset');
    const start = performance.now();
    const inf = await this.runInference(dataset, stopOnAbort);
    if (!inf) return {};
    const { logits, lossSum, count, steps } = inf;
    const runtime = (performance.now() - start) / 1000;
    const out: LogEntry = {};
    // Without labels (question answering's validation windows) the loss is not there, but computeMetrics can score
    // the predictions against the examples (run_qa's post-processing).
    if (hasLabels(dataset) || this.o.dataCollator) out[`${prefix}_loss`] = lossSum / count;
    if (hasLabels(dataset) || this.o.dataCollator || this.o.computeMetrics) {
      const m = this.computeMetrics(logits, dataset, inf.maskedAccuracy);
      for (const [k, v] of Object.entries(m)) out[`${prefix}_${k}`] = v;
    }
    out[`${prefix}_runtime`] = Math.round(runtime * 1e4) / 1e4;
    out[`${prefix}_samples_per_second`] = Math.round((exampleCount(dataset) / runtime) * 1e3) / 1e3;
    out[`${prefix}_steps_per_second`] = Math.round((steps / runtime) * 1e3) / 1e3;
    if (this.state) {
      out.epoch = this.state.epoch;
      out.step = this.state.global_step;
      this.emitLog(out);
    }
    if (this.training && this.control) for (const c of this.callbacks) c.onEvaluate?.(this.args, this.state, this.control, out);
    else this.events?.evaluate?.(out);  // evaluate() outside train(): no loop, no callbacks
    return out;
  }

  /** Logits for every row (row-major [n, numLabels]), plus metrics when the dataset has labels. */
  async predict(dataset: TokenizedDataset): Promise<{ logits: Float32Array; predictions: Float32Array | Int32Array; metrics: LogEntry }> {
    const inf = (await this.runInference(dataset))!;
    const { logits, lossSum, count } = inf;
    const metrics: LogEntry = {};
    if (hasLabels(dataset) || this.o.dataCollator) {
      metrics.test_loss = lossSum / count;
      for (const [k, v] of Object.entries(this.computeMetrics(logits, dataset, inf.maskedAccuracy))) metrics[`test_${k}`] = v;
    }
    return { logits, predictions: this.predictionsOf(logits, dataset), metrics };
  }

  /**
   * null when `stopOnAbort` and the signal fired between batches (an interrupt during evaluation in training).
   * Under data parallelism rank r runs batches r, r + worldSize, ... and one all-reduce gathers every rank's
   * logits and per-batch losses into place (each slot is written by one rank, the others add zeros), so the
   * metrics and the loss, summed in batch order, equal a single process's exactly.
   */
  private async runInference(dataset: TokenizedDataset, stopOnAbort = false) {
    await this.model.setMixedPrecision(this.precision);
    await this.model.setLabelSmoothing(this.args.labelSmoothingFactor);  // the Trainer's eval loss is smoothed too
    const dist = this.o.distributed, world = dist?.worldSize ?? 1, rank = dist?.rank ?? 0;
    const nl = dataset.numChoices ?? this.model.numLabels, bs = this.args.perDeviceEvalBatchSize;
    // Per example, or per token aligned with enc.ids (token classification: numLabels per token; question
    // answering: [start, end] per token).
    const perToken = this.model.head === 'TokenClassification' || this.model.head === 'QuestionAnswering';
    // Masked LM: the logits of the masked positions only ([masked, vocab]), scored as they come (run_mlm's accuracy).
    const masked = this.model.head === 'MaskedLM';
    const logits = new Float32Array(masked ? 0 : (perToken ? dataset.enc.ids.length : exampleCount(dataset)) * nl);
    const order = Int32Array.from({ length: exampleCount(dataset) }, (_, i) => i);
    const all = batches(order, bs);
    const batchLoss = new Float64Array(all.length), batchCount = new Float64Array(all.length);
    const maskedRight = new Float64Array(all.length), maskedCount = new Float64Array(all.length);
    let steps = 0;
    for (let i = rank; i < all.length; i += world) {
      if (stopOnAbort && this.o.signal?.aborted) return null;
      const rows = all[i];
      let batch = collate(dataset.enc, rows, { padId: this.padId(), padToMultipleOf: this.args.padToMultipleOf ?? undefined, labels: dataset.labels, tokenLabels: dataset.tokenLabels, positions: dataset.positions, numChoices: dataset.numChoices });
      if (this.o.dataCollator) batch = this.o.dataCollator(batch, mulberry32(this.args.seed + 104729 * i), { rows, dataset });
      const out = await this.model.forward(batch);
      if (masked) {
        const y = (batch.labels as Int32Array).filter((v) => v !== -100), V = out.logits!.length / Math.max(1, y.length);
        y.forEach((label, m) => {
          let best = 0;
          for (let v = 1; v < V; v++) if (out.logits![m * V + v] > out.logits![m * V + best]) best = v;
          if (best === label) maskedRight[i]++;
        });
        maskedCount[i] = y.length;
      } else if (this.model.head === 'QuestionAnswering') {
        const seq = batch.shape[1], o = dataset.enc.offsets;
        rows.forEach((r, k) => {
          for (let t = 0; t < o[r + 1] - o[r]; t++) {
            logits[2 * (o[r] + t)] = out.startLogits![k * seq + t];
            logits[2 * (o[r] + t) + 1] = out.endLogits![k * seq + t];
          }
        });
      } else if (perToken) {
        const seq = batch.shape[1], o = dataset.enc.offsets;
        rows.forEach((r, k) => logits.set(out.logits!.subarray(k * seq * nl, (k * seq + o[r + 1] - o[r]) * nl), o[r] * nl));
      } else {
        logits.set(out.logits!, rows[0] * nl);
      }
      if (out.loss !== undefined) { batchLoss[i] = out.loss * rows.length; batchCount[i] = rows.length; }
      steps++;
    }
    if (dist) {
      const n = all.length, buf = new Float64Array(logits.length + 4 * n);
      buf.set(logits);
      [batchLoss, batchCount, maskedRight, maskedCount].forEach((a, k) => buf.set(a, logits.length + k * n));
      await dist.allReduce(buf);
      logits.set(buf.subarray(0, logits.length));
      [batchLoss, batchCount, maskedRight, maskedCount].forEach((a, k) => a.set(buf.subarray(logits.length + k * n, logits.length + (k + 1) * n)));
    }
    let lossSum = 0, count = 0, right = 0, scored = 0;
    for (let i = 0; i < all.length; i++) { lossSum += batchLoss[i]; count += batchCount[i]; right += maskedRight[i]; scored += maskedCount[i]; }
    return { logits, lossSum, count, steps, maskedAccuracy: masked ? right / scored : undefined };
  }

  private predictionsOf(logits: Float32Array, dataset?: TokenizedDataset): Float32Array | Int32Array {
    const nl = dataset?.numChoices ?? this.model.numLabels;
    // Regression's scores; question answering's [start, end] logits per token (post-processing reads them).
    if (this.model.problemType === 'regression' || this.model.head === 'QuestionAnswering') return logits.slice();
    const n = logits.length / nl;
    const pred = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < nl; j++) if (logits[i * nl + j] > logits[i * nl + best]) best = j;
      pred[i] = best;
    }
    return pred;
  }

  private computeMetrics(logits: Float32Array, dataset: TokenizedDataset, maskedAccuracy?: number): Record<string, number> {
    if (maskedAccuracy !== undefined) return { accuracy: maskedAccuracy };  // run_mlm.py's compute_metrics
    const p: EvalPrediction = { predictions: this.predictionsOf(logits, dataset), labelIds: dataset.tokenLabels ?? dataset.positions ?? dataset.labels, dataset };
    if (this.o.computeMetrics) return this.o.computeMetrics(p);
    if (dataset.tokenLabels) return nerMetrics(dataset.labelNames)(p);
    if (dataset.numChoices) return glueMetric('sst2', p.predictions, dataset.labels!);  // run_swag.py's accuracy
    const task = this.o.task ?? (dataset.isRegression ? 'stsb' : this.model.numLabels === 2 ? 'mrpc' : 'sst2');
    return glueMetric(task, p.predictions, dataset.labels!);
  }

  /**
   * checkpoint-<step>/ written into a temporary folder, then renamed: a checkpoint that exists is complete. Under
   * data parallelism rank 0 writes it; every other rank adds its own dropout state (rng_state_<rank>, as the
   * Trainer's rng_state_<rank>.pth) before the rename, and all ranks leave only once the folder is in place.
   */
  async saveCheckpoint(): Promise<string> {
    const dist = this.o.distributed;
    const dir = path.join(this.args.outputDir, `checkpoint-${this.state.global_step}`);
    const tmp = dist ? `${dir}.tmp-ddp` : `${dir}.tmp-${process.pid}`;
    if (this.state.best_global_step !== null) {
      const best = path.join(this.args.outputDir, `checkpoint-${this.state.best_global_step}`);
      if (this.state.best_global_step === this.state.global_step || await exists(best)) this.state.best_model_checkpoint = best;
    }
    for (const c of this.o.callbacks ?? []) {
      const st = c.exportState?.();
      if (st) this.state.stateful_callbacks[st.name] = { args: st.args, attributes: st.attributes };
    }
    if (this.isMain) await this.writeCheckpoint(tmp).catch(async (e) => {
      // A full disk (ENOSPC) or any failed write: the half-written folder goes now, not at the next run's start,
      // so the failed run does not leave the disk fuller than it found it.
      await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw e;
    });
    if (dist) {
      await dist.barrier();
      // A node that does not share rank 0's filesystem has no such folder: its ranks keep their state in their own
      // checkpoint folder of that name, as the Trainer's rng_state_<rank>.pth lands on each node.
      if (!this.isMain) {
        const into = (await exists(tmp)) ? tmp : dir;
        await fs.mkdir(into, { recursive: true });
        await this.model.saveRngState(path.join(into, rngStateFile(this.rngRank)));
      }
      await dist.barrier();
    }
    if (this.isMain) {
      await removeCheckpoint(dir);  // re-saving a step after a resume
      await fs.rename(tmp, dir);
      // hub_strategy every_save: each checkpoint's model goes up as it is saved; a failed upload is a warning (the
      // checkpoint is on disk, and the next save or the end tries again).
      if (this.args.pushToHub && this.args.hubStrategy === 'every_save')
        await this.pushToHub({ folder: dir, commitMessage: `Training in progress, step ${this.state.global_step}` })
          .catch((e) => this.events?.warning?.((e as Error).message));
    }
    if (this.control) for (const c of this.callbacks) c.onSave?.(this.args, this.state, this.control, dir);
    if (this.isMain) await this.rotateCheckpoints();
    if (dist) await dist.barrier();
    return dir;
  }

  /** One checkpoint's files, written into `tmp` (renamed to checkpoint-N once every rank has its part). */
  private async writeCheckpoint(tmp: string): Promise<void> {
    await fs.rm(tmp, { recursive: true, force: true });
    await this.model.save(tmp);
    await this.o.tokenizer?.save(tmp);
    await this.model.saveOptimizerState(path.join(tmp, 'optimizer.safetensors'));
    await writeFileAtomic(path.join(tmp, 'scheduler.json'), JSON.stringify({ last_epoch: this.state.global_step, type: this.args.lrSchedulerType }) + '\n');
    await this.model.saveRngState(path.join(tmp, rngStateFile(this.rngRank)));
    await writeFileAtomic(path.join(tmp, 'trainer_state.json'), JSON.stringify(this.state, null, 2) + '\n');
    await writeFileAtomic(path.join(tmp, 'training_args.json'), argsJson(this.args, this.o.distributed?.worldSize ?? 1));
  }

  /**
   * As Trainer.push_to_hub: writes the model card (README.md) into `folder` (default: outputDir, where the final
   * model was saved) and uploads the model, tokenizer, config, results and card in one commit. Rank 0 only.
   */
  async pushToHub(o: { folder?: string; commitMessage?: string; baseModel?: string } = {}): Promise<string | undefined> {
    if (!this.isMain) return undefined;
    const folder = o.folder ?? this.args.outputDir;
    const hub = { hubModelId: this.args.hubModelId ?? undefined, token: this.args.hubToken ?? undefined, private: this.args.hubPrivateRepo };
    this.hubRepo ??= await resolveRepoId(hub, this.args.outputDir);
    const baseModel = o.baseModel ?? this.baseModel ?? (this.model.config as { _name_or_path?: string })._name_or_path ?? 'bert-base-uncased';
    this.baseModel = baseModel;
    await writeFileAtomic(path.join(folder, 'README.md'), modelCard({ repo: this.hubRepo, baseModel, task: this.o.task, args: this.args,
      logHistory: this.state?.log_history ?? [], torchVersion: addon().runtime().torchVersion, packageVersion: PACKAGE_VERSION }));
    return pushFolder(folder, this.hubRepo, o.commitMessage ?? 'End of training', hub);
  }
  private hubRepo: string | undefined;
  private baseModel: string | undefined;

  /** As _rotate_checkpoints: the oldest beyond saveTotalLimit go, but never the best (moved next to the newest). */
  private async rotateCheckpoints() {
    if (!this.args.saveTotalLimit) return;
    const all = await listCheckpoints(this.args.outputDir);
    const best = this.state.best_model_checkpoint, i = best ? all.indexOf(best) : -1;
    if (i >= 0) for (let k = i; k < all.length - 2; k++) [all[k], all[k + 1]] = [all[k + 1], all[k]];
    const limit = best && this.args.saveTotalLimit === 1 && all[all.length - 1] !== best ? 2 : this.args.saveTotalLimit;
    for (const c of all.slice(0, Math.max(0, all.length - limit))) await removeCheckpoint(c);
  }

  /** The run folder a resumed checkpoint's TensorBoard logs went to, so the resumed run appends to the same run. */
  private resumedLoggingDir: string | undefined;

  private async resume(dir: string) {
    if (!(await exists(dir))) throw new InputError(dir, 'does not exist');
    const need = ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json'];
    for (const f of need) if (!(await exists(path.join(dir, f)))) throw new InputError(dir, `not a complete checkpoint (no ${f})`);
    // This rank's dropout state; a checkpoint of another world size has rng_state (or rng_state_0) only: its
    // generator continues, and dropout will not repeat the uninterrupted run.
    const candidates = [...new Set([rngStateFile(this.rngRank), rngStateFile(undefined), rngStateFile(0)])];
    let rngFile: string | undefined;
    for (const f of candidates) if (await exists(path.join(dir, f))) { rngFile = path.join(dir, f); break; }
    if (!rngFile) throw new InputError(dir, `not a complete checkpoint (no ${candidates[0]})`);
    if (path.basename(rngFile) !== candidates[0])
      this.events?.warning?.(`${dir} has no ${candidates[0]} (saved with another number of processes): ${path.basename(rngFile)} is used, and dropout will not repeat the uninterrupted run`);
    const st = (await readJson(path.join(dir, 'trainer_state.json'))) as Partial<TrainerState>;
    if (!Number.isInteger(st.global_step) || (st.global_step as number) < 0) throw new InputError(path.join(dir, 'trainer_state.json'), 'global_step is missing or invalid');
    await this.model.loadWeights(path.join(dir, 'model.safetensors'));
    await this.model.loadOptimizerState(path.join(dir, 'optimizer.safetensors'), this.args.optim);
    const rng = (await readSafetensors(rngFile)).tensors;
    if (!rng.some((t) => t.name === 'cpu')) throw new InputError(rngFile, 'no "cpu" generator state');
    if (this.model.device.startsWith('cuda') && !rng.some((t) => t.name === 'cuda'))
      this.events?.warning?.(`${rngFile} has no "cuda" generator state (saved on a CPU): dropout will not repeat the uninterrupted run`);
    await this.model.setRngState(rng).catch((e) => { throw new InputError(rngFile, (e as Error).message); });
    // The schedule continues from the checkpoint's step: scheduler.json must agree with trainer_state.json.
    const schedFile = path.join(dir, 'scheduler.json');
    if (await exists(schedFile)) {
      const sched = (await readJson(schedFile)) as { last_epoch?: unknown; type?: unknown };
      if (sched?.last_epoch !== st.global_step)
        throw new InputError(schedFile, `last_epoch ${show(sched?.last_epoch)} does not match trainer_state.json's global_step ${st.global_step}`);
      if (sched.type !== this.args.lrSchedulerType)
        this.events?.warning?.(`${schedFile}: the checkpoint's learning-rate schedule was ${show(sched.type)}, this run uses "${this.args.lrSchedulerType}"`);
    }
    // As the Trainer warns when the batch size changed: a resumed run with other hyperparameters is a different run.
    const argsFile = path.join(dir, 'training_args.json');
    if (await exists(argsFile)) {
      const saved = (await readJson(argsFile)) as Partial<TrainingArguments> & { worldSize?: unknown };
      // A step is one global batch of worldSize × batch × accumulation rows: with another number of processes the
      // checkpoint's step lands in another epoch, and the schedule would skip or repeat data. Refused, not guessed.
      const world = this.o.distributed?.worldSize ?? 1;
      if (typeof saved?.worldSize === 'number' && saved.worldSize !== world) {
        const rows = (n: number, a: Partial<TrainingArguments>) => n * (a.perDeviceTrainBatchSize ?? 0) * (a.gradientAccumulationSteps ?? 1);
        throw new UsageError(`${dir} was saved by a run of ${saved.worldSize} process${saved.worldSize === 1 ? '' : 'es'} (${rows(saved.worldSize, saved)} rows a step); ` +
          `this run has ${world} (${rows(world, this.args)} rows a step), so its steps and epochs would not line up with the checkpoint's. ` +
          `Resume with ${saved.worldSize === 1 ? 'one process (no --nproc-per-node)' : `--nproc-per-node ${saved.worldSize} (over all nodes)`}, or start a new run from its weights (--model ${dir})`);
      }
      const keys = ['perDeviceTrainBatchSize', 'gradientAccumulationSteps', 'learningRate', 'lrSchedulerType', 'warmupSteps', 'warmupRatio', 'weightDecay', 'maxGradNorm', 'seed'] as const;
      const changed = keys.filter((k) => saved?.[k] !== undefined && saved[k] !== this.args[k]);
      if (changed.length)
        this.events?.warning?.(`resuming from ${dir} with changed arguments: ${changed.map((k) => `${k} ${show(saved[k])} -> ${show(this.args[k])}`).join(', ')}; the run will not match the uninterrupted one`);
      if (typeof saved?.loggingDir === 'string' && saved.loggingDir) this.resumedLoggingDir = saved.loggingDir;
    }
    this.state.global_step = st.global_step!;
    this.state.epoch = st.epoch ?? 0;
    this.state.total_flos = st.total_flos ?? 0;
    this.state.log_history = Array.isArray(st.log_history) ? st.log_history : [];
    this.state.best_metric = typeof st.best_metric === 'number' ? st.best_metric : null;
    this.state.best_global_step = typeof st.best_global_step === 'number' ? st.best_global_step : null;
    this.state.best_model_checkpoint = typeof st.best_model_checkpoint === 'string' ? st.best_model_checkpoint : null;
    if (this.args.restoreCallbackStatesFromCheckpoint && st.stateful_callbacks && typeof st.stateful_callbacks === 'object')
      for (const c of this.o.callbacks ?? []) {
        const name = c.exportState?.().name, saved = name ? (st.stateful_callbacks as Record<string, { attributes?: Record<string, unknown> }>)[name] : undefined;
        if (saved?.attributes) c.restoreState?.(saved.attributes);
      }
  }
}

/** A TrainerControl asking for nothing (hooks outside the step loop). */
function idleControl(): TrainerControl { return { shouldTrainingStop: false, shouldLog: false, shouldEvaluate: false, shouldSave: false }; }

const PACKAGE_VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** A checkpoint's dropout-state file: rng_state, or rng_state_<rank> under data parallelism (as the Trainer names them). */
function rngStateFile(rank: number | undefined): string { return rank === undefined ? 'rng_state.safetensors' : `rng_state_${rank}.safetensors`; }

/**
 * Deletes a checkpoint without ever leaving a half-deleted folder under a checkpoint-N name (a kill during a
 * recursive delete would): renamed away atomically first, then removed.
 */
async function removeCheckpoint(dir: string): Promise<void> {
  const doomed = `${dir}.deleting-${process.pid}`;
  try {
    await fs.rename(dir, doomed);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  await fs.rm(doomed, { recursive: true, force: true });
}

/** checkpoint-N folders of an output dir, oldest (lowest N) first. */
export async function listCheckpoints(outputDir: string): Promise<string[]> {
  const names = await fs.readdir(outputDir).catch(() => [] as string[]);
  return names.filter((n) => /^checkpoint-\d+$/.test(n)).sort((a, b) => Number(a.split('-')[1]) - Number(b.split('-')[1])).map((n) => path.join(outputDir, n));
}
