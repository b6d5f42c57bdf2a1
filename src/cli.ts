// `node train.js`: the notebook's flow from the command line. Usage errors exit 2 with one line; runtime
// failures exit 1; Ctrl-C saves a checkpoint after the current step and exits 130.
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BertForSequenceClassification, type Device } from './model.js';
import { BertTokenizer } from './tokenizer.js';
import { loadDataFile, loadGlue, type TextDataset } from './datasets.js';
import { glueMetricNames, glueTask, GLUE_TASKS } from './glue.js';
import { tokenizeDataset } from './data.js';
import { DEFAULT_ARGS, listCheckpoints, Trainer, validateArgs, type LogEntry, type TrainingArguments } from './trainer.js';
import { UsageError } from './errors.js';
import { lockOutputDir, saveAsUnit, writeFileAtomic } from './fsutil.js';
import { addon } from './native.js';

type Out = (line: string) => void;

const common = {
  model: { type: 'string', default: 'bert-base-uncased', describe: 'Hub repo id or local checkpoint folder' },
  task: { type: 'string', describe: `GLUE task (${Object.keys(GLUE_TASKS).join(', ')}; default mrpc). With --train-file/--validation-file it sets ` +
    'the files\' label names, regression or not, and the metric; without it they come from the files (float labels: regression)' },
  'max-length': { type: 'number', describe: 'truncate to this many tokens (default: tokenizer model_max_length, capped by the model)' },
  'eval-batch-size': { type: 'number', default: DEFAULT_ARGS.perDeviceEvalBatchSize, describe: 'per_device_eval_batch_size' },
  device: { type: 'string', default: 'auto', describe: 'auto, cpu, cuda or cuda:N' },
  threads: { type: 'number', describe: 'libtorch intra-op threads (default: libtorch\'s choice)' },
  json: { type: 'boolean', default: false, describe: 'one JSON object per line instead of tables' },
  revision: { type: 'string', default: 'main', describe: 'Hub revision of the model' },
  bf16: { type: 'boolean', default: false, describe: 'bfloat16 autocast for forward passes (TrainingArguments bf16); weights and optimizer stay fp32' },
} as const;

/** What an interrupt does now: stop training and checkpoint, or (after training) let the final save finish. */
let phase: 'training' | 'final-save' = 'training';

