#!/usr/bin/env node
// Makes sure the Python used by tests and benchmarks has torch (the same one the addon links) plus
// requirements-test.txt. Prefers the project's .venv; else python3 if it already has everything; else creates
// .venv (--system-site-packages, so the machine's torch is reused) and pip-installs what is missing.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { venvDir, venvPython } from './find-libtorch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = process.argv.includes('--bench');
const MODULES = ['torch', 'transformers', 'safetensors', 'sklearn', 'scipy', 'numpy', 'pyarrow', 'tensorboard', 'accelerate', 'seqeval', ...(BENCH ? ['datasets', 'onnx'] : [])];
const IMPORT = `import ${MODULES.join(', ')}`;
// Whether each package is there, without importing it: importing torch and transformers takes 5-10 s, and npm test
// asks every run. After a pip install they are imported for real.
const FIND = `import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in ${JSON.stringify(MODULES)}))`;

function works(py, check = FIND) {
  try {
    execFileSync(py, ['-c', check], { cwd: os.tmpdir(), stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function ensurePythonEnv() {
  if (existsSync(venvPython) && works(venvPython)) return venvPython;
  if (!existsSync(venvPython) && works(process.env.PYTHON || 'python3')) return process.env.PYTHON || 'python3';
  if (!existsSync(venvPython)) {
    console.error(`[python-env] creating ${venvDir}`);
    execFileSync(process.env.PYTHON || 'python3', ['-m', 'venv', '--system-site-packages', venvDir], { stdio: 'inherit' });
  }
  console.error(`[python-env] pip install -r requirements-test.txt${BENCH ? ' -r requirements-bench.txt' : ''} (and torch if missing)`);
  const torchOk = (() => { try { execFileSync(venvPython, ['-c', 'import torch'], { cwd: os.tmpdir(), stdio: 'ignore' }); return true; } catch { return false; } })();
  const args = ['-m', 'pip', 'install', '--disable-pip-version-check', '-q', '-r', path.join(root, 'requirements-test.txt')];
  if (BENCH) args.push('-r', path.join(root, 'requirements-bench.txt'));
  if (!torchOk) args.push(`torch==${process.env.TORCH_VERSION || '2.13.0'}`);
  execFileSync(venvPython, args, { stdio: 'inherit', cwd: root });
  if (!works(venvPython, IMPORT)) throw new Error(`${venvPython} still cannot \`${IMPORT}\` after pip install`);
  return venvPython;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    console.log(ensurePythonEnv());
  } catch (e) {
    console.error(`[python-env] ${e.message}`);
    process.exit(1);
  }
}
