// `node train.js`: the notebook's flow from the command line. Usage errors exit 2 with one line; runtime
// failures exit 1; Ctrl-C saves a checkpoint after the current step and exits 130.
import path from 'node:path';
import { constants as fsConstants, promises as fs } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BertForMaskedLM, BertForMultipleChoice, BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification, BertPreTrainedModel, isDevice, type Device, type ModelOptions } from './model.js';
import { loadTokenDataFile, tokenizeTokenDataset } from './ner.js';
import { loadTextLines, mlmMasking, tokenizeForMlm } from './mlm.js';
import { loadQaFile, postprocessQa, prepareQaFeatures, type QaExample, squadMetrics } from './qa.js';
import { collatePairs, maskTokens } from './collator.js';
import { nerMetrics } from './seqeval.js';
import { tokenizeChoices, type TokenizedDataset } from './data.js';
import { BertTokenizer } from './tokenizer.js';
import { loadDataFile, loadGlue, readDataRows, type TextDataset } from './datasets.js';
import { glueMetricNames, glueTask } from './glue.js';
import { maxSequenceLength } from './config.js';
import { tokenizeDataset } from './data.js';
import { listCheckpoints, Trainer, type TrainerOptions } from './trainer.js';
import { DEFAULT_ARGS, type TrainingArguments, validateArgs } from './training-args.js';
import { EarlyStoppingCallback, type LogEntry, type TrainerCallback } from './trainer-callback.js';
import { ConsoleCallback } from './console-callback.js';
import { InputError, UsageError, UserError } from './errors.js';
import { lockOutputDir, saveAsUnit, writeFileAtomic } from './fsutil.js';
import { addon, exitNow } from './native.js';
import { checkFlags, flagOf, trainingArgsOf, yargsOptions, type Command } from './cli-flags.js';
import { Dashboard, DashboardCallback, isLoopbackHost } from './dashboard.js';
import { maskToken } from './hub.js';
import { exportOnnx } from './onnx.js';
import { checkDdpOptions, checkHost, DistributedContext, resolveHost, torchrunEnv, type TorchrunEnv } from './distributed.js';
import { failedPeer, launch, watchLauncher } from './launch.js';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

type Out = (line: string) => void;
/** Parsed flags, by their kebab-case names (src/cli-flags.ts lists them). */
type Flags = Record<string, any>;  // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * What an interrupt does now. 'setup' (loading, joining the process group) and 'command' (predict, evaluate) have
 * nothing to save: they stop at once. 'training' stops after the current step with a checkpoint; 'final-save' lets
 * the final save finish; 'launcher' passes the signal to its workers (launch.ts), each of which says what it does.
 */
let phase: 'setup' | 'training' | 'final-save' | 'command' | 'launcher' = 'command';

export async function main(argv = hideBin(process.argv), out: Out = stdoutLine, err: Out = stderrLine): Promise<number> {
  let code = 0;
  phase = 'command';
  const controller = new AbortController();
  // Ctrl-C, SIGTERM (timeout, docker stop, Kubernetes) and SIGHUP (a closed terminal) all ask for the same clean
  // stop. A process manager often forwards a signal the terminal also sends: one within a second of the first is
  // the same request; a later one quits at once.
  let first = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    const now = performance.now();
    if (first && now - first < 1000) return;
    if (first) exitNow(130);
    first = now;
    const peer = failedPeer();
    if (peer !== undefined) {
      // The launcher stops the job because a worker failed: without it no rank can save.
      err(`error: rank ${process.env.RANK}: worker rank ${peer} failed; stopping without a checkpoint (the job cannot save without every rank)`);
      exitNow(1);
    }
    if (phase === 'setup' || phase === 'command') {
      err(`Interrupted (${sig}): stopping${phase === 'setup' ? ' before training started (nothing to save)' : ''}`);
      exitNow(130);
    }
    if (phase === 'launcher') err(`Interrupted (${sig}): passed on to the workers (again to stop them at once)`);
    else err(phase === 'training'
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
      .option('debug', { type: 'boolean', describe: 'print the stack of an unexpected (non-user) error; also BERT_TRAINER_DEBUG=1' });
    const command = (name: Command, run: (a: Flags) => Promise<number>) => async (a: Flags) => { checkFlags(a, name); code = await run(a); };
    parser
      .command('$0', 'train (and evaluate every epoch)', (y) => y.options(yargsOptions('train')), command('train', (a) => train(a, argv, out, err, controller.signal)))
      .command('ner', 'token classification (named-entity recognition) from files of words and tags, as run_ner.py', (y) => y.options(yargsOptions('ner')),
        command('ner', (a) => train(a, argv, out, err, controller.signal, 'ner')))
      .command('mlm', 'masked-language-model fine-tuning (domain adaptation) on text lines, as run_mlm.py', (y) => y.options(yargsOptions('mlm')),
        command('mlm', (a) => train(a, argv, out, err, controller.signal, 'mlm')))
      .command('qa', 'extractive question answering on SQuAD-format data, as run_qa.py', (y) => y.options(yargsOptions('qa')),
        command('qa', (a) => train(a, argv, out, err, controller.signal, 'qa')))
      .command('swag', 'multiple choice on SWAG-format rows, as run_swag.py', (y) => y.options(yargsOptions('swag')),
        command('swag', (a) => train(a, argv, out, err, controller.signal, 'swag')))
      .command('predict', 'classify sentence pairs with a trained model (like a text-classification pipeline)', (y) => y.options(yargsOptions('predict')), command('predict', (a) => predict(a, out)))
      .command('evaluate', 'evaluate a model on a GLUE validation split or --validation-file', (y) => y.options(yargsOptions('evaluate')), command('evaluate', (a) => evaluate(a, out)))
      .command('export', 'write a saved model as ONNX in transformers.js\'s layout (config, tokenizer, onnx/model.onnx; --quantize: int8 too)',
        (y) => y.options(yargsOptions('export')), command('export', (a) => exportCommand(a, out)))
      .strictOptions()
      .exitProcess(false)
      .fail((msg, e) => { throw e ?? new UsageError(msg); })
      .help()
      .version(false)
      .wrap(Math.min(110, process.stdout.columns || 110));
    await parser.parseAsync();
  } catch (e) {
    const { code: exit, lines } = errorReport(e, argv.includes('--debug') || process.env.BERT_TRAINER_DEBUG === '1');
    // Several workers share a terminal: each says which rank it is.
    const r = process.env.RANK, rank = process.env.WORLD_SIZE && process.env.WORLD_SIZE !== '1' && r && !lines[0].startsWith(`error: rank ${r}:`) ? `[rank ${r}] ` : '';
    // Whatever a server relayed into an error, the token never reaches the terminal.
    const flagToken = argv[argv.indexOf('--hub-token') + 1];
    for (const l of lines) err(rank + maskToken(maskToken(l, argv.includes('--hub-token') ? flagToken : undefined), process.env.HF_TOKEN));
    return exit;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
  return code;
}

/**
 * What the CLI prints and returns for an error. Exit 2: something the user can fix (UserError: a flag, a file, an
 * argument; yargs' own usage errors), one line. Anything else (a built-in TypeError from our own code included) is
 * a failure of ours or of the machine: exit 1, one line, and the stack when `debug`.
 */
export function errorReport(e: unknown, debug: boolean): { code: 1 | 2; lines: string[] } {
  const ex = e as Error;
  const lines = [`error: ${String(ex?.message ?? ex).trim().replace(/\s*\n\s*/g, ' ')}`];  // one line, whatever the source (yargs writes several)
  const user = e instanceof UserError || ex?.name === 'YError';
  if (!user && debug && ex?.stack) lines.push(ex.stack);
  return { code: user ? 2 : 1, lines };
}

// Output must never stop training: a closed stdout (`| head`) or stderr makes writes to it no-ops (EPIPE).
const closed = new Set<NodeJS.WriteStream>();
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => closed.add(stream));
function stdoutLine(line: string) { if (!closed.has(process.stdout)) process.stdout.write(line + '\n'); }
function stderrLine(line: string) { if (!closed.has(process.stderr)) process.stderr.write(line + '\n'); }