export async function main(argv = hideBin(process.argv), out: Out = stdoutLine, err: Out = stderrLine): Promise<number> {
  let code = 0;
  const controller = new AbortController();
  // Ctrl-C, SIGTERM (timeout, docker stop, Kubernetes) and SIGHUP (a closed terminal) all ask for the same clean
  // stop. A process manager often forwards a signal the terminal also sends: one within a second of the first is
  // the same request; a later one quits at once.
  let first = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    const now = performance.now();
    if (first && now - first < 1000) return;
    if (first) process.exit(130);
    first = now;
    err(phase === 'training'
      ? `Interrupted (${sig}): finishing the current step and saving a checkpoint (Ctrl-C again to quit now)`
      : `Interrupted (${sig}): training is done; finishing the final save (Ctrl-C again to quit now)`);
    controller.abort();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    const parser = yargs(argv)
      .scriptName('node train.js')
      .usage('$0 [options]\n\nFine-tune a BERT model on a GLUE task (default: bert-base-uncased on MRPC), like the Hugging Face Trainer.')
      .command('$0', 'train (and evaluate every epoch)', (y) => y.options({
        ...common,
        'train-file': { type: 'string', describe: 'local training data (.parquet, .csv, .tsv, .jsonl) instead of GLUE' },
        'validation-file': { type: 'string', describe: 'local validation data' },
        'text-columns': { type: 'string', describe: 'comma-separated text column(s) of local files (default: inferred)' },
        'label-column': { type: 'string', describe: 'label column of local files (default: inferred)' },
        'output-dir': { type: 'string', default: DEFAULT_ARGS.outputDir },
        epochs: { type: 'number', default: DEFAULT_ARGS.numTrainEpochs, describe: 'num_train_epochs' },
        'learning-rate': { type: 'number', default: DEFAULT_ARGS.learningRate },
        'batch-size': { type: 'number', default: DEFAULT_ARGS.perDeviceTrainBatchSize, describe: 'per_device_train_batch_size' },
        'warmup-ratio': { type: 'number', default: DEFAULT_ARGS.warmupRatio },
        'warmup-steps': { type: 'number', default: DEFAULT_ARGS.warmupSteps },
        'lr-scheduler': { type: 'string', default: DEFAULT_ARGS.lrSchedulerType, choices: ['linear', 'cosine', 'constant'] },
        'weight-decay': { type: 'number', default: DEFAULT_ARGS.weightDecay },
        'max-grad-norm': { type: 'number', default: DEFAULT_ARGS.maxGradNorm },
        'gradient-accumulation-steps': { type: 'number', default: DEFAULT_ARGS.gradientAccumulationSteps },
        'max-steps': { type: 'number', default: DEFAULT_ARGS.maxSteps, describe: 'stop after this many optimizer steps (-1: use epochs)' },
        'eval-strategy': { type: 'string', default: DEFAULT_ARGS.evalStrategy, choices: ['no', 'steps', 'epoch'] },
        'eval-steps': { type: 'number', describe: 'with --eval-strategy steps (default: logging steps)' },
        'logging-steps': { type: 'number', default: DEFAULT_ARGS.loggingSteps },
        'save-steps': { type: 'number', default: DEFAULT_ARGS.saveSteps },
        'save-strategy': { type: 'string', default: DEFAULT_ARGS.saveStrategy, choices: ['no', 'steps', 'epoch'] },
        'save-total-limit': { type: 'number', describe: 'keep at most this many checkpoints' },
        seed: { type: 'number', default: DEFAULT_ARGS.seed },
        'group-by-length': { type: 'boolean', default: false },
        'pad-to-multiple-of': { type: 'number' },
        'resume-from-checkpoint': { type: 'string', describe: 'a checkpoint folder, or "latest" for the newest in --output-dir' },
        'on-non-finite-loss': { type: 'string', default: 'stop', choices: ['stop', 'skip'] },
      }), async (a) => { noRepeats(a); code = await train(a as never, out, err, controller.signal); })
      .command('predict', 'classify sentence pairs with a trained model (like a text-classification pipeline)', (y) => y.options({
        ...common,
        model: { ...common.model, default: DEFAULT_ARGS.outputDir },
        sentence1: { type: 'string', array: true, describe: 'first sentence(s)' },
        sentence2: { type: 'string', array: true, describe: 'second sentence(s), one per --sentence1' },
        file: { type: 'string', describe: 'a data file of rows to classify (.csv, .tsv, .jsonl, .parquet)' },
      }), async (a) => { noRepeats(a); code = await predict(a as never, out); })
      .command('evaluate', 'evaluate a model on a GLUE validation split or --validation-file', (y) => y.options({
        ...common,
        model: { ...common.model, default: DEFAULT_ARGS.outputDir },
        'validation-file': { type: 'string' },
        split: { type: 'string', describe: 'GLUE split (default: the task\'s validation split)' },
      }), async (a) => { noRepeats(a); code = await evaluate(a as never, out); })
      .strictOptions()
      .exitProcess(false)
      .fail((msg, e) => { throw e ?? new UsageError(msg); })
      .help()
      .version(false)
      .wrap(Math.min(110, process.stdout.columns || 110));
    await parser.parseAsync();
  } catch (e) {
    const ex = e as Error & { exitCode?: number };
    const line = `error: ${String(ex.message).trim().replace(/\s*\n\s*/g, ' ')}`;  // one line, whatever the source (yargs writes several)
    err(line);
    return ex.exitCode === 2 || ex.name === 'YError' || e instanceof TypeError || e instanceof RangeError ? 2 : 1;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
  return code;
}

// Output must never stop training: a closed stdout (`| head`) or stderr makes writes to it no-ops (EPIPE).
const closed = new Set<NodeJS.WriteStream>();
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => closed.add(stream));
function stdoutLine(line: string) { if (!closed.has(process.stdout)) process.stdout.write(line + '\n'); }
function stderrLine(line: string) { if (!closed.has(process.stderr)) process.stderr.write(line + '\n'); }

