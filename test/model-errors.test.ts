// Bad checkpoints and bad arguments: each is a clear JS error naming the file or argument; nothing crashes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BertForMultipleChoice, BertForSequenceClassification } from '../src/model.js';
import { encodeSafetensors, indexSafetensors, parseSafetensors } from '../src/safetensors.js';
import { InputError } from '../src/errors.js';
import { makeTinyModel } from './fixtures.js';
import { tempDir, tinyBatch as rawBatch } from './helpers.js';

/** helpers' batch with ids inside the tiny vocabulary (36 tokens). */
function tinyBatch() {
  const b = rawBatch();
  b.inputIds = b.inputIds.map((v) => v % 30);
  return b;
}

let work: { dir: string; cleanup: () => void }, good: string, model: BertForSequenceClassification;
before(async () => {
  work = tempDir('errors-test-');
  good = await makeTinyModel(path.join(work.dir, 'good'));
  model = await BertForSequenceClassification.fromPretrained(good, { device: 'cpu' });
});
after(async () => { await model.dispose(); work.cleanup(); });

async function variant(name: string, edit: (dir: string) => Promise<void> | void): Promise<string> {
  const dir = path.join(work.dir, name);
  await fs.cp(good, dir, { recursive: true });
  await edit(dir);
  return dir;
}
function header(obj: object, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(obj));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

test('broken checkpoints are refused with the file and the reason', async () => {
  const st = (d: string) => path.join(d, 'model.safetensors');
  const cases: Array<[string, (d: string) => Promise<void> | void, RegExp]> = [
    ['no-config', (d) => fs.rm(path.join(d, 'config.json')), /config.json does not exist/],
    ['no-weights', (d) => fs.rm(st(d)), /no model.safetensors/],
    ['truncated', (d) => writeFileSync(st(d), readFileSync(st(d)).subarray(0, 1000)), /model.safetensors: .*(truncated|run past the end)/],
    ['tiny', (d) => writeFileSync(st(d), Buffer.from([1, 2, 3])), /shorter than the 8-byte header size/],
    ['huge-header', (d) => { const b = Buffer.alloc(16); b.writeBigUInt64LE(1n << 40n); writeFileSync(st(d), b); }, /over the 100000000-byte limit/],
    ['claims-more', (d) => { const b = Buffer.alloc(16); b.writeBigUInt64LE(4096n); writeFileSync(st(d), b); }, /header claims 4096 bytes but the file has only 8/],
    ['overlap', (d) => writeFileSync(st(d), header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12))), /overlap/],
    ['out-of-range', (d) => writeFileSync(st(d), header({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8))), /run past the end/],
    ['dtype', (d) => writeFileSync(st(d), header({ a: { dtype: 'F8_E9M9', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1))), /unknown dtype "F8_E9M9"/],
    ['bad-json', (d) => writeFileSync(st(d), header({}, Buffer.alloc(0)).fill(0x7b, 8)), /not valid UTF-8 JSON/],
    ['shape', async (d) => {
      const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
      writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 40 }));
    }, /size mismatch for bert.encoder.layer.0.intermediate.dense.weight: the checkpoint has shape \[37, 32\], the model \(from config.json\) needs \[40, 32\]/],
    ['pickle', async (d) => { await fs.rm(st(d)); writeFileSync(path.join(d, 'pytorch_model.bin'), 'PK\x03\x04 pickle'); }, /pytorch_model.bin: only safetensors weights are loaded/],
    ['config-heads', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ hidden_size: 30, num_attention_heads: 4 })), /config.json: hidden_size 30 is not a multiple of num_attention_heads 4/],
    ['config-type', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'gpt2' })), /model_type is "gpt2"; supported: "bert", "roberta", "xlm-roberta", "electra", "distilbert", "modernbert", "deberta-v2"/],
    ['config-distilbert', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'distilbert', dim: 30, n_heads: 4 })), /config.json: dim 30 is not a multiple of n_heads 4/],
    ['config-act', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ hidden_act: 'swoosh' })), /hidden_act "swoosh" is not supported/],
    ['config-json', (d) => writeFileSync(path.join(d, 'config.json'), '{"vocab_size": '), /config.json: invalid JSON/],
    ['config-vocab', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ vocab_size: -3 })), /vocab_size must be an integer/],
  ];
  for (const [name, edit, re] of cases) {
    const dir = await variant(name, edit);
    await assert.rejects(BertForSequenceClassification.fromPretrained(dir, { device: 'cpu' }), (e: Error) => re.test(e.message) && !/\n\s+at /.test(e.message), name);
  }
  // A family option not built here is refused before anything is built.
  const electra = await variant('electra-mc', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'electra', summary_type: 'last' })));
  await assert.rejects(BertForMultipleChoice.fromPretrained(electra, { device: 'cpu' }), /config.json: summary_type "last" is not supported \(only "first", ELECTRA's default\)/);
  const deberta = await variant('deberta-conv', (d) => writeFileSync(path.join(d, 'config.json'), JSON.stringify({ model_type: 'deberta-v2', conv_kernel_size: 3 })));
  await assert.rejects(BertForSequenceClassification.fromPretrained(deberta, { device: 'cpu' }), /config.json: conv_kernel_size 3 is not supported/);
  const modern = await variant('modernbert-rope', (d) => writeFileSync(path.join(d, 'config.json'),
    JSON.stringify({ model_type: 'modernbert', pad_token_id: 0, rope_parameters: { full_attention: { rope_type: 'yarn', rope_theta: 1e4 } } })));
  await assert.rejects(BertForSequenceClassification.fromPretrained(modern, { device: 'cpu' }), /config.json: rope_parameters.full_attention.rope_type "yarn" is not supported/);
  // A header with deep nesting or an odd structure is rejected by validation, not by a crash.
  const deepJson = Buffer.from('{"a":' + '['.repeat(100000) + ']'.repeat(100000) + '}');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(deepJson.length));
  const deep = Buffer.concat([len, deepJson]);
  assert.throws(() => parseSafetensors(deep, 'deep'), InputError);
  const round = parseSafetensors(Buffer.concat(encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: new Uint8Array(8) }], { format: 'pt' })), 'round');
  assert.deepEqual(round.metadata, { format: 'pt' });
});

