#!/usr/bin/env node
// `npm run prebuild`: prebuilds/<platform>-<arch>[-cuda]/ holding the addon (node.napi.node, built with RUNPATH
// $ORIGIN) and exactly the libtorch shared libraries it needs, found by following NEEDED entries from the addon
// into the torch it was built against (system libraries, those outside that torch, stay out). The folder works
// wherever it is copied: an app ships it, node-gyp-build (src/native.ts) loads it, no Python or .venv needed.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch } from './find-libtorch.js';
import { readCache } from './cmake-cache.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const torch = findLibtorch({ install: false, log: () => {} });
// The prebuild module links the in-tree build's objects (CMakeLists.txt) when that build is of this libtorch; another
// libtorch (a CUDA one for its prebuild) compiles in a folder of its own.
const inTreePrefix = /^CMAKE_PREFIX_PATH:\w+=(.*)$/m.exec(readCache(path.join(root, 'build')) ?? '')?.[1];
const sameTorch = inTreePrefix === torch.prefix;
const out = path.join(root, sameTorch ? 'build' : 'build-prebuild');
execFileSync(process.execPath, [path.join(root, 'scripts', 'build-addon.js')], { stdio: 'inherit', env: { ...process.env, BERT_ADDON_OUT: out, BERT_ADDON_TARGET: 'prebuild' } });
const addonFile = path.join(out, 'prebuild', 'bert_addon.node');

const torchRoot = path.resolve(torch.prefix, '..', '..');  // prefix is <torch>/share/cmake
const torchLib = path.join(torchRoot, 'lib');
// A CUDA wheel's libraries also come from its nvidia-* packages beside torch (site-packages/nvidia/*/lib).
const site = path.resolve(torchRoot, '..');
const searchDirs = [torchLib, ...(existsSync(path.join(site, 'nvidia')) ? readdirSync(path.join(site, 'nvidia')).map((d) => path.join(site, 'nvidia', d, 'lib')).filter(existsSync) : [])];

const dynamic = (file) => execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
const needed = (file) => [...dynamic(file).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
const libs = new Map();  // name -> path, in torch's folders only
const queue = needed(addonFile);
while (queue.length) {
  const name = queue.shift();
  if (libs.has(name)) continue;
  const dir = searchDirs.find((d) => existsSync(path.join(d, name)));
  if (!dir) continue;  // a system library (libc, libstdc++, ...): the app's machine provides it
  libs.set(name, path.join(dir, name));
  queue.push(...needed(path.join(dir, name)));
}
const variant = [...libs.keys()].some((n) => /^lib(torch|c10)_cuda\.so/.test(n)) ? 'cuda' : 'cpu';
const dest = path.join(root, 'prebuilds', `${process.platform}-${process.arch}${variant === 'cuda' ? '-cuda' : ''}`);
rmSync(dest, { recursive: true, force: true });
mkdirSync(dest, { recursive: true });
copyFileSync(addonFile, path.join(dest, 'node.napi.node'));
for (const [name, file] of libs) copyFileSync(file, path.join(dest, name));
const files = readdirSync(dest).map((f) => ({ file: f, bytes: statSync(path.join(dest, f)).size }));
const total = files.reduce((a, f) => a + f.bytes, 0);
writeFileSync(path.join(dest, 'prebuild.json'), JSON.stringify({ variant, torch: torch.version, platform: `${process.platform}-${process.arch}`, files, bytes: total }, null, 2) + '\n');
const mb = (b) => (b / 2 ** 20).toFixed(1);
console.log(`${path.relative(root, dest)}: ${variant} variant, torch ${torch.version}, ${files.length} files, ${mb(total)} MB`);
for (const f of files.sort((a, b) => b.bytes - a.bytes)) console.log(`  ${f.file.padEnd(28)} ${mb(f.bytes).padStart(8)} MB`);
const runpath = /\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]/.exec(dynamic(path.join(dest, 'node.napi.node')))?.[1];
if (runpath !== '$ORIGIN') { console.error(`RUNPATH of the addon is ${runpath}, expected $ORIGIN`); process.exit(1); }
