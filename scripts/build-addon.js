#!/usr/bin/env node
// `npm install` step: find (or install) libtorch, then build the addon with cmake-js (Release, offline headers).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { findLibtorch } from './find-libtorch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

let torch;
try {
  torch = findLibtorch({ install: true, log: (m) => console.error(`[libtorch] ${m}`) });
} catch (e) {
  console.error(`\n${e.message}\n`);
  process.exit(1);
}
console.error(`[libtorch] using ${torch.prefix}${torch.version ? ` (torch ${torch.version})` : ''} from ${torch.source}`);

const cmakeJs = path.join(path.dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [cmakeJs, 'build', '--config', 'Release', '--directory', root, '--out', path.join(root, 'build'),
  `--CDCMAKE_PREFIX_PATH=${torch.prefix}`, '--parallel', String(Math.max(1, (await import('node:os')).cpus().length))];
try {
  execFileSync(process.execPath, args, { stdio: 'inherit', cwd: root });
} catch {
  console.error('\nThe addon did not build (see the compiler output above). libtorch: ' + torch.prefix);
  process.exit(1);
}
if (!existsSync(path.join(root, 'build', 'Release', 'bert_addon.node'))) {
  console.error('The build finished but build/Release/bert_addon.node is missing.');
  process.exit(1);
}