test('every invalid argument is a TypeError/RangeError naming it, before native work', async () => {
  const b = tinyBatch();
  const bad: Array<[string, object, RegExp]> = [
    ['length', { ...b, inputIds: b.inputIds.subarray(1) }, /batch.inputIds has 26 elements; shape \[3, 9\] needs 27/],
    ['vocab', { ...b, inputIds: b.inputIds.map((v, i) => (i === 4 ? 999 : v)) }, /batch.inputIds\[4\] = 999 is outside \[0, 36\)/],
    ['negative id', { ...b, inputIds: b.inputIds.map((v, i) => (i === 0 ? -1 : v)) }, /batch.inputIds\[0\] = -1/],
    ['type ids', { ...b, tokenTypeIds: b.tokenTypeIds.map(() => 2) }, /batch.tokenTypeIds\[0\] = 2 is outside \[0, 2\)/],
    ['mask', { ...b, attentionMask: b.attentionMask.map(() => 3) }, /batch.attentionMask\[0\] = 3 is outside \[0, 2\)/],
    ['too long', { ...b, shape: [1, 65], inputIds: new Int32Array(65) }, /batch.shape\[1\] must be in \[1, 64\], got 65/],
    ['batch 0', { ...b, shape: [0, 9], inputIds: new Int32Array(0) }, /batch.shape\[0\] must be in \[1, 1048576\], got 0/],
    ['array type', { ...b, inputIds: Array.from(b.inputIds) }, /batch.inputIds must be an Int32Array/],
    ['labels range', { ...b, labels: Int32Array.from([0, 5, 1]) }, /batch.labels\[1\] = 5 is outside \[0, 2\)/],
    ['labels type', { ...b, labels: Float32Array.from([0, 1, 1]) }, /batch.labels must be an Int32Array of class ids/],
  ];
  for (const [name, batch, re] of bad) await assert.rejects(model.forward(batch as never), (e: Error) => (e instanceof RangeError || e instanceof TypeError) && re.test(e.message), name);
  await assert.rejects(model.trainStep({ ...b, labels: undefined }), /labels is required/);
  await assert.rejects(model.optimizerStep({ lr: NaN }), (e: Error) => e instanceof RangeError && /lr must be a finite number >= 0, got NaN/.test(e.message));
  await assert.rejects(model.setOptimizer({ beta1: 1 }), /beta1 must be in \[0, 1\)/);
  await assert.rejects(model.optimizerStep({ lr: 1e-3, beta1: 0.9 } as never), /optimizerStep takes \{ lr \} only; give beta1 to setOptimizer\(\) once/);
  await assert.rejects(model.optimizerStep({ lr: 1e-3 }), /no gradients/);
  await assert.rejects(model.trainStep(b, { lossScale: 0 }), /lossScale must be a positive finite number/);
  await assert.rejects(BertForSequenceClassification.fromPretrained(good, { device: 'tpu' as never }), /device must be auto, cpu, cuda or cuda:N/);
  await assert.rejects(BertForSequenceClassification.fromPretrained(good, { device: 'cuda' }), /device 'cuda' was requested but this libtorch sees no CUDA device/);
  // The model still works after all of that.
  assert.equal((await model.forward(b)).logits.length, 6);
});