interface TrainFlags {
  model: string; task?: string; 'train-file'?: string; 'validation-file'?: string; 'text-columns'?: string; 'label-column'?: string;
  'output-dir': string; epochs: number; 'learning-rate': number; 'batch-size': number; 'eval-batch-size': number;
  'max-length'?: number; 'warmup-ratio': number; 'warmup-steps': number; 'lr-scheduler': string; 'weight-decay': number;
  'max-grad-norm': number; 'gradient-accumulation-steps': number; 'max-steps': number; 'eval-strategy': string;
  'eval-steps'?: number; 'logging-steps': number; 'save-steps': number; 'save-strategy': string; 'save-total-limit'?: number;
  seed: number; device: string; threads?: number; 'resume-from-checkpoint'?: string; json: boolean; revision: string;
  'group-by-length': boolean; 'pad-to-multiple-of'?: number; 'on-non-finite-loss': string; bf16: boolean;
}

const FLAG_OF: Record<string, string> = {
  outputDir: '--output-dir', numTrainEpochs: '--epochs', maxSteps: '--max-steps', learningRate: '--learning-rate',
  lrSchedulerType: '--lr-scheduler', warmupRatio: '--warmup-ratio', warmupSteps: '--warmup-steps', weightDecay: '--weight-decay',
  maxGradNorm: '--max-grad-norm', perDeviceTrainBatchSize: '--batch-size', perDeviceEvalBatchSize: '--eval-batch-size',
  gradientAccumulationSteps: '--gradient-accumulation-steps', evalStrategy: '--eval-strategy', evalSteps: '--eval-steps',
  loggingSteps: '--logging-steps', saveStrategy: '--save-strategy', saveSteps: '--save-steps', saveTotalLimit: '--save-total-limit',
  seed: '--seed', padToMultipleOf: '--pad-to-multiple-of', onNonFiniteLoss: '--on-non-finite-loss', bf16: '--bf16',
};

function checkDevice(d: string): Device {
  if (!/^(auto|cpu|cuda|cuda:\d+)$/.test(d)) throw new UsageError(`--device must be auto, cpu, cuda or cuda:N, got ${JSON.stringify(d)}`);
  return d as Device;
}
/** yargs turns a repeated flag into an array; only the sentence flags may repeat. */
function noRepeats(a: Record<string, unknown>) {
  for (const [k, v] of Object.entries(a))
    if (Array.isArray(v) && k !== '_' && !/^sentence[12]$/.test(k)) throw new UsageError(`--${k} was given more than once`);
}

function checkNumberFlags(a: Record<string, unknown>, names: string[]) {
  for (const n of names) {
    if (Array.isArray(a[n])) throw new UsageError(`--${n} was given more than once`);
    if (a[n] !== undefined && (typeof a[n] !== 'number' || Number.isNaN(a[n]))) throw new UsageError(`--${n} must be a number, got ${JSON.stringify(process.argv[process.argv.indexOf(`--${n}`) + 1] ?? a[n])}`);
  }
}

/** The labels a model was trained with, so a file's labels are read through its label2id, as run_glue.py does. */
function modelLabels(model: BertForSequenceClassification): { labelNames?: string[]; isRegression: boolean } {
  if (model.problemType === 'regression') return { isRegression: true };
  return { labelNames: Array.from({ length: model.numLabels }, (_, i) => model.config.id2label[String(i)] ?? `LABEL_${i}`), isRegression: false };
}