/** run_glue.py's predict_results_<task>.txt: "index\tprediction", then the label name (or the score to 3 decimals). */
export function predictResultsText(predictions: Int32Array | Float32Array, labelNames: string[] | null): string {
  const lines = ['index\tprediction'];
  predictions.forEach((p, i) => lines.push(`${i}\t${labelNames ? labelNames[p] : p.toFixed(3)}`));
  return lines.join('\n') + '\n';
}

/** --device, checked before anything loads: the pattern (model.ts owns it) and whether this libtorch has the GPU. */
function deviceFlag(d: string): Device {
  if (!isDevice(d)) throw new UsageError(`--device must be auto, cpu, cuda or cuda:N, got ${JSON.stringify(d)}`);
  if (d.startsWith('cuda')) {
    const { cudaAvailable, cudaDeviceCount } = addon().runtime();
    const index = d.includes(':') ? Number(d.split(':')[1]) : 0;
    if (!cudaAvailable) throw new UsageError(`--device ${d}: this libtorch sees no CUDA device (CPU-only build, or no GPU/driver); use --device cpu or auto`);
    if (index >= cudaDeviceCount) throw new UsageError(`--device ${d}: only ${cudaDeviceCount} CUDA device(s) visible`);
  }
  return d;
}

/**
 * The model and its tokenizer, as every command loads them: training a sequence classifier (`cls`), or (predict,
 * evaluate) the head the checkpoint's config.json names, as the pipelines' AutoModel does.
 */
async function loadModelAndTokenizer(a: Flags, extra: ModelOptions = {}, cls: typeof BertPreTrainedModel = BertForSequenceClassification) {
  const device = deviceFlag(a.device);
  const tok = await BertTokenizer.fromPretrained(a.model, { revision: a.revision });
  const model = await cls.fromPretrained(a.model, { revision: a.revision, device, threads: a.threads, ...extra });
  const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, maxSequenceLength(model.config));
  return { tok, model, maxLength };
}

/**
 * Training and evaluation read one class per row (GLUE, files); a multi-label model needs a set of classes per row,
 * which nothing here reads yet: refused by name instead of failing on the label count.
 */
function refuseMultiLabel(a: Flags, model: BertPreTrainedModel, command: string) {
  if (model.problemType === 'multi_label_classification')
    throw new InputError(`${a.model}/config.json`, `problem_type "multi_label_classification": ${command} reads one class per row, so a multi-label model cannot be ${command === 'train' ? 'trained' : 'evaluated'} here (predict gives its per-label sigmoid scores)`);
}

/**
 * predict and evaluate: the head config.json names, as the pipelines pick theirs (token classification, question
 * answering, fill-mask, multiple choice, text classification).
 */
async function loadPipelineModel(a: Flags) {
  if (a.quantize && a.bf16) throw new UsageError('--quantize (int8, computed in fp32) cannot be combined with --bf16');
  const loaded = await loadModelAndTokenizer(a, {}, BertPreTrainedModel);
  if (a.quantize) {
    if (loaded.model.device !== 'cpu') throw new UsageError(`--quantize runs on the CPU only; the model is on ${loaded.model.device} (use --device cpu)`);
    await loaded.model.setQuantization('int8');
  }
  return loaded;
}

/**
 * Multiple choice: for each example (--sentence1 with a --sentence2 per choice, or SWAG rows of --file) the
 * choice with the highest score, with the softmax over the choices as run_swag's accuracy reads them.
 */
async function predictChoices(a: Flags, tok: BertTokenizer, model: BertPreTrainedModel, maxLength: number, out: Out): Promise<number> {
  let examples: Array<{ context: string; choices: string[] }>;
  if (a.file) examples = await loadSwagFile(a.file, false);
  else {
    if (a.sentence1?.length !== 1 || (a.sentence2?.length ?? 0) < 2)
      throw new UsageError(`${a.model} is a multiple-choice model: give one --sentence1 (the context) and a --sentence2 per choice (at least two), or --file of SWAG rows`);
    examples = [{ context: String(a.sentence1[0]), choices: a.sentence2!.map(String) }];
  }
  const data = tokenizeChoices(examples, tok, maxLength);
  const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'predict') });
  const { logits } = await trainer.predict(data);
  const nc = data.numChoices!;
  examples.forEach((ex, i) => {
    const row = Array.from(logits.subarray(i * nc, (i + 1) * nc));
    if (!row.every(Number.isFinite)) throw new Error(`${a.model}: the model gives non-finite scores (${row.join(', ')}) for example ${i + 1}: its weights are not usable (a diverged training run?)`);
    const mx = Math.max(...row), ex2 = row.map((v) => Math.exp(v - mx)), sum = ex2.reduce((x, y) => x + y, 0);
    const probs = ex2.map((v) => v / sum), best = probs.indexOf(Math.max(...probs));
    const result = { label: best, choice: ex.choices[best], score: probs[best], probabilities: probs };
    out(a.json ? JSON.stringify(result) : `${JSON.stringify(ex.context)} -> ${JSON.stringify(result)}`);
  });
  return 0;
}

/**
 * predict's and evaluate's windows of a question-answering model, as run_qa.py's evaluation makes them: --max-length
 * (384 by default) every --doc-stride (run_qa's 128 by default, or a third of a shorter --max-length).
 */
function qaWindows(a: Flags, examples: QaExample[], tok: BertTokenizer, model: BertPreTrainedModel) {
  const maxSeqLength = Math.min(a['max-length'] ?? 384, maxSequenceLength(model.config));
  const docStride = a['doc-stride'] ?? Math.min(128, Math.floor(maxSeqLength / 3));
  if (!(Number.isInteger(docStride) && docStride >= 0)) throw new UsageError(`--doc-stride must be an integer >= 0, got ${JSON.stringify(a['doc-stride'])}`);
  return prepareQaFeatures(examples, tok, { maxSeqLength, docStride, train: false });
}

