// binding.gyp builds the same addon: the node-gyp build (npm run build:gyp, which CI runs before the tests; this test
// skips, saying so, where it has not been made) gives exactly the cmake-js build's numbers for a forward pass, a
// training step and AdamW. (CI also runs the transformers parity test on it: BERT_TRAINER_ADDON selects it.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADDON_RUN, root, tempDir } from './helpers.js';

const gyp = path.join(root, 'build-gyp', 'build', 'Release', 'bert_addon.node');
test('the node-gyp build of binding.gyp gives the cmake-js build\'s numbers exactly', { skip: existsSync(gyp) ? false : 'no node-gyp build here: npm run build:gyp makes it (.ci/run does)' }, () => {
  const { dir, cleanup } = tempDir('gyp-');
  try {
    writeFileSync(path.join(dir, 'run.cjs'), ADDON_RUN);
    const run = (addon: string) => JSON.parse(execFileSync(process.execPath, [path.join(dir, 'run.cjs'), addon], { cwd: dir, encoding: 'utf8' }));
    const viaGyp = run(gyp), viaCmake = run(path.join(root, 'build', 'Release', 'bert_addon.node'));
    assert.ok(viaGyp.loss > 0 && viaGyp.after.every(Number.isFinite));
    assert.deepEqual(viaGyp, viaCmake);
  } finally {
    cleanup();
  }
});
