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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';  // exists, owned by someone else
  }
}

const LOCK = '.trainer.lock';
/** Marks a folder whose final save was cut short: its files may not belong together (see `saveAsUnit`). */
export const INCOMPLETE_SAVE = '.incomplete-save';

/**
 * Takes `dir` for one run: creates it, proves it writable (before any training, so a bad output dir loses
 * nothing), and refuses while another live process holds it. A dead holder's lock and its `*.tmp-<pid>` /
 * `*.deleting-<pid>` leftovers are removed. Returns the release function.
 */
export async function lockOutputDir(dir: string, flag = '--output-dir'): Promise<() => Promise<void>> {
  const fail = (e: unknown, what: string) => {
    const code = (e as NodeJS.ErrnoException).code;
    return new InputError(dir, `${what} (${code ?? (e as Error).message}${code === 'EROFS' ? ': read-only file system' : code === 'EACCES' ? ': permission denied' : ''}); choose another ${flag}`);
  };
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (e) {
    throw fail(e, 'cannot create the output folder');
  }
  if (!(await fs.stat(dir)).isDirectory()) throw new InputError(dir, `not a folder; choose another ${flag}`);
  const lock = path.join(dir, LOCK);
  for (let attempt = 0; ; attempt++) {
    try {
      const h = await fs.open(lock, 'wx');
      await h.writeFile(JSON.stringify({ pid: process.pid, started: new Date().toISOString() }) + '\n');
      await h.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw fail(e, 'cannot write in the output folder');
      const holder = await fs.readFile(lock, 'utf8').then((t) => JSON.parse(t) as { pid?: number; started?: string }, () => ({} as { pid?: number; started?: string }));
      if (Number.isInteger(holder.pid) && holder.pid !== process.pid && alive(holder.pid!))
        throw new InputError(dir, `in use by another training run (pid ${holder.pid}, started ${holder.started ?? '?'}); wait for it or choose another ${flag}`);
      await fs.rm(lock, { force: true });  // stale: its process is gone
    }
  }
  for (const name of await fs.readdir(dir)) {
    const m = /\.(?:tmp|deleting)-(\d+)(?:-[a-z0-9]+)?$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
  return () => fs.rm(lock, { force: true });
}

/**
 * Writes a set of files into `dir` so that a reader never takes a mix of old and new ones for a whole: they are
 * written into a temporary folder, then moved in under a marker file that is removed last. A folder still holding
 * the marker is refused by loaders (`fileSource`).
 */
export async function saveAsUnit(dir: string, write: (tmpDir: string) => Promise<void>): Promise<void> {
  const tmp = path.join(dir, `.final.tmp-${process.pid}`);
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { recursive: true });
  await write(tmp).catch(async (e) => {
    await fs.rm(tmp, { recursive: true, force: true }).catch(() => undefined);  // a full disk is not left fuller
    throw e;
  });
  await writeFileAtomic(path.join(dir, INCOMPLETE_SAVE), `pid ${process.pid}\n`);
  for (const name of await fs.readdir(tmp)) await fs.rename(path.join(tmp, name), path.join(dir, name));
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.rm(path.join(dir, INCOMPLETE_SAVE));
}
