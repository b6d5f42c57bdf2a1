#!/usr/bin/env node
// What binding.gyp needs to build the addon through node-gyp, printed for its command expansions (`<!@(node
// scripts/torch-flags.js --include)`), the way node-addon-api publishes its include path: the libtorch that
// scripts/find-libtorch.js finds (never installs: a build from source needs one), and the sources CMakeLists.txt lists
// (the one list). Each option prints one item per line:
//   --sources    native/*.cc, from CMakeLists.txt's add_library
//   --include    torch's include folders, Gloo's if its headers are here
//   --defines    the definitions Torch's CMake targets give (c10d, Gloo), as CMakeLists.txt does
//   --cflags     C++20, OpenMP (at::parallel_for's pragma; CMakeLists.txt says why), warnings, paths of this machine kept out of __FILE__
//   --libraries  torch's libraries, with an RPATH to them (as cmake-js's build has)
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findLibtorch } from './find-libtorch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const what = process.argv[2];
const lines = [];
if (what === '--sources') {
  const block = /add_library\(\$\{BERT_OBJECTS\} OBJECT([\s\S]*?)\$\{CMAKE_JS_SRC\}\)/.exec(readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8'))[1];
  lines.push(...[...block.matchAll(/^\s*(native\/\S+\.cc)/gm)].map((m) => m[1]));
} else {
  const torch = findLibtorch({ install: false, log: () => {} });
  const torchRoot = path.resolve(torch.prefix, '..', '..');  // prefix is <torch>/share/cmake
  const lib = path.join(torchRoot, 'lib');
  const cuda = existsSync(path.join(lib, 'libtorch_cuda.so'));
  const gloo = [process.env.GLOO_INCLUDE_DIR, '/usr/include', '/usr/local/include'].find((d) => d && existsSync(path.join(d, 'gloo', 'config.h')));
  if (what === '--include') lines.push(path.join(torchRoot, 'include'), path.join(torchRoot, 'include', 'torch', 'csrc', 'api', 'include'), ...(gloo && gloo !== '/usr/include' ? [gloo] : []));
  else if (what === '--defines') lines.push('BERT_ADDON_DISTRIBUTED', 'USE_DISTRIBUTED', 'USE_C10D_GLOO', 'USE_RPC', 'USE_TENSORPIPE', ...(gloo ? ['BERT_HAVE_GLOO'] : []));
  else if (what === '--cflags') lines.push('-std=gnu++20', '-O3', '-fopenmp', '-Wall', '-Wextra', ...(process.env.BERT_ADDON_WERROR ? ['-Werror'] : []), `-ffile-prefix-map=${root}/=`, `-ffile-prefix-map=${torchRoot}/=torch/`);
  else if (what === '--libraries') lines.push(`-L${lib}`, `-Wl,-rpath,${lib}`, '-Wl,--no-as-needed', '-ltorch', '-ltorch_cpu', '-lc10', ...(cuda ? ['-ltorch_cuda', '-lc10_cuda'] : []), '-Wl,--as-needed');
  else {
    console.error('usage: node scripts/torch-flags.js --sources|--include|--defines|--cflags|--libraries');
    process.exit(2);
  }
}
console.log(lines.join('\n'));
