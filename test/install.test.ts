// Installing in an app as sharp's users do: `npm run pack`'s tarballs (the main package, no binaries, its JavaScript
// dependencies bundled; the linux-x64 platform package with the stripped prebuild) installed with `npm install` into
// a fresh app outside the checkout, with a PATH holding node and npm only (no compiler, CMake, Python or pip) and no
// network (--offline, the registry pointed at a closed port): nothing compiles, it takes under a minute, and the app
// loads the library, trains a step of a tiny model and saves it, with exactly the in-tree build's numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensurePrebuild, root, tempDir } from './helpers.js';

// The app: the library as a user imports it; a seeded tiny model, one training step, a save; the numbers printed.
const APP = `
import { BertForSequenceClassification, nativeAddon, parseConfig } from 'bert-trainer-node';
const out = process.argv[2];
const config = parseConfig({ vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 24, max_position_embeddings: 32,
  hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 'config');
const model = await BertForSequenceClassification.fromConfig(config, { device: 'cpu', seed: 3, threads: 1 });
const batch = { shape: [2, 5], inputIds: Int32Array.from([2, 7, 9, 11, 3, 2, 8, 3, 0, 0]), attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
  labels: Int32Array.from([0, 1]) };
await model.setOptimizer({});
const loss = await model.trainStep(batch);
await model.optimizerStep({ lr: 1e-2 });
const { logits } = await model.forward(batch);
await model.save(out);
await model.dispose();
console.log(JSON.stringify({ torch: nativeAddon().runtime().torchVersion, loss, logits: Array.from(logits) }));
`;

function du(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += du(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

test('npm run pack\'s tarballs install into an app with only node and npm, offline, compiling nothing; the app trains a step and saves', { timeout: 600_000 }, () => {
  ensurePrebuild();
  const { dir, cleanup } = tempDir('install-');
  try {
    const tarballs = path.join(dir, 'tarballs');
    // gzip level 1: a third of level 6's time for the 330 MB of libraries; what an install unpacks is the same.
    const packed = execFileSync(process.execPath, [path.join(root, 'dist', 'scripts', 'pack.js'), '--out', tarballs, '--gzip-level', '1'], { cwd: root, encoding: 'utf8' });
    console.log(packed.trim());
    const files = readdirSync(tarballs).filter((f) => f.endsWith('.tgz'));
    const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version;
    assert.deepEqual(files.sort(), [`bert-trainer-node-${version}.tgz`, `bert-trainer-node-${process.platform}-${process.arch}-${version}.tgz`].sort());

    // PATH: node, npm and the shell npm runs install scripts with; no g++, cmake, make, python3, pip.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    symlinkSync('/bin/sh', path.join(bin, 'sh'));
    const npmCli = path.join(execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim(), 'npm', 'bin', 'npm-cli.js');
    symlinkSync(npmCli, path.join(bin, 'npm'));
    for (const tool of ['g++', 'c++', 'cmake', 'make', 'python3', 'pip'])
      assert.throws(() => execFileSync(path.join(bin, 'node'), ['-e', `require('child_process').execFileSync(${JSON.stringify(tool)}, ['--version'])`], { env: { PATH: bin }, stdio: 'pipe' }));

    const app = path.join(dir, 'app');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'some-app', version: '1.0.0', private: true, type: 'module' }));
    writeFileSync(path.join(app, 'main.js'), APP);
    const env = { PATH: bin, HOME: dir, npm_config_cache: path.join(dir, 'npm-cache'), npm_config_registry: 'http://127.0.0.1:9/', npm_config_update_notifier: 'false' };
    const t = performance.now();
    const run = spawnSync(path.join(bin, 'npm'), ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', ...files.map((f) => path.join(tarballs, f))],
      { cwd: app, env, encoding: 'utf8' });
    const seconds = (performance.now() - t) / 1000, log = run.stdout + run.stderr;
    assert.equal(run.status, 0, log);
    // Its time is printed, not asserted: on a shared host the same install took 25-49 s.
    const installed = du(path.join(app, 'node_modules'));
    console.log(`npm install of the two tarballs: ${seconds.toFixed(1)} s, node_modules ${(installed / 2 ** 20).toFixed(1)} MB; ${log.trim().split('\n').pop()}`);
    // The main package's install step ("use a prebuild, else build") found the platform package: no build began.
    assert.match(log, /\[addon\] using the platform package @bert-trainer-node\/linux-x64: nothing to compile/, log);
    assert.doesNotMatch(log, /\[libtorch\]|cmake-js|configuring anew/, 'the install tried to build from source');

    const saved = path.join(dir, 'saved');
    const got = JSON.parse(execFileSync(path.join(bin, 'node'), [path.join(app, 'main.js'), saved], { cwd: app, env, encoding: 'utf8' }));
    assert.deepEqual(readdirSync(saved).sort(), ['config.json', 'model.safetensors']);
    // The same app against this checkout's in-tree build: stripping and packaging changed no number.
    const local = path.join(dir, 'local-app');
    mkdirSync(path.join(local, 'node_modules'), { recursive: true });
    writeFileSync(path.join(local, 'package.json'), JSON.stringify({ name: 'local-app', private: true, type: 'module' }));
    writeFileSync(path.join(local, 'main.js'), APP);
    symlinkSync(root, path.join(local, 'node_modules', 'bert-trainer-node'));
    const want = JSON.parse(execFileSync(process.execPath, [path.join(local, 'main.js'), path.join(dir, 'saved-local')], { cwd: local, encoding: 'utf8' }));
    assert.deepEqual(got, want);
    assert.ok(got.loss > 0 && got.logits.every(Number.isFinite));
  } finally {
    cleanup();
  }
});

