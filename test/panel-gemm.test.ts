// Inference's fp32 products (native/panel_gemm.cc) and attention (native/attention.cc's EvaluationAttention; where the
// AVX2 kernels run, panel_gemm.cc's AttentionPair, here with heads of 24 and 20 columns and lengths not multiples of 8) against
// libtorch's: the same model and batches evaluated in child processes with the AVX-512 kernels (where the CPU has
// them), the AVX2 ones (ATEN_CPU_CAPABILITY=avx2 caps them as it caps libtorch), the scalar softmax
// (ATEN_CPU_CAPABILITY=default, oneDNN's products; there attention takes MKL's batched products, the AVX-512 CPUs'
// default) and none (BERT_TRAINER_NO_PANELS=1: oneDNN's prepacked products,
// with BERT_TRAINER_UNFUSED_ATTENTION=1: libtorch's attention operators). The
// configurations reach every branch: panels cut short (hidden 40 and 96: N not a multiple of 64), K in two slices
// (intermediate 600 > 512), row tiles of 1 to 6 rows, GELU and ReLU fused, the residual added, the last layer on
// first tokens only (sequence classification) and on every row (token classification, question answering).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BertForSequenceClassification } from '../src/model.js';
import { parseConfig } from '../src/config.js';
import { addon } from '../src/native.js';
import { tempDir } from './helpers.js';
import { readSafetensors, writeSafetensors } from '../src/safetensors.js';

const work = tempDir('panel-test-');
after(() => work.cleanup());
const index = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'index.js');

// Evaluates every architecture's saved model on the batches, prints { kernel, outputs: { "arch/batch": numbers } }.
const CHILD = `
const { BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering, nativeAddon } = await import(process.argv[1]);
const [dir, batchesJson] = process.argv.slice(2);
const heads = { seq: BertForSequenceClassification, tok: BertForTokenClassification, qa: BertForQuestionAnswering };
const out = {};
for (const [name, Head] of Object.entries(heads)) {
  const m = await Head.fromPretrained(dir, { device: 'cpu', threads: 2 });
  for (const [i, b] of JSON.parse(batchesJson).entries()) {
    const r = await m.forward({ shape: b.shape, inputIds: Int32Array.from(b.ids), attentionMask: Int32Array.from(b.mask) });
    out[name + '/' + i] = Object.values(r).filter((v) => v instanceof Float32Array).flatMap((v) => Array.from(v));
  }
  await m.dispose();
}
console.log(JSON.stringify({ kernel: nativeAddon().runtime().panelProducts, outputs: out }));
`;

// Trains a sequence-classification model from the saved one (a masked-LM one with TEST_MLM=1, every third token
// labelled): 3 steps (dropout on) over padded batches, then evaluates; prints { training: runtime().trainingProducts
// (onednn, panels or libtorch), bf16: runtime().bf16Products, losses, outputs }; in bf16 autocast with TEST_BF16=1.
const TRAIN_CHILD = `
const { BertForSequenceClassification, BertForMaskedLM, nativeAddon } = await import(process.argv[1]);
const [dir, batchesJson] = process.argv.slice(2);
const mlm = Boolean(process.env.TEST_MLM);
const m = await (mlm ? BertForMaskedLM : BertForSequenceClassification).fromPretrained(dir, { device: 'cpu', threads: 2, seed: 5 });
if (process.env.TEST_BF16) await m.setMixedPrecision('bf16');
const batches = JSON.parse(batchesJson).map((b) => ({ shape: b.shape, inputIds: Int32Array.from(b.ids), attentionMask: Int32Array.from(b.mask),
  labels: mlm ? Int32Array.from(b.ids, (id, i) => (b.mask[i] && i % 3 === 0 ? id : -100)) : Int32Array.from({ length: b.shape[0] }, (_, i) => i % 2) }));
const losses = [];
for (const b of batches.slice(2)) { losses.push(await m.trainStep(b)); await m.optimizerStep({ lr: 1e-3 }); }
const outputs = [];
for (const b of batches) outputs.push(...(await m.forward({ ...b, labels: undefined })).logits);
await m.dispose();
console.log(JSON.stringify({ training: nativeAddon().runtime().trainingProducts, bf16: nativeAddon().runtime().bf16Products, losses, outputs }));
`;

function batch(lengths: number[], seed: number) {
  const S = Math.max(...lengths), B = lengths.length;
  const ids: number[] = [], mask: number[] = [];
  lengths.forEach((n, b) => { for (let s = 0; s < S; s++) { ids.push(s < n ? 5 + ((b * 7 + s * 3 + seed) % 20) : 0); mask.push(s < n ? 1 : 0); } });
  return { shape: [B, S], ids, mask };
}
const BATCHES = [batch([1], 1), batch([7], 2), batch([53], 3), batch([12, 5, 9], 4), batch([6, 6], 5)];

