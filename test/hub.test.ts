// The real Hub client code against a Hub-shaped HTTP server on 127.0.0.1: downloads into the standard cache,
// offline use, fallback, tokens, sha256 checks, read-only caches, path safety. No mocking of the client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { promises as fs, readFileSync, readdirSync, existsSync, readlinkSync, chmodSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { hubFile, cachedFile, HubError, fileSource } from '../src/hub.js';
import { BertForSequenceClassification } from '../src/model.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { makeTinyModel } from './fixtures.js';
import { root, tempDir } from './helpers.js';

const COMMIT = 'a'.repeat(39) + '1';
interface Served { data: Buffer; lfs: boolean }
const files = new Map<string, Served>();
const requests: Array<{ method: string; url: string; auth?: string }> = [];
let corrupt = false;
let server: http.Server, endpoint: string, work: { dir: string; cleanup: () => void };

function etagOf(f: Served) {
  return f.lfs ? createHash('sha256').update(f.data).digest('hex') : createHash('sha1').update(f.data).digest('hex');
}

before(async () => {
  work = tempDir('hub-test-');
  const modelDir = await makeTinyModel(path.join(work.dir, 'source'));
  for (const name of readdirSync(modelDir)) files.set(name, { data: readFileSync(path.join(modelDir, name)), lfs: name.endsWith('.safetensors') });
  server = http.createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, auth: req.headers.authorization });
    const m = /^\/(?:(datasets)\/)?org\/model\/resolve\/([^/]+)\/(.+)$/.exec(req.url!.split('?')[0]);
    if (req.url === '/api/models/org/model') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ id: 'org/model', sha: COMMIT, siblings: [...files.keys()].map((rfilename) => ({ rfilename })) }));
    }
    if (!m) { res.statusCode = 404; res.setHeader('X-Error-Code', 'RepoNotFound'); return res.end('not found'); }
    const [, , rev, file] = m;
    // Any revision with a '/' is served too, as a permissive Hub would: the client must refuse it before asking.
    if (rev !== 'main' && rev !== COMMIT && !decodeURIComponent(rev).includes('/')) { res.statusCode = 404; res.setHeader('X-Error-Code', 'RevisionNotFound'); return res.end(); }
    const f = files.get(decodeURIComponent(file));
    if (!f) { res.statusCode = 404; res.setHeader('X-Error-Code', 'EntryNotFound'); return res.end('Entry not found'); }
    const body = corrupt && f.lfs ? Buffer.concat([f.data.subarray(0, -1), Buffer.from([f.data[f.data.length - 1] ^ 0xff])]) : f.data;
    res.setHeader('X-Repo-Commit', COMMIT);
    res.setHeader('ETag', `"${etagOf(f)}"`);
    if (f.lfs) { res.setHeader('X-Linked-ETag', `"${etagOf(f)}"`); res.setHeader('X-Linked-Size', String(f.data.length)); }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (range) {
      const [a, b] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${a}-${b}/${body.length}`);
      return res.end(req.method === 'HEAD' ? undefined : body.subarray(a, b + 1));
    }
    res.setHeader('Content-Length', String(body.length));
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.closeAllConnections(); server.close(); work.cleanup(); });

test('downloads into the standard cache layout, then works offline without a request', async () => {
  const cacheDir = path.join(work.dir, 'cache1');
  const p = await hubFile('org/model', 'model.safetensors', { cacheDir, endpoint, token: 'hf_test_token', offline: false });
  const storage = path.join(cacheDir, 'models--org--model');
  assert.equal(p, path.join(storage, 'snapshots', COMMIT, 'model.safetensors'));
  assert.equal(readFileSync(path.join(storage, 'refs', 'main'), 'utf8'), COMMIT);
  const sha = etagOf(files.get('model.safetensors')!);
  assert.equal(readlinkSync(p), path.join('..', '..', 'blobs', sha));
  assert.ok(readFileSync(p).equals(files.get('model.safetensors')!.data));
  assert.ok(requests.some((r) => r.auth === 'Bearer hf_test_token'), 'HF token sent');
  const before = requests.length;
  const again = await hubFile('org/model', 'model.safetensors', { cacheDir, offline: true });
  assert.equal(again, p);
  assert.equal(requests.length, before, 'offline mode made a request');
  // By commit: served from the cache with no request, also online.
  await hubFile('org/model', 'model.safetensors', { cacheDir, endpoint, revision: COMMIT, offline: false });
  assert.equal(requests.length, before);
});

test('a whole model and tokenizer load from the loopback Hub, and from HF_ENDPOINT/HF_HUB_CACHE', async () => {
  const cacheDir = path.join(work.dir, 'cache2');
  const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE };
  Object.assign(process.env, { HF_ENDPOINT: endpoint, HF_HUB_CACHE: cacheDir, HF_HUB_OFFLINE: '0' });
  try {
    const model = await BertForSequenceClassification.fromPretrained('org/model', { device: 'cpu' });
    assert.deepEqual(model.loadReport.newlyInitialized, ['classifier.weight', 'classifier.bias']);
    await model.dispose();
    const tok = await BertTokenizer.fromPretrained('org/model');
    assert.deepEqual(tok.encode('the cat', 'a dog').inputIds.length, 7);
    assert.ok(existsSync(path.join(cacheDir, 'models--org--model', 'snapshots', COMMIT, 'tokenizer.json')));
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
});

test('an LFS file whose sha256 does not match is discarded, leaving nothing behind', async () => {
  const cacheDir = path.join(work.dir, 'cache3');
  corrupt = true;
  try {
    await assert.rejects(hubFile('org/model', 'model.safetensors', { cacheDir, endpoint, offline: false }), /sha256 .* announced .*discarded/);
  } finally {
    corrupt = false;
  }
  const storage = path.join(cacheDir, 'models--org--model');
  const blobs = existsSync(path.join(storage, 'blobs')) ? readdirSync(path.join(storage, 'blobs')) : [];
  assert.deepEqual(blobs, []);
  assert.ok(!existsSync(path.join(storage, 'snapshots', COMMIT, 'model.safetensors')));
});

test('an unreachable Hub falls back to the cache with a warning; neither gives a clear error', async () => {
  const cacheDir = path.join(work.dir, 'cache1');
  const dead = 'http://127.0.0.1:9';  // discard port: connection refused
  const warnings: string[] = [];
  const p = await hubFile('org/model', 'config.json', { cacheDir, endpoint, offline: false });
  assert.equal(await hubFile('org/model', 'config.json', { cacheDir, endpoint: dead, offline: false, onWarning: (w) => warnings.push(w) }), p);
  assert.match(warnings[0], /could not be reached.*using the cached config.json of org\/model/);
  await assert.rejects(hubFile('org/other', 'config.json', { cacheDir, endpoint: dead, offline: false }),
    (e: Error) => e instanceof HubError && /config.json of model org\/other/.test(e.message) && e.message.includes(path.join(cacheDir, 'models--org--other')) && /Fix:/.test(e.message));
  await assert.rejects(hubFile('org/model', 'nope.json', { cacheDir, endpoint, offline: false }), /the Hub says the repo has no such file/);
  assert.equal(await hubFile('org/model', 'nope.json', { cacheDir, endpoint, offline: false, optional: true }), null);
});

test('repo ids, file names and symlinks cannot escape the cache', async () => {
  const cacheDir = path.join(work.dir, 'cache1');
  for (const bad of ['../etc', 'a/b/c', '/abs', 'org/..', '']) await assert.rejects(hubFile(bad, 'config.json', { cacheDir, offline: true }), HubError);
  for (const bad of ['../x', '/etc/passwd', 'a/../../b', 'a\\b']) await assert.rejects(hubFile('org/model', bad, { cacheDir, offline: true }), /invalid file name/);
  const snap = path.join(cacheDir, 'models--org--model', 'snapshots', COMMIT);
  await fs.symlink('/etc/hostname', path.join(snap, 'evil.json'));
  await assert.rejects(cachedFile('org/model', 'evil.json', { cacheDir }), /points outside its cache folder/);
  await assert.rejects(fileSource('./definitely-not-here'), /not a folder/);
  // Revisions become <cache>/refs/<revision>: online and offline, nothing outside the cache and no folders.
  const sent = requests.length;
  for (const bad of ['../../../../outside/x', 'a/b/x', 'refs/pr/../../x', 'main.lock', '.hidden', 'refs/pr/1/x', ''])
    for (const offline of [false, true])
      await assert.rejects(hubFile('org/model', 'config.json', { cacheDir, endpoint, offline, revision: bad }), /invalid revision/, `${bad} offline=${offline}`);
  assert.equal(requests.length, sent, 'a request was made for an invalid revision');
  assert.ok(!existsSync(path.join(work.dir, 'outside')) && !existsSync(path.join(cacheDir, 'models--org--model', 'refs', 'a')));
  for (const good of ['v1.0', 'refs/pr/12', COMMIT]) await hubFile('org/model', 'config.json', { cacheDir, endpoint, offline: false, revision: good }).catch((e) => assert.ok(!/invalid revision/.test(e.message), e.message));
});

test('a read-only cache is read, never written', async (t) => {
  // Root ignores permission bits, so the reader then runs as an unprivileged user, who must be able to read the
  // checkout (not so when it lives under a private home folder).
  const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
  try {
    execFileSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(path.join(root, 'dist', 'src', 'hub.js'))})`], { ...asUser, cwd: '/' });
  } catch {
    t.skip('the checkout is not readable by an unprivileged user, so a read-only cache cannot be simulated as root here');
    return;
  }
  const cacheDir = path.join(work.dir, 'cache1');
  const script = `
    import { hubFile } from ${JSON.stringify(path.join(root, 'dist', 'src', 'hub.js'))};
    const o = { cacheDir: ${JSON.stringify(cacheDir)}, endpoint: ${JSON.stringify(endpoint)}, offline: false };
    const hit = await hubFile('org/model', 'config.json', o);
    let err = '';
    try { await hubFile('org/model', 'vocab.txt', o); } catch (e) { err = e.message; }
    console.log(JSON.stringify({ hit, err }));`;
  const listing = () => execFileSync('find', [cacheDir]).toString();
  const snapshot = listing();
  execFileSync('chmod', ['-R', 'a-w', cacheDir]);
  try {
    for (let d = work.dir; d !== path.dirname(d); d = path.dirname(d)) if (d.startsWith(work.dir)) chmodSync(d, 0o755);
    // Async: this process serves the Hub the child talks to.
    const stdout = await new Promise<string>((resolve, reject) => execFile(process.execPath, ['--input-type=module', '-e', script], { ...asUser, cwd: '/', timeout: 60_000 },
      (err, so, se) => (err ? reject(new Error(`${err.message}\n${se}`)) : resolve(so))));
    const out = JSON.parse(stdout.trim());
    assert.ok(out.hit.endsWith('config.json'));
    assert.match(out.err, /is read-only and does not hold vocab.txt/);
  } finally {
    execFileSync('chmod', ['-R', 'u+w', cacheDir]);
  }
  assert.equal(listing(), snapshot, 'the read-only cache changed');
});
