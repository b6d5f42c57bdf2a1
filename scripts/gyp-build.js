#!/usr/bin/env node
// `npm run build:gyp`: the addon built through node-gyp from binding.gyp, in build-gyp/ (node-gyp always writes
// ./build, which is cmake-js's here; build-gyp/ links the sources in). Offline: node-gyp takes Node's headers from
// the installation running this script (--nodedir), never from the network. The result is
// build-gyp/build/Release/bert_addon.node; BERT_TRAINER_ADDON=<that file> makes the library load it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'build-gyp');
mkdirSync(dir, { recursive: true });
for (const f of ['binding.gyp', 'CMakeLists.txt', 'package.json', 'native', 'scripts', 'node_modules'])
  if (!existsSync(path.join(dir, f))) symlinkSync(path.join(root, f), path.join(dir, f));

// npm's own node-gyp (npm sets npm_config_node_gyp for scripts it runs), else the one beside this npm.
const npmRoot = () => execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
const nodeGyp = process.env.npm_config_node_gyp ?? path.join(npmRoot(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const nodedir = [process.env.npm_config_nodedir, path.resolve(process.execPath, '..', '..')].find((d) => d && existsSync(path.join(d, 'include', 'node', 'common.gypi')));
if (!existsSync(nodeGyp) || !nodedir) {
  console.error(`node-gyp (${nodeGyp}) or Node's headers (include/node/common.gypi beside ${process.execPath}; or set npm_config_nodedir) not found`);
  process.exit(1);
}
const t = performance.now();
execFileSync(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`, '-j', String(os.cpus().length)], { cwd: dir, stdio: 'inherit' });
const out = path.join(dir, 'build', 'Release', 'bert_addon.node');
if (!existsSync(out)) { console.error(`node-gyp finished but ${out} is missing`); process.exit(1); }
console.log(`${path.relative(root, out)} built by node-gyp in ${((performance.now() - t) / 1000).toFixed(0)} s`);
