// `npm run bench:onnx -- [--rounds 2] [--threads N] [--epochs 3]`: what the ONNX export costs and gives. Fine-tunes
// all-MiniLM-L6-v2 on GLUE MRPC with `node train.js` (3 epochs, the defaults), exports it (`node train.js export
// --quantize`), then classifies the 408 validation pairs one at a time (batch 1) with ours (the saved model, fp32 and
// with setQuantization('int8'), as `predict --quantize`), the fp32 ONNX file and the int8 one in onnxruntime-node, the
// four alternating per round, each in a process of its own: accuracy and F1 of each, batch-1 sequences per second,
// file sizes. JSON under bench/results/onnx-export-cpu-<time>.json.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { BertPreTrainedModel } from '../../src/model.js';
import { BertTokenizer } from '../../src/tokenizer.js';
import { loadGlue } from '../../src/datasets.js';
import { accuracy, f1 } from '../../src/metrics.js';
import { cpuInfo } from '../../src/cpu.js';
import { root } from '../paths.js';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : fallback; };
const rounds = Number(opt('rounds', '2')), threads = Number(opt('threads', String(os.cpus().length))), epochs = opt('epochs', '3');
if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(threads) || threads < 1) { console.error('--rounds and --threads must be positive integers'); process.exit(2); }
const shared = path.resolve(root, '..', 'shared', 'hf-home');
let home = process.env.HF_HOME;
if (!home || !existsSync(path.join(home, 'hub', 'datasets--nyu-mll--glue'))) {
  if (!existsSync(shared)) { console.log('SKIP: MRPC is needed: ../shared/hf-home is absent and HF_HOME has no nyu-mll/glue.'); process.exit(0); }
  home = execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'prepare-minilm.js')], { encoding: 'utf8' }).trim().split('\n').pop()!;
}
process.env.HF_HOME = home;
process.env.HF_HUB_OFFLINE = '1';
const env = { ...process.env };
const SIDES = ['ours', 'ours --quantize', 'onnxruntime model.onnx', 'onnxruntime model_quantized.onnx'];
/** One side's pass over the validation pairs at batch 1, in a process of its own: once to warm (the first calls of each
 * shape allocate and pick kernels), then timed. */