/** evaluate's metrics: one JSON line, or `name = value` lines. */
function printMetrics(a: Flags, out: Out, m: LogEntry) {
  out(a.json ? JSON.stringify(m) : Object.entries(m).map(([k, v]) => `${k} = ${v}`).join('\n'));
}

/**
 * The question-answering pipeline: the best answer span of --context for --question (or of each row of --file:
 * SQuAD rows), with its probability among the n-best and its character offsets; --output-dir writes predictions.json.
 */
async function predictAnswers(a: Flags, tok: BertTokenizer, model: BertPreTrainedModel, out: Out): Promise<number> {
  const examples = a.file ? await loadQaFile(a.file) : [{ id: '0', question: String(a.question), context: String(a.context), answers: { text: [], answer_start: [] } }];
  const features = qaWindows(a, examples, tok, model);
  const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'predict') });
  const { logits } = await trainer.predict(features);
  if (!logits.every(Number.isFinite)) throw new Error(`${a.model}: the model gives non-finite logits: its weights are not usable (a diverged training run?)`);
  const { predictions, nbest } = postprocessQa(examples, features, logits);
  if (a['output-dir'] !== undefined) {
    const file = path.join(a['output-dir'], 'predictions.json');
    await writeFileAtomic(file, JSON.stringify(Object.fromEntries(predictions.map((p) => [p.id, p.prediction_text])), null, 4) + '\n');
    out(a.json ? JSON.stringify({ event: 'predict', file, rows: predictions.length }) : `Predictions of ${predictions.length} questions written to ${file}`);
    return 0;
  }
  for (const p of predictions) {
    const best = nbest[p.id][0], start = p.answerStart ?? -1;
    const result = { answer: p.prediction_text, score: best.probability, start, end: start < 0 ? -1 : start + Array.from(p.prediction_text).length };
    out(a.json ? JSON.stringify(result) : `${JSON.stringify(examples.find((e) => e.id === p.id)!.question)} -> ${JSON.stringify(result)}`);
  }
  return 0;
}

/**
 * The fill-mask pipeline: for each mask token of each --sentence1 (or row of --file), the --top-k likeliest tokens
 * with their probabilities and the sentence they make.
 */
async function fillMask(a: Flags, rows: TextDataset | undefined, tok: BertTokenizer, model: BertPreTrainedModel, out: Out): Promise<number> {
  rows ??= await loadDataFile(a.file, { ignoreLabels: true });
  const k = a['top-k'];
  if (!(Number.isInteger(k) && k >= 1)) throw new UsageError(`--top-k must be an integer >= 1, got ${JSON.stringify(k)}`);
  const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, maxSequenceLength(model.config));
  const enc = tok.encodeBatch(rows.text1, rows.text2, { maxLength });
  const V = model.config.vocab_size, maskId = tok.maskId;
  for (let r = 0; r < enc.length; r++) {
    const ids = enc.ids.subarray(enc.offsets[r], enc.offsets[r + 1]);
    const masks = [...ids.keys()].filter((t) => ids[t] === maskId);
    if (!masks.length) throw new UsageError(`input ${r + 1} has no mask token: fill-mask needs one (write it as in the tokenizer, e.g. [MASK])`);
    const { logits } = await model.forward({ shape: [1, ids.length], inputIds: Int32Array.from(ids), tokenTypeIds: Int32Array.from(enc.typeIds.subarray(enc.offsets[r], enc.offsets[r + 1])) });
    const fills = masks.map((t) => {
      const row = logits!.subarray(t * V, (t + 1) * V);
      let mx = -Infinity;
      for (const v of row) mx = Math.max(mx, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - mx);
      return [...row.keys()].sort((x, y) => row[y] - row[x]).slice(0, k).map((id) => ({ token: id, token_str: tok.idToToken(id), score: Math.exp(row[id] - mx) / sum }));
    });
    out(a.json ? JSON.stringify(fills.length === 1 ? fills[0] : fills) : `${JSON.stringify(rows.text1[r])} -> ${fills.map((f) => f.map((c) => `${c.token_str} (${c.score.toFixed(3)})`).join(', ')).join(' | ')}`);
  }
  return 0;
}

/**
 * Token classification: each word's tag (its first piece's prediction, as run_ner.py keeps them) and probability.
 * --sentence1: whitespace-separated words; --file: rows of "tokens" (run_ner's layout). --output-dir writes
 * predictions.txt (one line of tags per row), as run_ner.py's do_predict.
 */
async function predictTokens(a: Flags, rows: TextDataset | undefined, tok: BertTokenizer, model: BertPreTrainedModel, out: Out): Promise<number> {
  const words = a.file ? (await loadTokenDataFile(a.file, { labelNames: modelLabels(model).labelNames })).words : rows!.text1.map((t) => t.split(/\s+/).filter(Boolean));
  const maxLength = Math.min(a['max-length'] ?? tok.modelMaxLength, maxSequenceLength(model.config));
  const data = tokenizeTokenDataset({ source: a.file ?? 'flags', words, tags: null, labelNames: [] }, tok, { maxLength });
  const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'predict') });
  const { logits } = await trainer.predict(data);
  const names = modelLabels(model).labelNames!, nl = model.numLabels;
  const lines: string[] = [];
  for (let r = 0; r < data.enc.length; r++) {
    const tags: string[] = [], scores: number[] = [];
    let previous = -1;
    for (let t = data.enc.offsets[r]; t < data.enc.offsets[r + 1]; t++) {
      const w = data.wordIds![t];
      if (w >= 0 && w !== previous) {
        const row = Array.from(logits.subarray(t * nl, (t + 1) * nl));
        if (!row.every(Number.isFinite)) throw new Error(`${a.model}: the model gives non-finite logits for input ${r + 1}: its weights are not usable (a diverged training run?)`);
        const mx = Math.max(...row), ex = row.map((v) => Math.exp(v - mx)), sum = ex.reduce((x, y) => x + y, 0), best = row.indexOf(mx);
        tags.push(names[best]);
        scores.push(ex[best] / sum);
      }
      previous = w;
    }
    lines.push(tags.join(' '));
    if (a['output-dir'] === undefined)
      out(a.json ? JSON.stringify({ words: words[r].slice(0, tags.length), tags, scores }) : words[r].slice(0, tags.length).map((w, k) => `${w}/${tags[k]}`).join(' '));
  }
  if (a['output-dir'] !== undefined) {
    const file = path.join(a['output-dir'], 'predictions.txt');
    await writeFileAtomic(file, lines.join('\n') + '\n');
    out(a.json ? JSON.stringify({ event: 'predict', file, rows: lines.length }) : `Predictions of ${lines.length} rows written to ${file}`);
  }
  return 0;
}

