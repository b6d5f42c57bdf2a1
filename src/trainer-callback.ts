// The loop's state and its hooks, as transformers' trainer_callback.py: TrainerState (trainer_state.json),
// TrainerControl, TrainerCallback, and EarlyStoppingCallback.
import type { TrainingArguments } from './training-args.js';
import { show, UsageError } from './errors.js';

export type LogEntry = Record<string, number>;

/**
 * What callbacks can ask of the loop (TrainerControl): set in onStepEnd (or any hook), acted on after that step
 * besides what the strategies schedule, then cleared once done (as transformers' callback handler clears them).
 */
export interface TrainerControl { shouldTrainingStop: boolean; shouldLog: boolean; shouldEvaluate: boolean; shouldSave: boolean }

/** Hooks into the loop, as transformers' TrainerCallback (the subset this Trainer has). */
export interface TrainerCallback {
  /** When training starts (after a resume's state is loaded) and when it ends, whichever way it ends. */
  onTrainBegin?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl): void;
  onTrainEnd?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl): void;
  /** Before each optimizer step's forward passes; onStepEnd after its update (before that step's log, evaluation and save). */
  onStepBegin?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl): void;
  onStepEnd?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl): void;
  onLog?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl, logs: LogEntry): void;
  onEvaluate?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl, metrics: LogEntry): void;
  onSave?(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl, checkpoint: string): void;
  /** As transformers' ExportableState: what trainer_state.json's stateful_callbacks keeps of this callback. */
  exportState?(): { name: string; args: Record<string, unknown>; attributes: Record<string, unknown> };
  /** Takes back exportState()'s attributes on a resume (restoreCallbackStatesFromCheckpoint). */
  restoreState?(attributes: Record<string, unknown>): void;
}

/** The metric key metricForBestModel names in evaluation results ("f1" -> "eval_f1"). */
export function metricKey(name: string): string { return name.startsWith('eval_') ? name : `eval_${name}`; }
/** Whether `value` beats `best` in the direction greaterIsBetter says. */
export function improves(args: TrainingArguments, value: number, best: number): boolean { return args.greaterIsBetter ? value > best : value < best; }

/**
 * transformers' EarlyStoppingCallback: stop when metricForBestModel has not improved on the best so far (by more
 * than `threshold`) for `patience` evaluations in a row. Needs loadBestModelAtEnd, as there.
 */
export class EarlyStoppingCallback implements TrainerCallback {
  private counter = 0;
  constructor(readonly patience = 1, readonly threshold = 0) {
    if (!Number.isInteger(patience) || patience < 1) throw new UsageError(`early stopping patience must be an integer >= 1, got ${show(patience)}`);
    if (!(threshold >= 0)) throw new UsageError(`early stopping threshold must be >= 0, got ${show(threshold)}`);
  }
  exportState() {
    return { name: 'EarlyStoppingCallback', args: { early_stopping_patience: this.patience, early_stopping_threshold: this.threshold },
      attributes: { early_stopping_patience_counter: this.counter } };
  }
  restoreState(attributes: Record<string, unknown>) {
    const c = attributes.early_stopping_patience_counter;
    if (Number.isInteger(c) && (c as number) >= 0) this.counter = c as number;
  }
  onEvaluate(args: TrainingArguments, state: Readonly<TrainerState>, control: TrainerControl, metrics: LogEntry) {
    const value = metrics[metricKey(args.metricForBestModel!)];
    if (value === undefined) return;
    if (state.best_metric === null || (improves(args, value, state.best_metric) && Math.abs(value - state.best_metric) > this.threshold)) this.counter = 0;
    else this.counter++;
    if (this.counter >= this.patience) control.shouldTrainingStop = true;
  }
}

export interface TrainerState {
  global_step: number;
  epoch: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  eval_steps: number | null;
  save_steps: number;
  train_batch_size: number;
  total_flos: number;
  log_history: LogEntry[];
  best_metric: number | null;
  best_global_step: number | null;
  best_model_checkpoint: string | null;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  trial_name: null;
  trial_params: null;
  stateful_callbacks: Record<string, unknown>;
}

