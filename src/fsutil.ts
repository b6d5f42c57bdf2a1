// Writes that never leave a half-written file under the final name: temporary file, fsync, rename.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputError } from './errors.js';

export async function writeFileAtomic(file: string, data: string | Uint8Array | Uint8Array[]): Promise<void> {
  await writeAtomically(file, async (tmp) => {
    const h = await fs.open(tmp, 'w');
    try {
      for (const part of Array.isArray(data) ? data : [data]) await h.writeFile(part);  // writeFile loops until all is written
      await h.sync();
    } finally {
      await h.close();
    }
  });
}

/** `write` fills (and fsyncs) a temporary file next to `file`, which is then renamed into place: never a partial file. */
export async function writeAtomically(file: string, write: (tmp: string) => Promise<void>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await write(tmp);
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

export async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new InputError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InputError(file, `invalid JSON (${(e as Error).message})`);
  }
}
