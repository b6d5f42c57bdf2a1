// Shared by the TypeScript scripts and tests: the repository root and the Python that scripts/python-env.js prepared.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/scripts/). */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The project's .venv Python when it exists, else $PYTHON or python3 (the same choice as scripts/python-env.js). */
export function projectPython(): string {
  const venv = path.join(root, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : process.env.PYTHON || 'python3';
}
