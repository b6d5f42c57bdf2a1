// Hugging Face Hub files through the standard cache (the layout Python's huggingface_hub writes and reads):
//   <cache>/<models|datasets>--org--name/{refs/<revision>, snapshots/<commit>/<path>, blobs/<etag>}
// The network side is @huggingface/hub; this module adds offline mode, cache fallback, HF_ENDPOINT/HF_TOKEN,
// read-only caches, sha256 checks of LFS files and atomic writes.
import { createHash } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { downloadFile, fileDownloadInfo } from '@huggingface/hub';
import { exists, INCOMPLETE_SAVE, writeFileAtomic } from './fsutil.js';
import { UserError } from './errors.js';

export type RepoType = 'model' | 'dataset';
export interface HubOptions {
  revision?: string;
  repoType?: RepoType;
  /** Defaults: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Defaults: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Defaults: HF_TOKEN. */
  token?: string;
  /** Defaults: HF_HUB_OFFLINE. Offline never makes a request. */
  offline?: boolean;
  onWarning?: (message: string) => void;
}

/** The Hub or its cache cannot give a file: a user error (what to fix is in the message). */
export class HubError extends UserError {
  override name = 'HubError';
}

const COMMIT = /^[0-9a-f]{40}$/;
const TRUE = new Set(['1', 'true', 'yes', 'on']);