/** The labels a model was trained with, so a file's labels are read through its label2id, as run_glue.py does. */
function modelLabels(model: BertPreTrainedModel): { labelNames?: string[]; isRegression: boolean } {
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

/** --dashboard [port] and --dashboard-host: where the live page listens, or undefined without --dashboard. */
function dashboardFlags(a: Flags): { port: number; host: string } | undefined {
  if (a.dashboard === undefined) {
    if (a['dashboard-host'] !== undefined) throw new UsageError('--dashboard-host needs --dashboard');
    return undefined;
  }
  const p = String(a.dashboard);
  if (p !== '' && !(/^\d+$/.test(p) && Number(p) <= 65535)) throw new UsageError(`--dashboard must be a port number (0-65535, 0 or none: a free one), got ${JSON.stringify(p)}`);
  return { port: p === '' ? 0 : Number(p), host: a['dashboard-host'] ?? '127.0.0.1' };
}

/** --logging-dir, before anything loads: a folder, or a path where one can be made (TensorBoard writes there). */
async function checkLoggingDir(dir: string | undefined): Promise<void> {
  if (dir === undefined) return;
  // ENOTDIR: a part of the path is a file, named by the walk below.
  const st = await fs.stat(dir).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? null : Promise.reject(e))).catch((e: Error) => {
    throw new UsageError(`--logging-dir ${dir}: ${e.message}`);
  });
  if (st && !st.isDirectory()) throw new UsageError(`--logging-dir ${dir}: is a file, not a folder`);
  if (!st) {
    // The nearest existing parent must be a folder we may write to.
    let parent = path.dirname(path.resolve(dir));
    for (;;) {
      const p = await fs.stat(parent).catch(() => null);
      if (p) {
        if (!p.isDirectory()) throw new UsageError(`--logging-dir ${dir}: ${parent} is a file, not a folder`);
        await fs.access(parent, fsConstants.W_OK).catch(() => { throw new UsageError(`--logging-dir ${dir}: ${parent} is not writable`); });
        return;
      }
      const up = path.dirname(parent);
      if (up === parent) return;
      parent = up;
    }
  }
}

/** --nproc-per-node and the flags that go with it, checked; null when this process is not a launcher. */
function launchFlags(a: Flags) {
  const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = a[name];
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return v as number | undefined;
  };
  const nproc = int('nproc-per-node', 1, MAX_NPROC_PER_NODE), nnodes = int('nnodes', 1)!, nodeRank = int('node-rank', 0)!, masterPort = int('master-port', 1, 65535);
  if (nodeRank >= nnodes) throw new UsageError(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  checkDdpOptions({ timeoutSeconds: a['ddp-timeout'], bucketCapMb: a['ddp-bucket-cap-mb'] });
  if (nproc === undefined) {
    if (nnodes > 1) throw new UsageError('--nnodes needs --nproc-per-node');
    return null;
  }
  checkHost(String(a['master-addr']), '--master-addr');
  return { nprocPerNode: nproc, nnodes, nodeRank, masterAddr: String(a['master-addr']), masterPort: masterPort ?? (nnodes > 1 ? 29500 : undefined) };
}

/** torchrun sets no bound; one process per core is the useful most on a CPU, and a GPU machine has at most a few dozen. */
const MAX_NPROC_PER_NODE = 1024;

/** What a training command trains on: its model, tokenizer, data and metrics (GLUE classification, NER, ...). */
interface Prepared {
  tok: BertTokenizer;
  model: BertPreTrainedModel;
  trainData: TokenizedDataset;
  evalData?: TokenizedDataset;
  /** The columns of the per-epoch table, as the evaluation names them (eval_<name>). */
  metricNames: string[];
  task?: string;
  computeMetrics?: TrainerOptions['computeMetrics'];
  dataCollator?: TrainerOptions['dataCollator'];
  /** The token limit examples were cut to (for the start line). */
  maxLength: number;
  /** Written into the output folder after the final save (run_qa's predictions.json). */
  afterTraining?: (outputDir: string) => Promise<void>;
  /** Pads batches to a multiple of this (question answering: to max_seq_length) unless --pad-to-multiple-of says. */
  padToMultipleOf?: number;
}
/** `o.device`: only under data parallelism (the rank's device); absent, --device decides. */
type Prepare = (a: Flags, o: { seed: number; device?: Device }) => Promise<Prepared>;

/** `node train.js`: GLUE (or local files) sequence classification. */
const prepareGlue: Prepare = async (a, o) => {
  const { train: trainText, validation, task } = await loadSplits(a, true);
  const { tok, model, maxLength } = await loadModelAndTokenizer(a, { ...o, ...labelInfo(trainText!) });
  try {
    refuseMultiLabel(a, model, 'train');
    const trainData = await tokenizeDataset(trainText!, tok, maxLength);
    const evalData = validation ? await tokenizeDataset(validation, tok, maxLength) : undefined;
    const metricNames = task ? glueMetricNames(task) : (trainText!.isRegression ? ['pearson', 'spearmanr'] : model.numLabels === 2 ? ['accuracy', 'f1'] : ['accuracy']);
    return { tok, model, trainData, evalData, metricNames, task, maxLength };
  } catch (e) {
    await model.dispose();
    throw e;
  }
};

/** `node train.js ner`: token classification as run_ner.py, from local files of words and tags. */
const prepareNer: Prepare = async (a, o) => {
  if (!a['train-file']) throw new UsageError('ner needs --train-file (JSON Lines, JSON or parquet rows of "tokens" and "ner_tags")');
  const cols = { textColumnName: a['text-column-name'], labelColumnName: a['label-column-name'] };
  const train = await loadTokenDataFile(a['train-file'], { ...cols, requireLabels: true });
  const validation = a['validation-file'] ? await loadTokenDataFile(a['validation-file'], { ...cols, labelNames: train.labelNames }) : undefined;
  const { tok, model } = await loadModelAndTokenizer(a, { ...o, labels: train.labelNames }, BertForTokenClassification);
  try {
    const maxLength = Math.min(a['max-seq-length'] ?? tok.modelMaxLength, maxSequenceLength(model.config));
    const enc = { maxLength, labelAllTokens: a['label-all-tokens'] };
    const ent = a['return-entity-level-metrics'] === true;
    return { tok, model, maxLength, trainData: tokenizeTokenDataset(train, tok, enc), evalData: validation ? tokenizeTokenDataset(validation, tok, enc) : undefined,
      metricNames: ent ? ['overall_precision', 'overall_recall', 'overall_f1', 'overall_accuracy'] : ['precision', 'recall', 'f1', 'accuracy'],
      computeMetrics: nerMetrics(train.labelNames, { returnEntityLevelMetrics: ent }) };
  } catch (e) {
    await model.dispose();
    throw e;
  }
};

