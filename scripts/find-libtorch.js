#!/usr/bin/env node
// One place that decides which libtorch the addon builds against; the build and the README both use it.
// Order: LIBTORCH, Torch_DIR, the `torch` package of python3 (or $PYTHON), the project's .venv,
// and last a project-local .venv with `pip install torch==$TORCH_VERSION` (default 2.13.0).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const venvDir = path.join(root, '.venv');
export const venvPython = path.join(venvDir, 'bin', 'python');
const TORCH_VERSION = process.env.TORCH_VERSION || '2.13.0';

function torchOfPython(python) {
  try {
    // cwd is a neutral folder: run from inside site-packages, `import torch` picks up the wrong module.
    const out = execFileSync(python, ['-c', 'import torch,sys;print(torch.utils.cmake_prefix_path);print(torch.__version__)'],
      { cwd: os.tmpdir(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const [prefix, version] = out.trim().split('\n');
    if (existsSync(path.join(prefix, 'Torch', 'TorchConfig.cmake'))) return { prefix, version, python };
  } catch { /* not this one */ }
  return null;
}

export function findLibtorch({ install = false, log = () => {} } = {}) {
  const tried = [];
  if (process.env.LIBTORCH) {
    const prefix = path.join(process.env.LIBTORCH, 'share', 'cmake');
    if (existsSync(path.join(prefix, 'Torch', 'TorchConfig.cmake'))) return { prefix, source: 'LIBTORCH' };
    tried.push(`LIBTORCH=${process.env.LIBTORCH} (no share/cmake/Torch/TorchConfig.cmake there)`);
  }
  if (process.env.Torch_DIR) {
    if (existsSync(path.join(process.env.Torch_DIR, 'TorchConfig.cmake'))) return { prefix: path.dirname(process.env.Torch_DIR), source: 'Torch_DIR' };
    tried.push(`Torch_DIR=${process.env.Torch_DIR} (no TorchConfig.cmake there)`);
  }
  const pythons = [process.env.PYTHON || 'python3', venvPython];
  for (const py of pythons) {
    const t = torchOfPython(py);
    if (t) return { ...t, source: py };
    tried.push(`${py} (no importable torch package)`);
  }
  if (install) {
    try {
      if (!existsSync(venvPython)) {
        log(`creating ${venvDir} (a project-local Python environment for PyTorch)`);
        // --system-site-packages: reuse whatever the machine already has (numpy, ...) instead of downloading it again.
        execFileSync(process.env.PYTHON || 'python3', ['-m', 'venv', '--system-site-packages', venvDir], { stdio: 'inherit' });
      }
      log(`pip install torch==${TORCH_VERSION} into ${venvDir}`);
      execFileSync(venvPython, ['-m', 'pip', 'install', '--disable-pip-version-check', '-q', `torch==${TORCH_VERSION}`], { stdio: 'inherit' });
      const t = torchOfPython(venvPython);
      if (t) return { ...t, source: venvPython };
      tried.push(`pip install torch==${TORCH_VERSION} into ${venvDir} (installed, but torch still does not import)`);
    } catch (e) {
      tried.push(`pip install torch==${TORCH_VERSION} into ${venvDir} (failed: ${String(e.message).split('\n')[0]})`);
    }
  }
  const err = new Error(
    `libtorch not found. Tried: ${tried.join('; ')}. ` +
    `Fix: set LIBTORCH to an unpacked libtorch folder, or Torch_DIR to the folder holding TorchConfig.cmake, ` +
    `or make \`python3 -c "import torch"\` work (pip install torch==${TORCH_VERSION}), then run \`npm install\` again.`);
  err.code = 'LIBTORCH_NOT_FOUND';
  throw err;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    const t = findLibtorch({ install: process.argv.includes('--install'), log: (m) => console.error(`[libtorch] ${m}`) });
    console.log(process.argv.includes('--json') ? JSON.stringify(t) : t.prefix);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