// A fresh model's biases are zeros (BERT's initialization): give every fp32 bias small values so that each kernel's bias
// path (the products' epilogue, the first-token context's value bias) shows in the outputs.
async function nonzeroBiases(dir: string) {
  const file = path.join(dir, 'model.safetensors');
  const { tensors } = await readSafetensors(file);
  let s = 11;
  for (const t of tensors)
    if (t.name.endsWith('.bias') && t.dtype === 'F32') {
      const v = new Float32Array(t.data.byteLength / 4);
      for (let i = 0; i < v.length; i++) v[i] = ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff - 0.5) * 0.2;
      t.data = new Uint8Array(v.buffer);
    }
  await writeSafetensors(file, tensors, { format: 'pt' });
}

async function train(dir: string, env: Record<string, string>) {
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', TRAIN_CHILD, index, dir, JSON.stringify(BATCHES)],
    { env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { training: string; bf16: string; losses: number[]; outputs: number[] };
}

async function evaluate(dir: string, env: Record<string, string>) {
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', CHILD, index, dir, JSON.stringify(BATCHES)],
    { env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { kernel: string; outputs: Record<string, number[]> };
}

for (const [name, extra] of [
  ['hidden 96, intermediate 600, gelu', { hidden_size: 96, num_attention_heads: 4, intermediate_size: 600, hidden_act: 'gelu' }],
  ['hidden 40, intermediate 70, relu', { hidden_size: 40, num_attention_heads: 2, intermediate_size: 70, hidden_act: 'relu' }],
] as const)
test(`panel products (AVX-512, AVX2) give libtorch's products' outputs: ${name}`, async () => {
  const dir = path.join(work.dir, name.replace(/[^a-z0-9]+/g, '-'));
  const config = parseConfig({ vocab_size: 40, num_hidden_layers: 2, max_position_embeddings: 64, num_labels: 2, ...extra }, 'panel config');
  const m = await BertForSequenceClassification.fromConfig(config, { device: 'cpu', seed: 3 });
  await m.save(dir);
  await m.dispose();
  await nonzeroBiases(dir);
  const reference = await evaluate(dir, { BERT_TRAINER_NO_PANELS: '1', BERT_TRAINER_UNFUSED_ATTENTION: '1' });
  assert.equal(reference.kernel, 'none');
  const runs = [await evaluate(dir, {}), await evaluate(dir, { ATEN_CPU_CAPABILITY: 'avx2' }), await evaluate(dir, { ATEN_CPU_CAPABILITY: 'default' })];
  const native = addon().runtime().panelProducts;
  // Where the CPU has AVX2 at least (every x86-64 machine this project runs on), both runs take panel kernels.
  if (native !== 'none') assert.deepEqual(runs.map((r) => r.kernel), [native, 'avx2', 'none']);
  for (const run of runs) {
    for (const [key, want] of Object.entries(reference.outputs)) {
      const got = run.outputs[key];
      assert.equal(got.length, want.length, key);
      got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * Math.max(1, Math.abs(want[i])), `${run.kernel} ${key}[${i}]: ${v} against ${want[i]}`));
    }
  }
});

/** The training tests' model (bias and no bias, K in two slices, panels cut short), saved under `name`. */
async function trainingModel(name: string): Promise<string> {
  const dir = path.join(work.dir, name);
  const config = parseConfig({ vocab_size: 40, num_hidden_layers: 2, max_position_embeddings: 64, num_labels: 2, hidden_size: 96,
    num_attention_heads: 4, intermediate_size: 600 }, 'panel config');
  const m = await BertForSequenceClassification.fromConfig(config, { device: 'cpu', seed: 3 });
  await m.save(dir);
  await m.dispose();
  return dir;
}

// Training's forward and input-gradient products on the AVX2 panel kernels (modeling_bert.cc PanelProducts: wherever training's
// products are not oneDNN's, which ATEN_CPU_CAPABILITY=avx2 makes of any machine) against libtorch's (MKL): the
// losses of 3 steps and the trained model's logits. Bias and no bias, K in two slices, panels cut short.
test("training's panel products give libtorch's losses and trained weights", async () => {
  const dir = await trainingModel('train');
  const reference = await train(dir, { ATEN_CPU_CAPABILITY: 'avx2', BERT_TRAINER_NO_PANELS: '1' });
  const panels = await train(dir, { ATEN_CPU_CAPABILITY: 'avx2' });
  assert.equal(reference.training, 'libtorch');
  if (addon().runtime().panelProducts !== 'none') assert.equal(panels.training, 'panels');
  panels.losses.forEach((v, i) => assert.ok(Math.abs(v - reference.losses[i]) <= 1e-5 * Math.max(1, Math.abs(reference.losses[i])), `loss ${i}: ${v} against ${reference.losses[i]}`));
  assert.equal(panels.outputs.length, reference.outputs.length);
  panels.outputs.forEach((v, i) => assert.ok(Math.abs(v - reference.outputs[i]) <= 1e-5 * Math.max(1, Math.abs(reference.outputs[i])), `logit ${i}: ${v} against ${reference.outputs[i]}`));
});