/** `node train.js mlm`: masked-language-model fine-tuning as run_mlm.py, from text lines. */
const prepareMlm: Prepare = async (a, o) => {
  if (!a['train-file']) throw new UsageError('mlm needs --train-file (a .txt file of lines, or rows with a "text" column)');
  const p = a['mlm-probability'];
  if (!(typeof p === 'number' && p > 0 && p < 1)) throw new UsageError(`--mlm-probability must be in (0, 1), got ${JSON.stringify(p)}`);
  const pct = a['validation-split-percentage'];
  if (!(Number.isInteger(pct) && pct >= 0 && pct < 100)) throw new UsageError(`--validation-split-percentage must be an integer in [0, 100), got ${JSON.stringify(pct)}`);
  let trainLines = await loadTextLines(a['train-file']);
  let validationLines = a['validation-file'] ? await loadTextLines(a['validation-file']) : undefined;
  if (!validationLines && pct > 0) {
    // As run_mlm.py: validation = train[:pct%], train = train[pct%:].
    const cut = Math.floor((trainLines.length * pct) / 100);
    validationLines = trainLines.slice(0, cut);
    trainLines = trainLines.slice(cut);
  }
  const { tok, model } = await loadModelAndTokenizer(a, o, BertForMaskedLM);
  try {
    const maxSeqLength = Math.min(a['max-seq-length'] ?? Math.min(tok.modelMaxLength, 1024), maxSequenceLength(model.config));
    const enc = { maxSeqLength, lineByLine: a['line-by-line'] === true, wholeWordMask: a['whole-word-mask'] === true };
    const trainData = tokenizeForMlm(trainLines, tok, enc), evalData = validationLines?.length ? tokenizeForMlm(validationLines, tok, enc) : undefined;
    if (!trainData.enc.length) throw new InputError(a['train-file'], `gives no example of ${maxSeqLength} tokens (fewer tokens in all than one block; try --line-by-line or a smaller --max-seq-length)`);
    const masking = mlmMasking(tok, model.config.vocab_size, p);
    const dataCollator: TrainerOptions['dataCollator'] = (b, rng, from) =>
      maskTokens(b, from.dataset.tokenOffsets ? { ...masking, tokenOffsets: collatePairs(from.dataset.enc, from.dataset.tokenOffsets, from.rows, b.shape[1]) } : masking, rng);
    return { tok, model, trainData, evalData: evalData?.enc.length ? evalData : undefined, metricNames: ['accuracy'], maxLength: maxSeqLength, dataCollator };
  } catch (e) {
    await model.dispose();
    throw e;
  }
};

/** `node train.js qa`: extractive question answering as run_qa.py, from SQuAD-format files. */
const prepareQa: Prepare = async (a, o) => {
  if (!a['train-file']) throw new UsageError('qa needs --train-file (SQuAD JSON, or rows of id, question, context and answers)');
  a['doc-stride'] ??= 128;
  for (const f of ['doc-stride', 'n-best-size', 'max-answer-length'])
    if (!(Number.isInteger(a[f]) && a[f] >= (f === 'doc-stride' ? 0 : 1))) throw new UsageError(`--${f} must be an integer >= ${f === 'doc-stride' ? 0 : 1}, got ${JSON.stringify(a[f])}`);
  const cols = { questionColumn: a['question-column-name'], contextColumn: a['context-column-name'], answerColumn: a['answer-column-name'] };
  const train = await loadQaFile(a['train-file'], cols);
  const validation = a['validation-file'] ? await loadQaFile(a['validation-file'], cols) : undefined;
  if (!a['version-2-with-negative']) {
    const none = train.find((e) => !e.answers.text.length);
    if (none) throw new InputError(a['train-file'], `example ${JSON.stringify(none.id)} has no answer: pass --version-2-with-negative for SQuAD v2 data`);
  }
  const { tok, model } = await loadModelAndTokenizer(a, { ...o, numLabels: 2 }, BertForQuestionAnswering);
  try {
    const maxSeqLength = Math.min(a['max-seq-length'] ?? 384, maxSequenceLength(model.config));
    const enc = { maxSeqLength, docStride: a['doc-stride'], padToMaxLength: a['pad-to-max-length'] !== false };
    const trainData = prepareQaFeatures(train, tok, { ...enc, train: true });
    const evalData = validation ? prepareQaFeatures(validation, tok, { ...enc, train: false }) : undefined;
    const post = { nBestSize: a['n-best-size'], maxAnswerLength: a['max-answer-length'], versionTwoWithNegative: a['version-2-with-negative'] === true, nullScoreDiffThreshold: a['null-score-diff-threshold'] };
    let last: ReturnType<typeof postprocessQa> | undefined;
    return { tok, model, trainData, evalData, maxLength: maxSeqLength, metricNames: ['exact_match', 'f1'],
      computeMetrics: (p) => {
        last = postprocessQa(validation!, evalData!, p.predictions, post);
        return squadMetrics(last.predictions, validation!);
      },
      // run_qa.py writes the last evaluation's answers (and their n-best lists) into the output folder.
      afterTraining: async (dir) => {
        if (!last) return;
        await writeFileAtomic(path.join(dir, 'predictions.json'), JSON.stringify(Object.fromEntries(last.predictions.map((p) => [p.id, p.prediction_text])), null, 4) + '\n');
        await writeFileAtomic(path.join(dir, 'nbest_predictions.json'), JSON.stringify(last.nbest, null, 4) + '\n');
      },
      // Windows padded to max_seq_length, as run_qa (its loss reads every position, padding included).
      ...(enc.padToMaxLength ? { padToMultipleOf: maxSeqLength } : {}) };
  } catch (e) {
    await model.dispose();
    throw e;
  }
};

/** SWAG-format rows (sent1, sent2, ending0..endingN, label) as run_swag.py reads them: sent1 paired with "sent2 ending_i". */
async function loadSwagFile(file: string, requireLabels: boolean): Promise<Array<{ context: string; choices: string[]; label?: number }>> {
  const { rows, firstRow } = await readDataRows(file, 'label');
  const endings = Object.keys(rows[0] ?? {}).filter((c) => /^ending\d+$/.test(c)).sort((x, y) => Number(x.slice(6)) - Number(y.slice(6)));
  if (endings.length < 2) throw new InputError(file, 'needs columns ending0, ending1, ... (at least two choices), sent1 and sent2');
  return rows.map((r, i) => {
    const at = `row ${(r.__line as number | undefined) ?? i + firstRow}`;
    for (const c of ['sent1', 'sent2', ...endings]) if (typeof r[c] !== 'string') throw new InputError(file, `${at}: column ${JSON.stringify(c)} is not text`);
    const choices = endings.map((c) => `${r.sent2} ${r[c]}`);
    if (!requireLabels) return { context: r.sent1 as string, choices };
    const label = Number(r.label);
    if (r.label === undefined || r.label === null || !(Number.isInteger(label) && label >= 0 && label < endings.length))
      throw new InputError(file, `${at}: label ${JSON.stringify(r.label ?? null)} is not a choice in [0, ${endings.length})`);
    return { context: r.sent1 as string, choices, label };
  });
}

/**
 * `node train.js swag`: multiple choice as run_swag.py, from SWAG-format rows (sent1, sent2, ending0..ending3,
 * label; .csv, .jsonl, .json, .parquet): each choice is sent1 paired with "sent2 ending_i"; accuracy.
 */
const prepareSwag: Prepare = async (a, o) => {
  if (!a['train-file']) throw new UsageError('swag needs --train-file (rows of sent1, sent2, ending0..ending3 and label)');
  const train = await loadSwagFile(a['train-file'], true), validation = a['validation-file'] ? await loadSwagFile(a['validation-file'], true) : undefined;
  const { tok, model } = await loadModelAndTokenizer(a, o, BertForMultipleChoice);
  try {
    const maxLength = Math.min(a['max-seq-length'] ?? Math.min(tok.modelMaxLength, 1024), maxSequenceLength(model.config));
    return { tok, model, maxLength, trainData: tokenizeChoices(train, tok, maxLength), evalData: validation ? tokenizeChoices(validation, tok, maxLength) : undefined, metricNames: ['accuracy'] };
  } catch (e) {
    await model.dispose();
    throw e;
  }
};