async function timeSide(name: string, modelDir: string, onnxDir: string): Promise<{ seq_per_s: number; pred: number[] }> {
  if (!SIDES.includes(name)) throw new Error(`--side: unknown side ${JSON.stringify(name)}`);
  const val = await loadGlue('mrpc', 'validation');
  const tok = await BertTokenizer.fromPretrained(modelDir);
  const pairs = val.text1.map((a, i) => tok.encode(a, val.text2![i], { maxLength: 128 }));
  // Each side's logits for one pair.
  let logitsOf: (p: (typeof pairs)[number]) => Promise<ArrayLike<number>>;
  if (name.startsWith('ours')) {
    const m = await BertPreTrainedModel.fromPretrained(modelDir, { device: 'cpu', threads });
    if (name === 'ours --quantize') await m.setQuantization('int8');
    logitsOf = async (p) => (await m.forward({ shape: [1, p.inputIds.length], inputIds: Int32Array.from(p.inputIds), tokenTypeIds: Int32Array.from(p.tokenTypeIds) })).logits!;
  } else {
    const s = await ort.InferenceSession.create(path.join(onnxDir, 'onnx', name.slice('onnxruntime '.length)), { intraOpNumThreads: threads, interOpNumThreads: 1 });
    const t = (a: number[]) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [1, a.length]);
    logitsOf = async (p) => (await s.run({ input_ids: t(p.inputIds), attention_mask: t(p.attentionMask), token_type_ids: t(p.tokenTypeIds) })).logits.data as Float32Array;
  }
  const classify = async () => {
    const out: number[] = [];
    for (const p of pairs) {
      const l = await logitsOf(p);
      out.push(l[1] > l[0] ? 1 : 0);
    }
    return out;
  };
  await classify();
  const t0 = performance.now();
  const pred = await classify();
  return { seq_per_s: pairs.length / ((performance.now() - t0) / 1000), pred };
}
if (argv.includes('--side')) {
  console.log(JSON.stringify(await timeSide(opt('side', ''), opt('model-dir', ''), opt('onnx-dir', ''))));
  process.exit(0);
}
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-onnx-'));
const modelDir = path.join(tmp, 'model'), onnxDir = path.join(tmp, 'onnx');
const train = path.join(root, 'train.js');
try {
  console.log(`fine-tuning all-MiniLM-L6-v2 on MRPC (${epochs} epochs)...`);
  execFileSync(process.execPath, [train, '--model', 'sentence-transformers/all-MiniLM-L6-v2', '--output-dir', modelDir, '--epochs', epochs, '--threads', String(threads),
    '--save-strategy', 'no', '--json'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const t0 = performance.now();
  execFileSync(process.execPath, [train, 'export', '--model', modelDir, '--output-dir', onnxDir, '--quantize'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const exportSeconds = (performance.now() - t0) / 1000;

  // Each side is timed in a process of its own (this script again, with --side): in one process each engine's threads
  // slowed the other's, onnxruntime's more (onnx-export-cpu-2026-12-01T12-15-15.json against …12-33-25.json), so the
  // ratio depended on who shared the process rather than on the engines.
  const refs = Array.from((await loadGlue('mrpc', 'validation')).labels!);
  const figs: Record<string, Array<{ seq_per_s: number; accuracy: number; f1: number }>> = {};
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...SIDES].reverse() : SIDES;
    for (const name of order) {
      const out = execFileSync(process.execPath, [process.argv[1], '--side', name, '--model-dir', modelDir, '--onnx-dir', onnxDir, '--threads', String(threads)],
        { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      const { seq_per_s, pred } = JSON.parse(out.trim().split('\n').pop()!) as { seq_per_s: number; pred: number[] };
      (figs[name] ??= []).push({ seq_per_s, accuracy: accuracy(pred, refs), f1: f1(pred, refs) });
      console.log(`round ${r + 1}/${rounds}: ${name} ${seq_per_s.toFixed(1)} seq/s, accuracy ${accuracy(pred, refs).toFixed(4)}`);
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const mb = (f: string) => statSync(f).size / 2 ** 20;
  const sizes = { 'model.safetensors': mb(path.join(modelDir, 'model.safetensors')), 'onnx/model.onnx': mb(path.join(onnxDir, 'onnx', 'model.onnx')),
    'onnx/model_quantized.onnx': mb(path.join(onnxDir, 'onnx', 'model_quantized.onnx')) };
  const summary = Object.fromEntries(Object.entries(figs).map(([k, v]) => [k, { seq_per_s_b1: median(v.map((x) => x.seq_per_s)), accuracy: v[0].accuracy, f1: v[0].f1 }]));
  const cpu = cpuInfo();
  const machine = { cpu: cpu.model, cpu_microarchitecture: cpu.microarchitecture, cpu_features: cpu.features, aten_cpu_capability: cpu.atenCapability, int8_reduce_range: cpu.int8ReduceRange, panel_products: cpu.panelProducts, cores: os.cpus().length, node: process.version, threads,
    onnxruntime_node: '1.30.0' };
  const result = { workload: 'onnx-export', machine, model: 'all-MiniLM-L6-v2 fine-tuned on MRPC by node train.js', epochs: Number(epochs), rounds, export_seconds: exportSeconds,
    sizes_mb: sizes, summary, rounds_detail: figs };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const outDir = path.join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `onnx-export-cpu-${stamp}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\n### ONNX export: MiniLM-L6 fine-tuned on MRPC, validation 408 pairs at batch 1, ${threads} threads, ${rounds} rounds (median)\n`);
  console.log('| model | file | MB | accuracy | F1 | seq/s (batch 1) |\n|---|---|---|---|---|---|');
  const fileOf: Record<string, keyof typeof sizes> = { ours: 'model.safetensors', 'ours --quantize': 'model.safetensors', 'onnxruntime model.onnx': 'onnx/model.onnx', 'onnxruntime model_quantized.onnx': 'onnx/model_quantized.onnx' };
  for (const [k, v] of Object.entries(summary))
    console.log(`| ${k} | ${fileOf[k]} | ${sizes[fileOf[k]].toFixed(1)} | ${v.accuracy.toFixed(4)} | ${v.f1.toFixed(4)} | ${v.seq_per_s_b1.toFixed(1)} |`);
  console.log(`\nresults: ${path.relative(root, file)}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