/** The Hub's address: the option, else HF_ENDPOINT, else https://huggingface.co (downloads and uploads alike). */
export function hubEndpoint(o: { endpoint?: string } = {}): string {
  return (o.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

/**
 * Text that a server sent back, or an error built from it, with the token masked: a server (or a proxy) that echoes
 * the request's Authorization header must not put the token on a terminal or into a log.
 */
export function maskToken(text: string, token: string | undefined = hubToken()): string {
  return token && token.length >= 4 ? text.split(token).join('<HUB_TOKEN>') : text;
}

/** The token: the option, else HF_TOKEN. */
export function hubToken(o: { token?: string } = {}): string | undefined {
  return o.token ?? process.env.HF_TOKEN ?? undefined;
}

export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  if (process.env.HF_HOME) return path.join(process.env.HF_HOME, 'hub');
  return path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface', 'hub');
}

export function isOffline(o: HubOptions = {}): boolean {
  return o.offline ?? TRUE.has((process.env.HF_HUB_OFFLINE ?? '').toLowerCase());
}

/** Repo ids and file names reach the file system: nothing absolute, no `..`, no odd characters. */
export function validateRepoId(repo: string): void {
  if (typeof repo !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)?$/.test(repo) || repo.includes('..') || repo.length > 96)
    throw new HubError(`invalid repo id ${JSON.stringify(repo)}: expected "name" or "org/name" of letters, digits, '-', '_' and '.'`);
}
export function validateRepoPath(file: string): void {
  const parts = file.split('/');
  if (!file || file.startsWith('/') || file.includes('\\') || file.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..'))
    throw new HubError(`invalid file name ${JSON.stringify(file)} in a repo: expected a relative path without '..'`);
}

/**
 * Revisions reach the file system as `<cache>/refs/<revision>`: a 40-hex commit, a Hub pull-request or
 * conversion ref (`refs/pr/N`, `refs/convert/name`), or a branch/tag name of letters, digits, '.', '_', '-'
 * (no '/', no '..', no '.lock' end, as git refuses them) -- checked on every path, online and offline.
 */
export function validateRevision(revision: string): void {
  const name = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
  const ok = typeof revision === 'string' && (COMMIT.test(revision) || /^refs\/pr\/[1-9]\d{0,8}$/.test(revision) ||
    (/^refs\/convert\/[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/.test(revision) && !revision.includes('..')) ||
    (name.test(revision) && !revision.includes('..') && !revision.endsWith('.lock')));
  if (!ok) throw new HubError(`invalid revision ${JSON.stringify(revision).slice(0, 140)}: expected a branch or tag name (letters, digits, '.', '_', '-'), a 40-character commit id, or refs/pr/N`);
}

/** <cache>/<models|datasets>--org--name */
function storageOf(repo: string, o: HubOptions): string {
  return path.join(o.cacheDir ?? hubCacheDir(), `${o.repoType ?? 'model'}s--${repo.split('/').join('--')}`);
}

/** The commit a revision points at in the cache (refs/<revision>), or the revision itself when it is a commit. */
async function cachedCommit(storage: string, revision: string): Promise<string | null> {
  if (COMMIT.test(revision)) return revision;
  validateRevision(revision);
  const commit = await fs.readFile(path.join(storage, 'refs', revision), 'utf8').then((t) => t.trim(), () => '');
  return COMMIT.test(commit) ? commit : null;
}

/** The cached copy of a file, or null; never leaves the repo's cache folder through a symlink. */
export async function cachedFile(repo: string, file: string, o: HubOptions = {}): Promise<string | null> {
  validateRepoId(repo);
  validateRepoPath(file);
  const storage = storageOf(repo, o);
  const commit = await cachedCommit(storage, o.revision ?? 'main');
  if (!commit) return null;
  const candidate = path.join(storage, 'snapshots', commit, file);
  try {
    const real = await fs.realpath(candidate);
    const root = await fs.realpath(storage);
    if (!real.startsWith(root + path.sep)) throw new HubError(`${candidate} points outside its cache folder ${storage}; refusing to read it`);
    return candidate;
  } catch (e) {
    if (e instanceof HubError) throw e;
    return null;
  }
}

/** True when the cache knows the file is absent at that revision (.no_exist marker, or a snapshot without it). */
async function knownMissing(repo: string, file: string, o: HubOptions): Promise<boolean> {
  const storage = storageOf(repo, o);
  const commit = await cachedCommit(storage, o.revision ?? 'main');
  if (!commit) return false;
  return await exists(path.join(storage, '.no_exist', commit, file)) || await exists(path.join(storage, 'snapshots', commit));
}

function notFound(repo: string, file: string, o: HubOptions, why: string): HubError {
  return new HubError(`cannot get ${file} of ${o.repoType ?? 'model'} ${repo} (revision ${o.revision ?? 'main'}): ${why}. ` +
    `Searched the cache folder ${storageOf(repo, o)}. ` +
    `Fix: connect to the Hub (unset HF_HUB_OFFLINE, check HF_ENDPOINT), point HF_HOME/HF_HUB_CACHE at a cache that has it, or pass a local folder path instead of a repo id.`);
}

function isNetworkError(e: unknown): boolean {
  const err = e as { name?: string; cause?: { code?: string }; code?: string; statusCode?: number };
  return err?.name === 'TypeError' || err?.name === 'AbortError' || !!err?.cause?.code || (err?.statusCode ?? 0) >= 500;
}

/**
 * A file of a Hub repo as a local path: from the cache when offline or when the Hub cannot be reached (with a
 * warning), else checked against the Hub and downloaded into the cache. `optional` files that the repo does not
 * have give null.
 */
export async function hubFile(repo: string, file: string, o: HubOptions & { optional?: boolean } = {}): Promise<string | null> {
  validateRepoId(repo);
  validateRepoPath(file);
  validateRevision(o.revision ?? 'main');
  if (isOffline(o)) {
    const hit = await cachedFile(repo, file, o);
    if (hit) return hit;
    if (o.optional && await knownMissing(repo, file, o)) return null;
    throw notFound(repo, file, o, 'HF_HUB_OFFLINE is set and the file is not in the cache');
  }
  try {
    return await download(repo, file, o);
  } catch (e) {
    if (e instanceof MissingOnHub) {
      if (o.optional) return null;
      throw notFound(repo, file, o, 'the Hub says the repo has no such file');
    }
    if (e instanceof HubError) throw e;
    const hit = await cachedFile(repo, file, o);
    if (hit && isNetworkError(e)) {
      o.onWarning?.(`the Hub could not be reached (${maskToken((e as Error).message, hubToken(o))}); using the cached ${file} of ${repo}`);
      return hit;
    }
    if (o.optional && isNetworkError(e) && await knownMissing(repo, file, o)) return null;
    throw notFound(repo, file, o, `the Hub request failed (${maskToken((e as Error).message, hubToken(o))})`);
  }
}

class MissingOnHub extends Error {}

async function download(repo: string, file: string, o: HubOptions): Promise<string> {
  const type = o.repoType ?? 'model';
  const revision = o.revision ?? 'main';
  const hubUrl = hubEndpoint(o);
  const accessToken = hubToken(o);
  const cache = o.cacheDir ?? hubCacheDir();
  const storage = storageOf(repo, o);
  if (COMMIT.test(revision)) {
    const hit = await cachedFile(repo, file, o);
    if (hit) return hit;  // a commit never changes: no request needed
  }
  let commit: string | undefined;
  const recordingFetch: typeof fetch = async (input, init) => {
    const r = await fetch(input, init);
    commit ??= r.headers.get('x-repo-commit') ?? undefined;
    return r;
  };
  const repoDesignation = { type, name: repo } as const;
  const info = await fileDownloadInfo({ repo: repoDesignation, path: file, revision, hubUrl, accessToken, fetch: recordingFetch });
  if (!info) throw new MissingOnHub();
  commit ??= COMMIT.test(revision) ? revision : undefined;
  if (!commit || !COMMIT.test(commit)) throw new HubError(`${hubUrl}: no X-Repo-Commit header for ${file} of ${repo}; cannot place it in the cache`);
  const etag = info.etag.replace(/^W\//, '').replace(/"/g, '');
  if (!/^[A-Za-z0-9._-]+$/.test(etag)) throw new HubError(`${hubUrl}: unusable ETag ${JSON.stringify(info.etag)} for ${file}`);
  const pointer = path.join(storage, 'snapshots', commit, file);
  const blob = path.join(storage, 'blobs', etag);
  try {
    if (!(await exists(pointer))) {
      if (!(await exists(blob))) {
        await fs.mkdir(path.dirname(blob), { recursive: true });
        const body = await downloadFile({ repo: repoDesignation, path: file, revision: commit, hubUrl, accessToken, fetch, downloadInfo: info, xet: false });
        if (!body) throw new MissingOnHub();
        const tmp = `${blob}.incomplete-${process.pid}`;
        const hash = createHash('sha256');
        const hasher = new Transform({
          transform(chunk, _enc, cb) { hash.update(chunk); cb(null, chunk); },
        });
        try {
          await pipeline(Readable.fromWeb(body.stream() as never), hasher, createWriteStream(tmp));
          // LFS files are named by their sha256: check it before the file enters blobs/.
          if (/^[0-9a-f]{64}$/.test(etag)) {
            const got = hash.digest('hex');
            if (got !== etag) throw new HubError(`${file} of ${repo}: downloaded content has sha256 ${got}, the Hub announced ${etag}; discarded`);
          }
          const h = await fs.open(tmp, 'r+');
          await h.sync();
          await h.close();
          await fs.rename(tmp, blob);
        } finally {
          await fs.rm(tmp, { force: true });
        }
      }
      await fs.mkdir(path.dirname(pointer), { recursive: true });
      const rel = path.relative(path.dirname(pointer), blob);
      const tmpLink = `${pointer}.tmp-${process.pid}`;
      try {
        await fs.symlink(rel, tmpLink);
        await fs.rename(tmpLink, pointer);
      } catch {
        await fs.rm(tmpLink, { force: true });
        await fs.copyFile(blob, pointer);  // file systems without symlinks: a plain copy, as huggingface_hub does
      }
    }
    if (!COMMIT.test(revision)) {
      const ref = path.join(storage, 'refs', revision);
      const current = await fs.readFile(ref, 'utf8').catch(() => '');
      if (current.trim() !== commit) await writeFileAtomic(ref, commit);  // unchanged refs are not rewritten (read-only caches)
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM')
      throw new HubError(`the Hugging Face cache ${cache} is read-only and does not hold ${file} of ${repo} yet; ` +
        'set HF_HUB_CACHE (or HF_HOME) to a writable folder, or fill the cache first');
    throw e;
  }
  return pointer;
}

/** A model/dataset given as a local folder or a Hub repo id, resolved file by file. */
export interface FileSource {
  /** A local path for display and for writing next to. */
  readonly label: string;
  get(file: string, optional?: boolean): Promise<string | null>;
}

export async function fileSource(nameOrPath: string, o: HubOptions = {}): Promise<FileSource> {
  const stat = await fs.stat(nameOrPath).catch(() => null);
  if (stat?.isDirectory()) {
    if (await exists(path.join(nameOrPath, INCOMPLETE_SAVE)))
      throw new HubError(`${nameOrPath}: its last save was interrupted (${INCOMPLETE_SAVE} is present), so its files may not belong together; ` +
        'use its newest checkpoint-N folder, or train again');
    return {
      label: nameOrPath,
      async get(file, optional = false) {
        validateRepoPath(file);
        const p = path.join(nameOrPath, file);
        if (await exists(p)) return p;
        if (optional) return null;
        throw new HubError(`${p} does not exist (the folder ${nameOrPath} was given as the model)`);
      },
    };
  }
  if (nameOrPath.startsWith('.') || nameOrPath.startsWith('/') || stat)
    throw new HubError(`${nameOrPath}: not a folder (give a checkpoint folder or a Hub repo id such as bert-base-uncased)`);
  validateRepoId(nameOrPath);
  return { label: nameOrPath, get: (file, optional = false) => hubFile(nameOrPath, file, { ...o, optional }) };
}