async function train(a: Flags, argv: string[], out: Out, err: Out, signal: AbortSignal, command: 'train' | 'ner' | 'mlm' | 'qa' | 'swag' = 'train'): Promise<number> {
  phase = 'setup';
  const args = trainingArgsOf(a, command);
  validateArgs(args, flagOf);  // usage errors before any loading, named by their flags
  deviceFlag(a.device);
  if (a['max-length'] !== undefined && (!Number.isInteger(a['max-length']) || a['max-length'] < 3)) throw new UsageError('--max-length must be an integer >= 3');
  await checkLoggingDir(a['logging-dir']);
  const dash = dashboardFlags(a);
  const launcher = launchFlags(a);
  const worker = torchrunEnv();  // set by torchrun, a scheduler, or our own launcher
  if (launcher && !worker) {
    // This process only starts the workers (each runs this same command line as a worker).
    await resolveHost(launcher.masterAddr, '--master-addr');
    const cores = os.availableParallelism();
    if (launcher.nprocPerNode > cores && !(a.device === 'cuda' || (a.device === 'auto' && addon().runtime().cudaAvailable)))
      err(`warning: --nproc-per-node ${launcher.nprocPerNode} is more than this machine's ${cores} cores: the workers will share them and each step will be slower`);
    phase = 'launcher';
    const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'train.js');
    return launch({ ...launcher, command: [script, ...argv], err });
  }
  watchLauncher(err);
  // Under data parallelism rank 0 owns the output folder (and the dashboard); the others write only their part
  // of each checkpoint, when rank 0 tells them.
  const main = !worker || worker.rank === 0;
  const unlock = main ? await lockOutputDir(a['output-dir']) : async () => {};  // before any work: an unusable output dir loses nothing
  let dashboard: Dashboard | undefined;
  try {
    if (dash && main) {
      dashboard = new Dashboard();
      const url = await dashboard.listen(dash.port, dash.host).catch((e) => { throw new UsageError(`--dashboard ${dash.port} on ${dash.host}: ${(e as Error).message}`); });
      if (!isLoopbackHost(dash.host))
        err(`warning: --dashboard-host ${dash.host}: the dashboard (the run's logs and metrics, no authentication) can be read by anyone who can reach this machine on that address`);
      if (a.json) out(JSON.stringify({ event: 'dashboard', url })); else err(`Dashboard: ${url}`);
    }
    return await trainLocked(a, args, main ? out : () => {}, err, signal, ({ ner: prepareNer, mlm: prepareMlm, qa: prepareQa, swag: prepareSwag, train: prepareGlue })[command], dashboard, worker ?? undefined);
  } catch (e) {
    dashboard?.publish({ type: 'error', message: (e as Error).message });
    throw e;
  } finally {
    await dashboard?.close();
    await unlock();
  }
}

/**
 * This worker's process group: Gloo when training on the CPU, NCCL with each rank on cuda:LOCAL_RANK. A device
 * other than auto/cpu/cuda is refused: under data parallelism LOCAL_RANK picks the GPU.
 */
async function joinProcessGroup(a: Flags, env: TorchrunEnv): Promise<DistributedContext> {
  if (/^cuda:\d+$/.test(a.device)) throw new UsageError(`--device ${a.device}: with several processes each rank uses cuda:LOCAL_RANK; pass --device cuda (or auto)`);
  const { cudaAvailable, cudaDeviceCount } = addon().runtime();
  const cuda = a.device === 'cuda' || (a.device === 'auto' && cudaAvailable);
  if (cuda && env.localRank >= cudaDeviceCount)
    throw new UsageError(`LOCAL_RANK ${env.localRank} needs cuda:${env.localRank}, but only ${cudaDeviceCount} CUDA device(s) are visible: use at most ${cudaDeviceCount} processes per node`);
  return DistributedContext.init({ env, device: cuda ? 'cuda' : 'cpu', timeoutSeconds: a['ddp-timeout'], bucketCapMb: a['ddp-bucket-cap-mb'] });
}