test('calls after dispose() reject clearly; calls queued before it complete', async () => {
  const m = await BertForSequenceClassification.fromPretrained(good, { device: 'cpu' });
  const queued = m.forward(tinyBatch());
  const disposing = m.dispose();
  await assert.rejects(m.forward(tinyBatch()), /this model was disposed/);
  assert.equal((await queued).logits.length, 6);
  await disposing;
  await m.dispose();  // twice is fine
});

test('generator state: round trip, and a bad state is refused without changing the model', async () => {
  const state = await model.rngState();
  assert.deepEqual(state.map((t) => [t.name, t.dtype, t.shape.length]), [['cpu', 'U8', 1]]);
  await model.seed(3);
  const before = await model.rngState();
  await model.setRngState(state);
  assert.ok(Buffer.from((await model.rngState())[0].data).equals(Buffer.from(state[0].data)));
  await assert.rejects(model.setRngState(new Uint8Array(8) as never), TypeError);
  await assert.rejects(model.setRngState([{ ...state[0], name: 'mps' }]), /generator state 'mps': expected cpu or cuda/);
  await assert.rejects(model.setRngState([{ name: 'cpu', dtype: 'U8', shape: [8], data: new Uint8Array(8) }]), /state/i);
  assert.ok(!Buffer.from(before[0].data).equals(Buffer.from(state[0].data)), 'seed(3) should change the state');
  assert.ok(Buffer.from((await model.rngState())[0].data).equals(Buffer.from(state[0].data)), 'a refused state changed the generator');
});

test('save() writes, from the addon, the same bytes the JS encoder writes; a failed write names the file and the reason', async () => {
  const dir = path.join(work.dir, 'saved');
  await model.save(dir);
  const js = Buffer.concat(encodeSafetensors(await model.stateDict(), { format: 'pt' }));
  assert.ok(readFileSync(path.join(dir, 'model.safetensors')).equals(js));
  writeFileSync(path.join(work.dir, 'a-file'), 'x');
  await assert.rejects(model.save(path.join(work.dir, 'a-file', 'sub')), /a-file/);
  // A full disk: the native writer reports it (the flush fails) instead of leaving a short file that looks complete.
  if (existsSync('/dev/full')) {
    const native = (model as unknown as { native: { saveSafetensors(f: string, w: string, m: object): Promise<void> } }).native;
    await assert.rejects(native.saveSafetensors('/dev/full', 'optimizer', {}), /cannot write \/dev\/full: No space left on device/);
  }
});

test('a checkpoint that shrinks between its header check and the read is reported, and says the model is now mixed', async () => {
  const dir = await variant('shrinks', () => {});
  const file = path.join(dir, 'model.safetensors');
  const { tensors } = await indexSafetensors(file);
  const size = (await fs.stat(file)).size;
  await fs.truncate(file, size - 64);  // the last tensor's bytes go missing after the header was checked
  const native = (model as unknown as { native: { load(t: object[]): Promise<unknown> } }).native;
  const ordered = [...tensors].sort((a, b) => a.offset - b.offset).map((t) => ({ ...t, name: `bert.${t.name.replace(/^bert\./, '')}` }));
  await assert.rejects(native.load(ordered), /the file ended before tensor .*; \d+ tensor\(s\) had already been loaded, so the model now holds a mix/);
});