async function loadSplits(a: { task?: string; 'train-file'?: string; 'validation-file'?: string; 'text-columns'?: string; 'label-column'?: string },
  needTrain: boolean, split?: string, known?: { labelNames?: string[]; isRegression: boolean }) {
  let task;
  try {
    task = a.task !== undefined || !(a['train-file'] || a['validation-file']) ? glueTask(a.task ?? 'mrpc') : undefined;
  } catch (e) {
    throw new UsageError(`--task: ${(e as Error).message}`);
  }
  if (a['train-file'] || a['validation-file']) {
    if (needTrain && !a['train-file']) throw new UsageError('--validation-file needs --train-file (or use --task)');
    // Labels: the model's (evaluate), else the task's (--task given), else the training file's own.
    const fromTask = task ? { labelNames: task.labelNames.length ? task.labelNames : undefined, isRegression: task.isRegression } : {};
    const cols = { textColumns: a['text-columns']?.split(',').map((s) => s.trim()), labelColumn: a['label-column'], ...fromTask, ...known };
    const train = a['train-file'] ? await loadDataFile(a['train-file'], { ...cols, requireLabels: true }) : undefined;
    const labelNames = train?.labelNames.length ? train.labelNames : cols.labelNames;
    const validation = a['validation-file'] ? await loadDataFile(a['validation-file'], { ...cols, labelNames, isRegression: train?.isRegression ?? cols.isRegression }) : undefined;
    return { train, validation, task: task?.name };
  }
  task = task!;
  const train = needTrain ? await loadGlue(task.name, 'train') : undefined;
  const validation = await loadGlue(task.name, split ?? task.validationSplit);
  return { train, validation, task: task.name };
}

function labelInfo(ds: TextDataset) {
  return ds.isRegression ? { numLabels: 1, problemType: 'regression' as const } : { labels: ds.labelNames, problemType: 'single_label_classification' as const };
}

async function train(a: TrainFlags, out: Out, err: Out, signal: AbortSignal): Promise<number> {
  checkNumberFlags(a as never, ['epochs', 'learning-rate', 'batch-size', 'eval-batch-size', 'max-length', 'warmup-ratio', 'warmup-steps', 'weight-decay', 'max-grad-norm', 'gradient-accumulation-steps', 'max-steps', 'eval-steps', 'logging-steps', 'save-steps', 'save-total-limit', 'seed', 'threads', 'pad-to-multiple-of']);
  const device = checkDevice(a.device);
  const args: Partial<TrainingArguments> = {
    outputDir: a['output-dir'], numTrainEpochs: a.epochs, maxSteps: a['max-steps'], learningRate: a['learning-rate'],
    lrSchedulerType: a['lr-scheduler'] as never, warmupRatio: a['warmup-ratio'], warmupSteps: a['warmup-steps'],
    weightDecay: a['weight-decay'], maxGradNorm: a['max-grad-norm'], perDeviceTrainBatchSize: a['batch-size'],
    perDeviceEvalBatchSize: a['eval-batch-size'], gradientAccumulationSteps: a['gradient-accumulation-steps'],
    evalStrategy: a['eval-strategy'] as never, evalSteps: a['eval-steps'] ?? null, loggingSteps: a['logging-steps'],
    saveStrategy: a['save-strategy'] as never, saveSteps: a['save-steps'], saveTotalLimit: a['save-total-limit'] ?? null,
    seed: a.seed, groupByLength: a['group-by-length'], padToMultipleOf: a['pad-to-multiple-of'] ?? null,
    onNonFiniteLoss: a['on-non-finite-loss'] as never, bf16: a.bf16,
  };
  try {
    validateArgs(args);  // usage errors before any loading, named by their flags
  } catch (e) {
    const flag = (name: string) => FLAG_OF[name] ?? name;
    throw new UsageError((e as Error).message.replace(/^(\w+)/, (m) => flag(m)));
  }
  if (a['max-length'] !== undefined && (!Number.isInteger(a['max-length']) || a['max-length'] < 3)) throw new UsageError('--max-length must be an integer >= 3');
  const log = (o: object, text: string) => out(a.json ? JSON.stringify(o) : text);

  const unlock = await lockOutputDir(a['output-dir']);  // before any work: an unusable output dir loses nothing
  try {
    return await trainLocked(a, out, err, signal, log, device, args);
  } finally {
    await unlock();
  }
}