async function trainLocked(a: Flags, args: Partial<TrainingArguments>, out: Out, err: Out, signal: AbortSignal, prepare: Prepare, dashboard?: Dashboard, worker?: TorchrunEnv): Promise<number> {
  const log = (o: object, text: string) => out(a.json ? JSON.stringify(o) : text);
  const dist = worker ? await joinProcessGroup(a, worker) : undefined;
  const main = dist?.isMain ?? true;
  const { tok, model, trainData, evalData, metricNames, task, computeMetrics, dataCollator, maxLength, afterTraining, padToMultipleOf } = await prepare(a, { seed: a.seed ?? DEFAULT_ARGS.seed, ...(dist ? { device: dist.device as Device } : {}) });
  try {
    if (main) reportLoading(a.model, model, (o, t) => (a.json ? out(JSON.stringify(o)) : err(t)));
    tok.clearCache();
    let resume = a['resume-from-checkpoint'];
    if (resume === 'latest') {
      resume = (await listCheckpoints(a['output-dir'])).pop();
      if (!resume) throw new UsageError(`--resume-from-checkpoint latest: no checkpoint-* folder in ${a['output-dir']}`);
    }
    dashboard?.publish({ type: 'start', device: model.device, trainRows: trainData.enc.length, evalRows: evalData?.enc.length ?? 0 });
    const procs = dist ? `, ${dist.worldSize} processes (${dist.backend})` : '';
    log({ event: 'start', device: model.device, torch: addon().runtime().torchVersion, train_rows: trainData.enc.length, eval_rows: evalData?.enc.length ?? 0, max_length: maxLength, world_size: dist?.worldSize ?? 1 },
      `Training on ${model.device}${procs} (libtorch ${addon().runtime().torchVersion}): ${trainData.enc.length} training rows, ${evalData?.enc.length ?? 0} validation rows, max length ${maxLength}`);
    // The console and the live page are callbacks of rank 0's loop, beside early stopping (every rank's).
    const console_ = new ConsoleCallback(out, a.json === true, metricNames);
    const callbacks: TrainerCallback[] = [
      ...(a['early-stopping-patience'] !== undefined ? [new EarlyStoppingCallback(a['early-stopping-patience'], a['early-stopping-threshold'])] : []),
      ...(main ? [console_] : []), ...(main && dashboard ? [new DashboardCallback(dashboard)] : [])];
    if (padToMultipleOf !== undefined) args = { padToMultipleOf, ...args };
    const trainer = new Trainer({
      model, args, trainDataset: trainData, evalDataset: evalData, tokenizer: tok, task, signal, callbacks, distributed: dist, computeMetrics, dataCollator,
      events: { warning: (w) => err(`warning: ${w}`) },
    });
    phase = 'training';
    const result = await trainer.train({ resumeFromCheckpoint: resume });
    if (result.interrupted) {
      dashboard?.publish({ type: 'end', metrics: result.metrics, interrupted: true });
      log({ event: 'interrupted', global_step: result.globalStep }, `Stopped at step ${result.globalStep}; checkpoint saved in ${a['output-dir']}/checkpoint-${result.globalStep}`);
      return 130;
    }
    phase = 'final-save';
    if (main) await saveAsUnit(a['output-dir'], async (dir) => { await model.save(dir); await tok.save(dir); });
    if (main) await afterTraining?.(a['output-dir']);
    const evalMetrics: Record<string, number> = trainer.trainerState!.log_history.filter((e) => 'eval_loss' in e).pop() ?? {};
    if (model.head === 'MaskedLM' && 'eval_loss' in evalMetrics) evalMetrics.perplexity = Math.exp(evalMetrics.eval_loss);  // as run_mlm.py
    const all = { ...result.metrics, ...evalMetrics };
    if (a['do-predict']) {
      // As run_glue.py's do_predict: each test split (MNLI: matched and mismatched) into predict_results_<task>.txt.
      const sets = a['test-file'] ? [{ name: task ?? 'None', rows: await loadDataFile(a['test-file'], { textColumns: a['text-columns']?.split(',').map((c: string) => c.trim()), ignoreLabels: true }) }]
        : task ? await Promise.all(glueTask(task).splits.filter((sp) => sp.startsWith('test')).map(async (sp) => ({ name: sp === 'test_mismatched' ? `${task}-mm` : task, rows: await loadGlue(task, sp) })))
        : [];
      if (!sets.length) throw new UsageError('--do-predict with local files needs --test-file');
      for (const { name, rows } of sets) {
        const data = await tokenizeDataset({ ...rows, labels: null }, tok, maxLength);
        const { predictions } = await trainer.predict(data);  // every rank predicts its shard
        if (!main) continue;
        const file = path.join(a['output-dir'], `predict_results_${name}.txt`);
        await writeFileAtomic(file, predictResultsText(predictions, model.problemType === 'regression' ? null : modelLabels(model).labelNames!));
        log({ event: 'predict', file, rows: predictions.length }, `Predictions of ${predictions.length} rows written to ${file}`);
      }
    }
    if (!main) return 0;
    await writeFileAtomic(path.join(a['output-dir'], 'train_results.json'), JSON.stringify(result.metrics, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'eval_results.json'), JSON.stringify(evalMetrics, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'all_results.json'), JSON.stringify(all, null, 2) + '\n');
    await writeFileAtomic(path.join(a['output-dir'], 'trainer_state.json'), JSON.stringify(trainer.trainerState, null, 2) + '\n');
    if (trainer.args.pushToHub) {
      // Last, so that the results and predictions go up too; a failure leaves everything above on disk (exit 1).
      const url = await trainer.pushToHub({ baseModel: a.model });
      log({ event: 'push', url: url ?? null }, `Pushed to the Hub${url ? `: ${url}` : ''}`);
    }
    dashboard?.publish({ type: 'end', metrics: all });
    const stepMs = console_.stepMs, sorted = [...stepMs].sort((x, y) => x - y), pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    log({ event: 'end', global_step: result.globalStep, training_loss: result.trainingLoss, ...result.metrics,
      step_ms_p50: pct(0.5), step_ms_p95: pct(0.95), step_ms: stepMs, epoch_end_s: console_.epochEndS, peak_rss_mb: process.resourceUsage().maxRSS / 1024 },
      `TrainOutput(global_step=${result.globalStep}, training_loss=${result.trainingLoss}, metrics={'train_runtime': ${result.metrics.train_runtime}, ` +
      `'train_samples_per_second': ${result.metrics.train_samples_per_second}, 'train_steps_per_second': ${result.metrics.train_steps_per_second}, ` +
      `'total_flos': ${result.metrics.total_flos}, 'train_loss': ${result.metrics.train_loss}, 'epoch': ${result.metrics.epoch}})\n` +
      `Model, tokenizer and results saved in ${a['output-dir']}`);
    return 0;
  } finally {
    await model.dispose();
    await dist?.destroy();
  }
}

function reportLoading(name: string, model: BertPreTrainedModel, say: (o: object, text: string) => void) {
  const r = model.loadReport;
  if (r.unused.length)
    say({ event: 'unused_weights', keys: r.unused }, `Some weights of the model checkpoint at ${name} were not used when initializing ${model.architecture}: ${JSON.stringify(r.unused)}`);
  if (r.newlyInitialized.length)
    say({ event: 'newly_initialized', keys: r.newlyInitialized }, `Some weights of ${model.architecture} were not initialized from the model checkpoint at ${name} and are newly initialized: ${JSON.stringify(r.newlyInitialized)}\n` +
      'You should probably TRAIN this model on a down-stream task to be able to use it for predictions and inference.');
}

