#!/usr/bin/env node
// `npm install` step: find (or install) libtorch, then build the addon with cmake-js (Release, offline headers).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { findLibtorch } from './find-libtorch.js';
import { needsReconfigure, readCache } from './cmake-cache.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
// `--if-no-prebuild` (npm install): a prebuild for this platform that loads means nothing to compile, no libtorch to
// find and no Python: an app's users get the shipped binary. BERT_ADDON_OUT (the build folder) and
// BERT_ADDON_TARGET=prebuild (link the prebuild module, RUNPATH $ORIGIN, from the same objects): scripts/prebuild.js.
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'node.napi.node');
if (process.argv.includes('--if-no-prebuild') && existsSync(prebuilt)) {
  try {
    execFileSync(process.execPath, ['-e', `process.dlopen({ exports: {} }, ${JSON.stringify(prebuilt)})`], { stdio: 'pipe', env: { ...process.env, LD_LIBRARY_PATH: '' } });
    console.error(`[addon] using the prebuild ${path.relative(root, prebuilt)}: nothing to compile`);
    process.exit(0);
  } catch (e) {
    console.error(`[addon] the prebuild ${path.relative(root, prebuilt)} does not load here (${String(e.stderr ?? e).split('\n').find((l) => l.trim()) ?? ''}); building from source`);
  }
}
// In an app installed from the packages (npm run pack): the platform package an optionalDependency named, when it
// is there and loads, is the addon (src/native.ts takes it); nothing to build.
if (process.argv.includes('--if-no-prebuild')) {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
    let file;
    try {
      file = path.join(path.dirname(require.resolve(`${name}/package.json`)), 'node.napi.node');
      execFileSync(process.execPath, ['-e', `process.dlopen({ exports: {} }, ${JSON.stringify(file)})`], { stdio: 'pipe' });
    } catch {
      continue;  // not installed here (another platform's), or it does not load
    }
    console.error(`[addon] using the platform package ${name}: nothing to compile`);
    process.exit(0);
  }
}
const outDir = path.resolve(root, process.env.BERT_ADDON_OUT ?? 'build');
const prebuildTarget = process.env.BERT_ADDON_TARGET === 'prebuild';
const built = prebuildTarget ? path.join(outDir, 'prebuild', 'bert_addon.node') : path.join(outDir, 'Release', 'bert_addon.node');

let torch;
try {
  torch = findLibtorch({ install: true, log: (m) => console.error(`[libtorch] ${m}`) });
} catch (e) {
  console.error(`\n${e.message}\n`);
  process.exit(1);
}
console.error(`[libtorch] using ${torch.prefix}${torch.version ? ` (torch ${torch.version})` : ''} from ${torch.source}`);

// A CUDA libtorch's CMake config needs the CUDA toolkit; FindCUDAToolkit misses it when `nvcc` on PATH is a
// wrapper script outside the toolkit, so point it at CUDA_HOME / CUDA_PATH / /usr/local/cuda when there is one.
const cudaRoot = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].find((d) => d && existsSync(path.join(d, 'bin', 'nvcc')));
// A toolkit without NVRTC (pip's CUDA wheels carry their own in site-packages/nvidia/*/lib) fails the same config.
const site = path.resolve(torch.prefix, '..', '..', '..');
const nvrtc = cudaRoot && !existsSync(path.join(cudaRoot, 'lib64', 'libnvrtc.so')) && existsSync(path.join(site, 'nvidia'))
  ? readdirSync(path.join(site, 'nvidia')).map((d) => path.join(site, 'nvidia', d, 'lib'))
    .flatMap((d) => (existsSync(d) ? readdirSync(d).filter((f) => /^libnvrtc\.so(\.\d+)?$/.test(f)).map((f) => path.join(d, f)) : []))[0]
  : undefined;
const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cmakeJs, 'build', '--config', 'Release', '--directory', root, '--out', outDir, ...(prebuildTarget ? ['--target', 'bert_addon_prebuild'] : []),
  ...(process.env.BERT_ADDON_DISTRIBUTED ? [`--CDBERT_ADDON_DISTRIBUTED=${process.env.BERT_ADDON_DISTRIBUTED}`] : []),
  `--CDCMAKE_PREFIX_PATH=${torch.prefix}`, ...(cudaRoot ? [`--CDCUDAToolkit_ROOT=${cudaRoot}`, `--CDCUDA_TOOLKIT_ROOT_DIR=${cudaRoot}`] : []), ...(nvrtc ? [`--CDCUDA_nvrtc_LIBRARY=${nvrtc}`] : []), '--parallel', String(Math.max(1, (await import('node:os')).cpus().length))];
// cmake-js `build` configures only a new build folder, so a header installed since (Gloo's, apt-get install
// libgloo-dev) would stay "not found" in CMakeCache.txt: `npm run rebuild` (--reconfigure) configures anew, and so
// does any build whose cache recorded Gloo missing while its headers are now there.
try {
  if (needsReconfigure(readCache(outDir), { requested: process.argv.includes('--reconfigure') })) {
    console.error('[addon] configuring anew');
    execFileSync(process.execPath, [args[0], 'configure', ...args.slice(2)], { stdio: 'inherit', cwd: root });
  }
  execFileSync(process.execPath, args, { stdio: 'inherit', cwd: root });
} catch {
  console.error('\nThe addon did not build (see the compiler output above). libtorch: ' + torch.prefix);
  process.exit(1);
}
if (!existsSync(built)) {
  console.error(`The build finished but ${built} is missing.`);
  process.exit(1);
}