async function trainLocked(a: TrainFlags, out: Out, err: Out, signal: AbortSignal, log: (o: object, text: string) => void, device: Device, args: Partial<TrainingArguments>): Promise<number> {
  phase = 'training';
  const { train: trainText, validation, task } = await loadSplits(a, true);
  const tok = await BertTokenizer.fromPretrained(a.model, { revision: a.revision });
  const model = await BertForSequenceClassification.fromPretrained(a.model, { revision: a.revision, device, threads: a.threads, seed: a.seed, ...labelInfo(trainText!) });
  try {
    reportLoading(a.model, model, (o, t) => (a.json ? out(JSON.stringify(o)) : err(t)));
    const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, model.config.max_position_embeddings);
    const trainData = await tokenizeDataset(trainText!, tok, maxLength);
    const evalData = validation ? await tokenizeDataset(validation, tok, maxLength) : undefined;
    tok.clearCache();
    let resume = a['resume-from-checkpoint'];
    if (resume === 'latest') {
      resume = (await listCheckpoints(a['output-dir'])).pop();
      if (!resume) throw new UsageError(`--resume-from-checkpoint latest: no checkpoint-* folder in ${a['output-dir']}`);
    }
    const metricNames = task ? glueMetricNames(task) : (trainText!.isRegression ? ['pearson', 'spearmanr'] : model.numLabels === 2 ? ['accuracy', 'f1'] : ['accuracy']);
    const table = new EpochTable(metricNames, a.json ? () => undefined : out);
    let lastTrainLoss: number | undefined;
    const progress = new Progress(a.json ? null : out);
    const stepMs: number[] = [], epochEnds: number[] = [];
    const t0 = performance.now();
    log({ event: 'start', device: model.device, torch: addon().runtime().torchVersion, train_rows: trainData.enc.length, eval_rows: evalData?.enc.length ?? 0, max_length: maxLength },
      `Training on ${model.device} (libtorch ${addon().runtime().torchVersion}): ${trainData.enc.length} training rows, ${evalData?.enc.length ?? 0} validation rows, max length ${maxLength}`);
    const trainer = new Trainer({
      model, args, trainDataset: trainData, evalDataset: evalData, tokenizer: tok, task, signal,
      events: {
        progress: (p) => {
          stepMs.push(p.stepMs);
          if (Math.abs(p.epoch - Math.round(p.epoch)) < 1e-9) epochEnds.push((performance.now() - t0) / 1000);
          progress.update(p.step, p.maxSteps, p.epoch);
        },
        log: (e) => {
          if ('loss' in e) lastTrainLoss = e.loss;
          if (a.json) out(JSON.stringify(e));
          else if ('loss' in e) progress.note(`step ${e.step}: loss ${e.loss.toFixed(4)}, learning rate ${e.learning_rate.toExponential(3)}, grad norm ${e.grad_norm.toFixed(4)}`);
        },
        evaluate: (m) => { progress.clear(); table.row(m, lastTrainLoss); },
        save: (d) => (a.json ? out(JSON.stringify({ event: 'save', checkpoint: d })) : progress.note(`saved ${d}`)),
        warning: (w) => err(`warning: ${w}`),
      },
    });
    const result = await trainer.train({ resumeFromCheckpoint: resume });
    progress.clear();
    if (result.interrupted) {
      log({ event: 'interrupted', global_step: result.globalStep }, `Stopped at step ${result.globalStep}; checkpoint saved in ${a['output-dir']}/checkpoint-${result.globalStep}`);
      return 130;
    }
    phase = 'final-save';
    await saveAsUnit(a['output-dir'], async (dir) => { await model.save(dir); await tok.save(dir); });
    const evalMetrics = trainer.trainerState!.log_history.filter((e) => 'eval_loss' in e).pop() ?? {};
    const all = { ...result.metrics, ...evalMetrics };
    await writeFileAtomic(path.join(a['output-dir'], 'train_results.json'), JSON.stringify(result.metrics, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'eval_results.json'), JSON.stringify(evalMetrics, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'all_results.json'), JSON.stringify(all, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'trainer_state.json'), JSON.stringify(trainer.trainerState, null, 2) + '\n');
    const sorted = [...stepMs].sort((x, y) => x - y), pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    log({ event: 'end', global_step: result.globalStep, training_loss: result.trainingLoss, ...result.metrics,
      step_ms_p50: pct(0.5), step_ms_p95: pct(0.95), step_ms: stepMs, epoch_end_s: epochEnds, peak_rss_mb: process.resourceUsage().maxRSS / 1024 },
      `TrainOutput(global_step=${result.globalStep}, training_loss=${result.trainingLoss}, metrics={'train_runtime': ${result.metrics.train_runtime}, ` +
      `'train_samples_per_second': ${result.metrics.train_samples_per_second}, 'train_steps_per_second': ${result.metrics.train_steps_per_second}, ` +
      `'total_flos': ${result.metrics.total_flos}, 'train_loss': ${result.metrics.train_loss}, 'epoch': ${result.metrics.epoch}})\n` +
      `Model, tokenizer and results saved in ${a['output-dir']}`);
    return 0;
  } finally {
    await model.dispose();
  }
}