// bf16 autocast where oneDNN has no bf16 kernels for the CPU (ONEDNN_MAX_CPU_ISA=AVX2 makes any machine one): the
// products on the fp32 panel kernels over operands rounded to bf16 and training's attention as fp32 operators with
// bf16's roundings (modeling_bert.cc Bf16PanelProducts, Attend) against libtorch's bf16 operators
// (BERT_TRAINER_NO_PANELS=1), dropout on (the same masks both ways): 3 steps' losses and the trained model's logits.
// Only the order of fp32 sums differs, which moves a bf16 rounding now and then: the losses 1.2e-4 / 6e-5 relative
// apart (sequence classification / masked LM), the trained model's logits 6e-5 / 7e-4 on average (AdamW turns
// rounding-sized gradient differences of near-zero elements into steps of up to lr, as in heads.test.ts). fp32
// training is 1.8e-2 / 8.4e-3 and 2.3e-2 / 6.4e-3 away, so products left unrounded fail. (A single intermediate
// rounding of attention left out moves less than the order effects: 3 steps cannot show it.)
test("bf16 autocast on the panel kernels gives libtorch's bf16 losses and trained weights", async () => {
  const dir = await trainingModel('train-bf16');
  for (const head of [{}, { TEST_MLM: '1' }] as Array<Record<string, string>>) {  // the masked-LM head's vocabulary product too (DecoderLinear)
    const avx2 = { ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2', ...head };
    const reference = await train(dir, { ...avx2, TEST_BF16: '1', BERT_TRAINER_NO_PANELS: '1' });
    const panels = await train(dir, { ...avx2, TEST_BF16: '1' });
    const fp32 = await train(dir, avx2);
    assert.equal(reference.bf16, 'libtorch');
    if (addon().runtime().panelProducts !== 'none') assert.equal(panels.bf16, 'panels');
    assert.equal(panels.outputs.length, reference.outputs.length);
    const losses = (r: { losses: number[] }) => Math.max(...r.losses.map((v, i) => Math.abs(v - reference.losses[i]) / Math.abs(reference.losses[i])));
    const outputs = (r: { outputs: number[] }) => r.outputs.reduce((sum, v, i) => sum + Math.abs(v - reference.outputs[i]), 0) / r.outputs.length;
    const name = head.TEST_MLM ? 'masked LM' : 'sequence classification';
    console.log(`${name}, bf16 on the panel kernels against libtorch's bf16: losses ${losses(panels).toExponential(2)} relative, trained logits ` +
      `${outputs(panels).toExponential(2)} on average; fp32 training against it: ${losses(fp32).toExponential(2)}, ${outputs(fp32).toExponential(2)}`);
    assert.ok(losses(panels) <= 1e-3 && outputs(panels) <= 2e-3, `${name}: bf16 on the panel kernels is off libtorch's bf16 by ${losses(panels)} / ${outputs(panels)}`);
    assert.ok(losses(fp32) > 1e-3 && outputs(fp32) > 2e-3, `${name}: fp32 training passes the bounds too: they cannot tell bf16 from fp32`);
  }
});

// The roofline workload's peak reads these rates beside libtorch's matmul (scripts/bench/bench.ts).
test('panelProductRates rates the panel products at each shape; bad shapes and counts are refused', async () => {
  const a = addon();
  const rates = await a.panelProductRates([[37, 96, 130], [6, 600, 64]], 1, 2);
  if (a.runtime().panelProducts === 'none') assert.deepEqual(rates, []);
  else {
    assert.equal(rates.length, 2);
    for (const r of rates) assert.ok(Number.isFinite(r) && r > 0.01 && r < 1e5, `rate ${r} GFLOP/s`);
  }
  await assert.rejects(a.panelProductRates([[0, 4, 4]], 1, 1) as Promise<unknown>, /shapes must be positive/);
  assert.throws(() => a.panelProductRates([[4, 4]] as unknown as Array<[number, number, number]>, 1, 1), /each shape is \[m, k, n\]/);
  assert.throws(() => a.panelProductRates([[4, 4, 4]], 0, 1), /at least 1/);
});