async function predict(a: Flags, out: Out): Promise<number> {
  deviceFlag(a.device);
  let rows: TextDataset | undefined;  // --file: read once the model's head says how
  let taskName = 'None';  // run_glue.py's name for the results of files without a task
  if ([a.file, a.split, a.sentence1?.length ? 1 : undefined, a.question].filter((x) => x !== undefined).length > 1)
    throw new UsageError('predict takes one of --sentence1, --question, --file, --split');
  let { tok, model, maxLength } = await loadPipelineModel(a);
  if (model.head === 'MultipleChoice') {
    try {
      return await predictChoices(a, tok, model, maxLength, out);
    } finally {
      await model.dispose();
    }
  }
  if ((a.question === undefined) !== (a.context === undefined)) throw new UsageError('--question and --context go together (question answering)');
  if (a.split !== undefined) {
    let task;
    try {
      task = glueTask(a.task ?? 'mrpc');
    } catch (e) {
      throw new UsageError(`--task: ${(e as Error).message}`);
    }
    if (!task.splits.includes(a.split)) throw new UsageError(`--split ${a.split}: GLUE ${task.name} has the splits ${task.splits.join(', ')}`);
    rows = await loadGlue(task.name, a.split);
    taskName = a.split === 'test_mismatched' ? `${task.name}-mm` : task.name;
  } else if (a.file) {
    if (a.task !== undefined) taskName = a.task;
  } else if (a.question === undefined) {
    if (!a.sentence1?.length) throw new UsageError('predict needs --sentence1 (and --sentence2 for pairs), --question with --context, --file or --split');
    if (a.sentence2 && a.sentence2.length !== a.sentence1.length) throw new UsageError(`--sentence2 was given ${a.sentence2.length} times, --sentence1 ${a.sentence1.length} times`);
    rows = { source: 'flags', text1: a.sentence1.map(String), text2: a.sentence2?.map(String) ?? null, labels: null, labelNames: [], isRegression: false };
  }
  // A masked-LM checkpoint fills masks; given text without a mask token (a pretrained checkpoint used as the base of
  // a classifier, as before the heads existed) it is read as a sequence classifier.
  if (model.head === 'MaskedLM' && a.question === undefined) {
    rows ??= await loadDataFile(a.file, { ignoreLabels: true });
    const mask = typeof tok.config.mask_token === 'string' ? tok.config.mask_token : '[MASK]';
    if (!rows.text1.some((t, i) => t.includes(mask) || rows!.text2?.[i]?.includes(mask))) {
      await model.dispose();
      ({ tok, model, maxLength } = await loadModelAndTokenizer(a));
    }
  }
  try {
    if (model.head === 'TokenClassification') return await predictTokens(a, rows, tok, model, out);
    if (model.head === 'QuestionAnswering') return await predictAnswers(a, tok, model, out);
    if (model.head === 'MaskedLM') return await fillMask(a, rows, tok, model, out);
    if (a.question !== undefined) throw new UsageError(`--question: ${a.model} is a ${model.architecture}, not a question-answering model`);
    rows ??= await loadDataFile(a.file, { ignoreLabels: true });
    const data = await tokenizeDataset({ ...rows, labels: null }, tok, maxLength);
    const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'predict') });
    const { logits, predictions } = await trainer.predict(data);
    if (a['output-dir'] !== undefined) {
      // run_glue.py's do_predict output, for a split or a file of rows.
      const file = path.join(a['output-dir'], `predict_results_${taskName}.txt`);
      await writeFileAtomic(file, predictResultsText(predictions, model.problemType === 'regression' ? null : modelLabels(model).labelNames!));
      out(a.json ? JSON.stringify({ event: 'predict', file, rows: predictions.length }) : `Predictions of ${predictions.length} rows written to ${file}`);
      return 0;
    }
    const nl = model.numLabels;
    for (let i = 0; i < data.enc.length; i++) {
      const row = Array.from(logits.subarray(i * nl, (i + 1) * nl));
      if (!row.every(Number.isFinite)) throw new Error(`${a.model}: the model gives non-finite logits (${row.join(', ')}) for input ${i + 1}: its weights are not usable (a diverged training run?)`);
      let result: Record<string, unknown>;
      if (model.problemType === 'regression') {
        result = { score: row[0] };
      } else if (model.problemType === 'multi_label_classification') {
        // As the text-classification pipeline for multi-label models: a sigmoid per label; the labels above 0.5.
        const probs = row.map((v) => 1 / (1 + Math.exp(-v)));
        const best = probs.indexOf(Math.max(...probs));
        result = { label: best, label_name: model.config.id2label[String(best)], score: probs[best], probabilities: probs,
          labels: probs.flatMap((p, k) => (p > 0.5 ? [model.config.id2label[String(k)]] : [])) };
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

async function exportCommand(a: Flags, out: Out): Promise<number> {
  const model = a.model as string, dir = (a['output-dir'] as string | undefined) ?? `${model.replace(/[\\/]+$/, '')}-onnx`;
  const started = Date.now();
  const r = await exportOnnx(model, dir, { quantize: a.quantize === true });
  const sizes = await Promise.all(r.files.map(async (f) => ({ file: f, bytes: (await fs.stat(path.join(dir, f))).size })));
  if (a.json) out(JSON.stringify({ event: 'export', outputDir: dir, architecture: r.architecture, outputs: r.outputs, files: sizes, seconds: (Date.now() - started) / 1000 }));
  else out(`Exported ${r.architecture} to ${dir} (outputs ${r.outputs.join(', ')}):\n` + sizes.map((s) => `  ${s.file}  ${(s.bytes / 2 ** 20).toFixed(1)} MB`).join('\n'));
  return 0;
}

async function evaluate(a: Flags, out: Out): Promise<number> {
  const { tok, model, maxLength } = await loadPipelineModel(a);
  try {
    if (model.head === 'TokenClassification') {
      if (!a['validation-file']) throw new UsageError('evaluate of a token-classification model needs --validation-file (rows of "tokens" and "ner_tags")');
      const names = modelLabels(model).labelNames!;
      const data = tokenizeTokenDataset(await loadTokenDataFile(a['validation-file'], { labelNames: names, requireLabels: true }), tok, { maxLength });
      const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'evaluate'), computeMetrics: nerMetrics(names) });
      const m = await trainer.evaluate(data);
      printMetrics(a, out, m);
      return 0;
    }
    if (model.head === 'QuestionAnswering') {
      // run_qa.py's evaluation: windows of --max-length (default 384) every 128 tokens, n-best post-processing, EM/F1.
      if (!a['validation-file']) throw new UsageError('evaluate of a question-answering model needs --validation-file (SQuAD JSON or rows)');
      const examples = await loadQaFile(a['validation-file']);
      const features = qaWindows(a, examples, tok, model);
      const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'evaluate'),
        computeMetrics: (p) => squadMetrics(postprocessQa(examples, features, p.predictions).predictions, examples) });
      const m = await trainer.evaluate(features);
      printMetrics(a, out, m);
      return 0;
    }
    if (model.head === 'MultipleChoice') {
      // run_swag.py's evaluation: accuracy over the examples of SWAG rows.
      if (!a['validation-file']) throw new UsageError('evaluate of a multiple-choice model needs --validation-file (rows of sent1, sent2, ending0..endingN and label)');
      const data = tokenizeChoices(await loadSwagFile(a['validation-file'], true), tok, maxLength);
      const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'evaluate') });
      const m = await trainer.evaluate(data);
      printMetrics(a, out, m);
      return 0;
    }
    if (model.head === 'MaskedLM') {
      // run_mlm.py's evaluation: blocks of --max-length (default min(model_max_length, 1024)), masked as in training
      // (seeded: every evaluation alike), masked-token accuracy, and perplexity = exp(eval_loss).
      if (!a['validation-file']) throw new UsageError('evaluate of a masked-LM model needs --validation-file (a .txt file of lines, or rows with a "text" column)');
      const maxSeqLength = Math.min(a['max-length'] ?? Math.min(tok.modelMaxLength, 1024), maxSequenceLength(model.config));
      const data = tokenizeForMlm(await loadTextLines(a['validation-file']), tok, { maxSeqLength });
      if (!data.enc.length) throw new InputError(a['validation-file'], `gives no block of ${maxSeqLength} tokens (try a smaller --max-length)`);
      const masking = mlmMasking(tok, model.config.vocab_size, 0.15);
      const trainer = new Trainer({ model, tokenizer: tok, args: trainingArgsOf(a, 'evaluate'), dataCollator: (b, rng) => maskTokens(b, masking, rng) });
      const m = await trainer.evaluate(data);
      m.perplexity = Math.exp(m.eval_loss);
      printMetrics(a, out, m);
      return 0;
    }

    refuseMultiLabel(a, model, 'evaluate');
    const { validation, task } = await loadSplits({ task: a.task, 'validation-file': a['validation-file'] }, false, a.split, modelLabels(model));
    const data = await tokenizeDataset(validation!, tok, maxLength);
    const trainer = new Trainer({ model, tokenizer: tok, task, args: trainingArgsOf(a, 'evaluate') });
    const m = await trainer.evaluate(data);
    printMetrics(a, out, m);
    return 0;
  } finally {
    await model.dispose();
  }
}