function reportLoading(name: string, model: BertForSequenceClassification, say: (o: object, text: string) => void) {
  const r = model.loadReport;
  if (r.unused.length)
    say({ event: 'unused_weights', keys: r.unused }, `Some weights of the model checkpoint at ${name} were not used when initializing BertForSequenceClassification: ${JSON.stringify(r.unused)}`);
  if (r.newlyInitialized.length)
    say({ event: 'newly_initialized', keys: r.newlyInitialized }, `Some weights of BertForSequenceClassification were not initialized from the model checkpoint at ${name} and are newly initialized: ${JSON.stringify(r.newlyInitialized)}\n` +
      'You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.');
}

/** The notebook's per-epoch table, printed a row at a time. */
class EpochTable {
  private printed = false;
  constructor(private readonly metrics: string[], private readonly out: Out) {}
  private static title(m: string) { return m === 'f1' ? 'F1' : m === 'spearmanr' ? 'Spearmanr' : m.split('_').map((w) => w[0].toUpperCase() + w.slice(1)).join(' '); }
  row(m: LogEntry, trainLoss: number | undefined) {
    const cols = ['Epoch', 'Training Loss', 'Validation Loss', ...this.metrics.map(EpochTable.title)];
    const w = cols.map((c) => Math.max(c.length, 8));
    const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i])).join(' | ');
    if (!this.printed) {
      this.out(fmt(cols));
      this.out(w.map((n) => '-'.repeat(n)).join('-|-'));
      this.printed = true;
    }
    const epoch = Number.isInteger(Math.round(m.epoch * 1000) / 1000) ? String(Math.round(m.epoch)) : m.epoch.toFixed(2);
    this.out(fmt([epoch, trainLoss === undefined ? 'No log' : trainLoss.toFixed(6), m.eval_loss.toFixed(6), ...this.metrics.map((k) => (m[`eval_${k}`] ?? NaN).toFixed(6))]));
  }
}

/** A progress bar with it/s and ETA on a TTY; a plain line every ~5% otherwise; nothing when `out` is null (--json). */
class Progress {
  private start = performance.now();
  private lastPct = -1;
  private tty = process.stdout.isTTY === true;
  private shown = false;
  constructor(private readonly out: Out | null) {}
  update(step: number, max: number, epoch: number) {
    if (!this.out) return;
    const secs = (performance.now() - this.start) / 1000;
    const rate = step / Math.max(secs, 1e-9);
    const eta = (max - step) / Math.max(rate, 1e-9);
    const pct = Math.floor((100 * step) / max);
    const text = `${step}/${max} [${fmtTime(secs)}<${fmtTime(eta)}, ${rate.toFixed(2)} it/s, epoch ${epoch.toFixed(2)}]`;
    if (this.tty) {
      const width = 30, fill = Math.round((width * step) / max);
      process.stdout.write(`\r${String(pct).padStart(3)}%|${"█".repeat(fill)}${" ".repeat(width - fill)}| ${text}\x1b[K`);
      this.shown = true;
    } else if (pct >= this.lastPct + 5 || step === max) {
      this.lastPct = pct;
      this.out(`progress ${text}`);
    }
  }
  note(line: string) { this.clear(); this.out?.(line); }
  clear() {
    if (this.shown) { process.stdout.write('\r\x1b[K'); this.shown = false; }
  }
}