test('the loader picks the platform package for the machine, takes the CUDA one only when asked (no NVIDIA driver here), and names every place it looked when none fits', { timeout: 120_000 }, () => {
  const prebuild = ensurePrebuild();
  const { dir, cleanup } = tempDir('loader-');
  try {
    // A package without an in-tree build or prebuilds/: what an app has after `npm install` of the tarballs.
    const pkg = path.join(dir, 'node_modules', 'bert-trainer-node');
    mkdirSync(pkg, { recursive: true });
    // (Copies: the loader finds its package folder from its own file's real path.)
    cpSync(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
    cpSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
    symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));  // (its own dependencies)
    const scope = path.join(dir, 'node_modules', '@bert-trainer-node');
    mkdirSync(scope);
    const load = (env: Record<string, string>) => spawnSync(process.execPath, ['-e',
      `import(${JSON.stringify(path.join(pkg, 'dist', 'src', 'native.js'))}).then((m) => { m.addon(); console.log(m.addonSource()); })`],
    { cwd: dir, encoding: 'utf8', env: { ...process.env, BERT_TRAINER_VARIANT: '', ...env } });
    // No platform package: one message naming each place and the package to install.
    const none = load({});
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /the native addon for linux-x64 was not found; looked for .*bert-trainer-node\/build\/Release\/bert_addon\.node, .*prebuilds\/linux-x64 \(node-gyp-build\), the package @bert-trainer-node\/linux-x64\. In an app: npm install @bert-trainer-node\/linux-x64/);
    // The CPU package (the prebuild's folder stands in for the installed package): taken.
    const nodeModulesOf = (name: string) => { const d = path.join(scope, name); mkdirSync(d); for (const f of readdirSync(prebuild)) symlinkSync(path.join(prebuild, f), path.join(d, f));
      writeFileSync(path.join(d, 'package.json'), JSON.stringify({ name: `@bert-trainer-node/${name}`, version: '0.0.0' })); };
    nodeModulesOf('linux-x64');
    assert.equal(load({}).stdout.trim(), 'the package @bert-trainer-node/linux-x64');
    // A CUDA package installed by hand is passed over without a driver, and taken when asked for.
    nodeModulesOf('linux-x64-cuda');
    assert.equal(load({}).stdout.trim(), 'the package @bert-trainer-node/linux-x64', 'no NVIDIA driver here: the CPU package');
    assert.equal(load({ BERT_TRAINER_VARIANT: 'cuda' }).stdout.trim(), 'the package @bert-trainer-node/linux-x64-cuda');
  } finally {
    cleanup();
  }
});
