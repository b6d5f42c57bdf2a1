// The prebuild is relocatable: prebuilds/<platform>-<arch>/ (made by `npm run prebuild` if absent) copied to a folder
// outside the checkout loads there with no .venv, no Python on PATH and no LD_LIBRARY_PATH, and gives exactly what the
// in-tree build gives for a forward pass and a training step. Its dynamic section names no path but $ORIGIN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADDON_RUN, ensurePrebuild, root, tempDir } from './helpers.js';

const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);

test('the prebuild folder works wherever it is copied: no Python, no .venv, no LD_LIBRARY_PATH; same numbers as the in-tree build', { timeout: 600_000 }, () => {
  ensurePrebuild();
  const dyn = execFileSync('readelf', ['-d', path.join(dir, 'node.napi.node')], { encoding: 'utf8' });
  assert.match(dyn, /\(RUNPATH\)\s+Library runpath: \[\$ORIGIN\]/);
  assert.doesNotMatch(dyn, /\[\/[^\]]*\]/, 'an absolute path in the dynamic section');
  const { dir: tmp, cleanup } = tempDir('relocated-');
  try {
    const app = path.join(tmp, 'some-app', 'native');
    cpSync(dir, app, { recursive: true });
    writeFileSync(path.join(tmp, 'run.cjs'), ADDON_RUN);
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
  ensurePrebuild();
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