function fmtTime(s: number) {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return `${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}

interface PredictFlags { model: string; task?: string; sentence1?: string[]; sentence2?: string[]; file?: string; 'max-length'?: number; 'eval-batch-size': number; device: string; threads?: number; json: boolean; revision: string; bf16: boolean }

async function predict(a: PredictFlags, out: Out): Promise<number> {
  const device = checkDevice(a.device);
  let rows: TextDataset;
  if (a.file) {
    rows = await loadDataFile(a.file, {});
  } else {
    if (!a.sentence1?.length) throw new UsageError('predict needs --sentence1 (and --sentence2 for pairs) or --file');
    if (a.sentence2 && a.sentence2.length !== a.sentence1.length) throw new UsageError(`--sentence2 was given ${a.sentence2.length} times, --sentence1 ${a.sentence1.length} times`);
    rows = { source: 'flags', text1: a.sentence1.map(String), text2: a.sentence2?.map(String) ?? null, labels: null, labelNames: [], isRegression: false };
  }
  const tok = await BertTokenizer.fromPretrained(a.model, { revision: a.revision });
  const model = await BertForSequenceClassification.fromPretrained(a.model, { revision: a.revision, device, threads: a.threads });
  try {
    const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, model.config.max_position_embeddings);
    const data = await tokenizeDataset({ ...rows, labels: null }, tok, maxLength);
    const trainer = new Trainer({ model, tokenizer: tok, args: { perDeviceEvalBatchSize: a['eval-batch-size'], bf16: a.bf16 } });
    const { logits } = await trainer.predict(data);
    const nl = model.numLabels;
    for (let i = 0; i < data.enc.length; i++) {
      const row = Array.from(logits.subarray(i * nl, (i + 1) * nl));
      if (!row.every(Number.isFinite)) throw new Error(`${a.model}: the model gives non-finite logits (${row.join(', ')}) for input ${i + 1}: its weights are not usable (a diverged training run?)`);
      let result: Record<string, unknown>;
      if (model.problemType === 'regression') {
        result = { score: row[0] };
      } else {
        const mx = Math.max(...row), ex = row.map((v) => Math.exp(v - mx)), sum = ex.reduce((x, y) => x + y, 0);
        const probs = ex.map((v) => v / sum);
        const best = probs.indexOf(Math.max(...probs));
        result = { label: best, label_name: model.config.id2label[String(best)], score: probs[best], probabilities: probs };
      }
      out(a.json ? JSON.stringify(result) : `${JSON.stringify([rows.text1[i], rows.text2?.[i]].filter((x) => x !== undefined))} -> ${JSON.stringify(result)}`);
    }
    return 0;
  } finally {
    await model.dispose();
  }
}

interface EvalFlags { model: string; task?: string; 'validation-file'?: string; split?: string; 'max-length'?: number; 'eval-batch-size': number; device: string; threads?: number; json: boolean; revision: string; bf16: boolean }

async function evaluate(a: EvalFlags, out: Out): Promise<number> {
  const device = checkDevice(a.device);
  const tok = await BertTokenizer.fromPretrained(a.model, { revision: a.revision });
  const model = await BertForSequenceClassification.fromPretrained(a.model, { revision: a.revision, device, threads: a.threads });
  try {
    const { validation, task } = await loadSplits({ task: a.task, 'validation-file': a['validation-file'] }, false, a.split, modelLabels(model));
    const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, model.config.max_position_embeddings);
    const data = await tokenizeDataset(validation!, tok, maxLength);
    const trainer = new Trainer({ model, tokenizer: tok, task, args: { perDeviceEvalBatchSize: a['eval-batch-size'], bf16: a.bf16 } });
    const m = await trainer.evaluate(data);
    out(a.json ? JSON.stringify(m) : Object.entries(m).map(([k, v]) => `${k} = ${v}`).join('\n'));
    return 0;
  } finally {
    await model.dispose();
  }
}

