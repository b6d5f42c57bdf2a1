// The command line's view of a run as one TrainerCallback, as transformers' ProgressCallback and PrinterCallback:
// a progress bar (or a line every ~5% off a terminal), the log lines, the notebook's per-epoch table, saves; or,
// with --json, each log entry and save as a JSON line. It also keeps the step times the run's summary reports.
import type { TrainingArguments } from './training-args.js';
import type { LogEntry, TrainerCallback, TrainerControl, TrainerState } from './trainer-callback.js';

type Out = (line: string) => void;

export class ConsoleCallback implements TrainerCallback {
  /** Each optimizer step's wall time (ms), onStepBegin to onStepEnd; and the run's seconds at each epoch's end. */
  readonly stepMs: number[] = [];
  readonly epochEndS: number[] = [];
  private readonly table: EpochTable;
  private readonly progress: Progress;
  private lastTrainLoss: number | undefined;
  private stepStart = 0;
  private readonly t0 = performance.now();

  /** `json`: JSON lines instead of text; `metricNames`: the table's metric columns (eval_<name>). */
  constructor(private readonly out: Out, private readonly json: boolean, metricNames: string[]) {
    this.table = new EpochTable(metricNames, json ? () => undefined : out);
    this.progress = new Progress(json ? null : out);
  }
  onStepBegin() { this.stepStart = performance.now(); }
  onStepEnd(_args: TrainingArguments, state: Readonly<TrainerState>) {
    this.stepMs.push(performance.now() - this.stepStart);
    if (Math.abs(state.epoch - Math.round(state.epoch)) < 1e-9) this.epochEndS.push((performance.now() - this.t0) / 1000);
    this.progress.update(state.global_step, state.max_steps, state.epoch);
  }
  onLog(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, e: LogEntry) {
    if ('loss' in e) this.lastTrainLoss = e.loss;
    if (this.json) this.out(JSON.stringify(e));
    else if ('loss' in e) this.progress.note(`step ${e.step}: loss ${e.loss.toFixed(4)}, learning rate ${e.learning_rate.toExponential(3)}, grad norm ${e.grad_norm.toFixed(4)}`);
  }
  onEvaluate(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, m: LogEntry) {
    this.progress.clear();
    this.table.row(m, this.lastTrainLoss);
  }
  onSave(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, dir: string) {
    if (this.json) this.out(JSON.stringify({ event: 'save', checkpoint: dir })); else this.progress.note(`saved ${dir}`);
  }
  onTrainEnd() { this.progress.clear(); }
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
    this.out(fmt([epoch, trainLoss === undefined ? 'No log' : trainLoss.toFixed(6), m.eval_loss === undefined ? "No log" : m.eval_loss.toFixed(6), ...this.metrics.map((k) => (m[`eval_${k}`] ?? NaN).toFixed(6))]));
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
