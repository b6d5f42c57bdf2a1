// The prebuild is relocatable: prebuilds/<platform>-<arch>/ (made by `npm run prebuild` if absent) copied to a folder
// outside the checkout loads there with no .venv, no Python on PATH and no LD_LIBRARY_PATH, and gives exactly what the
// in-tree build gives for a forward pass and a training step. Its dynamic section names no path but $ORIGIN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensurePrebuild, root, tempDir } from './helpers.js';

const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

// Runs with the raw addon only (what an app's worker does under the library): init, forward, train step, AdamW.
const SCRIPT = `
const m = { exports: {} };
process.dlopen(m, process.argv[2]);
const a = m.exports;
const config = { model_type: 'bert', embedding_size: 16, sinusoidal_pos_embds: false, vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 24,
  max_position_embeddings: 32, type_vocab_size: 2, pad_token_id: 0, num_labels: 2, hidden_act: 'gelu', hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0, layer_norm_eps: 1e-12, initializer_range: 0.02, classifier_dropout: -1, problem_type: 'single_label_classification',
  architecture: 'BertForSequenceClassification' };
(async () => {
  const model = new a.Model();
  await model.init({ config, device: 'cpu', seed: 3, threads: 1 });
  const batch = { batch: 2, seq: 5, inputIds: Int32Array.from([2, 7, 9, 11, 3, 2, 8, 3, 0, 0]), attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]), labels: Int32Array.from([0, 1]) };
  const before = await model.forward(batch);
  const loss = await model.forwardBackward(batch, 1);
  await model.setOptimizer({ optim: 'adamw_torch_fused', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, momentum: 0, maxGradNorm: 1 });
  const norm = await model.optimizerStep(1e-2);
  const after = await model.forward(batch);
  console.log(JSON.stringify({ torch: a.runtime().torchVersion, before: Array.from(before.outputs[0].data), loss, norm, after: Array.from(after.outputs[0].data) }));
  await model.dispose();
})();
`;

test('the prebuild folder works wherever it is copied: no Python, no .venv, no LD_LIBRARY_PATH; same numbers as the in-tree build', { timeout: 600_000 }, () => {
  ensurePrebuild();
  const dyn = execFileSync('readelf', ['-d', path.join(dir, 'node.napi.node')], { encoding: 'utf8' });
  assert.match(dyn, /\(RUNPATH\)\s+Library runpath: \[\$ORIGIN\]/);
  assert.doesNotMatch(dyn, /\[\/[^\]]*\]/, 'an absolute path in the dynamic section');
  const { dir: tmp, cleanup } = tempDir('relocated-');
  try {
    const app = path.join(tmp, 'some-app', 'native');
    cpSync(dir, app, { recursive: true });
    writeFileSync(path.join(tmp, 'run.cjs'), SCRIPT);
    const bin = path.join(tmp, 'bin');  // PATH holds node and nothing else: no python3 anywhere
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const env = { PATH: bin, HOME: tmp };
    const relocated = JSON.parse(execFileSync(path.join(bin, 'node'), [path.join(tmp, 'run.cjs'), path.join(app, 'node.napi.node')], { cwd: tmp, env, encoding: 'utf8' }));
    const inTree = JSON.parse(execFileSync(process.execPath, [path.join(tmp, 'run.cjs'), path.join(root, 'build', 'Release', 'bert_addon.node')], { cwd: tmp, encoding: 'utf8' }));
    assert.ok(relocated.after.every(Number.isFinite) && relocated.loss > 0);
    assert.deepEqual(relocated, inTree);
  } finally {
    cleanup();
  }
});

// Issue 25 (7): a truncated library in a prebuild was mapped past its end by the dynamic loader, and the process died
// of SIGBUS with no message. The loader now checks every file against the sizes prebuild.json records.
test('a damaged prebuild (a truncated file) is named by the loader in one message, not a SIGBUS', { timeout: 120_000 }, () => {
  if (!existsSync(path.join(dir, 'prebuild.json')))
    execFileSync(process.execPath, [path.join(root, 'scripts', 'prebuild.js')], { cwd: root, stdio: 'pipe' });
  const { dir: tmp, cleanup } = tempDir('damaged-prebuild-');
  try {
    // A package without an in-tree build: its dist, its dependencies, and a prebuild whose addon is cut short.
    const pkg = path.join(tmp, 'pkg');
    mkdirSync(pkg);
    cpSync(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    cpSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
    symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
    const pre = path.join(pkg, 'prebuilds', path.basename(dir));
    mkdirSync(pre, { recursive: true });
    const manifest = JSON.parse(readFileSync(path.join(dir, 'prebuild.json'), 'utf8')) as { files: Array<{ file: string; bytes: number }> };
    for (const { file } of manifest.files) if (file !== 'node.napi.node') symlinkSync(path.join(dir, file), path.join(pre, file));
    cpSync(path.join(dir, 'prebuild.json'), path.join(pre, 'prebuild.json'));
    const addonBytes = readFileSync(path.join(dir, 'node.napi.node'));
    writeFileSync(path.join(pre, 'node.napi.node'), addonBytes.subarray(0, Math.floor(addonBytes.length / 3)));
    const run = spawnSync(process.execPath, ['-e', `import(${JSON.stringify(path.join(pkg, 'dist', 'src', 'native.js'))}).then((m) => m.addon())`], { encoding: 'utf8' });
    assert.equal(run.signal, null, `the loader died of ${run.signal}: ${run.stderr}`);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, new RegExp(`the prebuilt addon in .*${path.basename(dir)} is damaged: node.napi.node is ${Math.floor(addonBytes.length / 3)} bytes, its prebuild.json records ${addonBytes.length}`));
  } finally {
    cleanup();
  }
});
