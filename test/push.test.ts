// --push-to-hub against a Hub-shaped server on 127.0.0.1 that implements what @huggingface/hub calls: whoami,
// create-repo, preupload (weights through LFS, the rest inline), the LFS batch and upload, and the commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { makePairs, makeTinyModel } from './fixtures.js';
import { root, tempDir } from './helpers.js';

const TOKEN = 'hf_test_token_123';

interface Commit { repo: string; title: string; files: Map<string, Buffer> }

/** A Hub with the endpoints an upload uses; `failCommit` answers every commit with HTTP 500. */
async function fakeHub(o: { failCommit?: boolean } = {}) {
  const repos = new Map<string, { private: boolean }>(), lfs = new Map<string, Buffer>(), commits: Commit[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const json = (status: number, v: unknown) => { res.writeHead(status, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(v)); };
    const url = new URL(req.url!, 'http://x');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.headers.authorization !== `Bearer ${TOKEN}` && !url.pathname.startsWith('/lfs/')) return json(401, { error: 'Invalid credentials' });
    let m;
    if (req.method === 'GET' && url.pathname === '/api/whoami-v2') return json(200, { type: 'user', name: 'tester', auth: { accessToken: { role: 'write' } } });
    if (req.method === 'POST' && url.pathname === '/api/repos/create') {
      const b = JSON.parse(body.toString());
      const id = `${b.organization}/${b.name}`;
      if (repos.has(id)) return json(409, { error: 'You already created this model repo' });
      repos.set(id, { private: b.private === true || b.visibility === 'private' });
      return json(200, { url: `${base}/${id}` });
    }
    if (req.method === 'POST' && (m = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/preupload\/main$/))) {
      if (!repos.has(m[1])) return json(404, { error: 'Repository not found' });
      const b = JSON.parse(body.toString());
      return json(200, { files: b.files.map((f: { path: string }) => ({ path: f.path, uploadMode: f.path.endsWith('.safetensors') ? 'lfs' : 'regular', shouldIgnore: false })) });
    }
    if (req.method === 'POST' && (m = url.pathname.match(/^\/([^/]+\/[^/]+)\.git\/info\/lfs\/objects\/batch$/))) {
      const b = JSON.parse(body.toString());
      return json(200, { transfer: 'basic', objects: b.objects.map((x: { oid: string; size: number }) => ({ oid: x.oid, size: x.size, actions: { upload: { href: `${base}/lfs/${x.oid}` } } })) });
    }
    if (req.method === 'PUT' && (m = url.pathname.match(/^\/lfs\/([0-9a-f]{64})$/))) {
      if (createHash('sha256').update(body).digest('hex') !== m[1]) return json(400, { error: 'sha256 mismatch' });
      lfs.set(m[1], body);
      res.writeHead(200); return res.end();
    }
    if (req.method === 'POST' && (m = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/commit\/main$/))) {
      if (o.failCommit) return json(500, { error: 'Internal Error - We\'re working hard to fix this as soon as possible!' });
      const lines = body.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const c: Commit = { repo: m[1], title: lines[0].value.summary, files: new Map() };
      for (const { key, value } of lines.slice(1)) {
        if (key === 'file') c.files.set(value.path, Buffer.from(value.content, 'base64'));
        else if (key === 'lfsFile') {
          const blob = lfs.get(value.oid);
          if (!blob) return json(400, { error: `LFS object ${value.oid} was never uploaded` });
          c.files.set(value.path, blob);
        }
      }
      commits.push(c);
      return json(200, { success: true, commitOid: 'c'.repeat(40), commitUrl: `${base}/${m[1]}/commit/${'c'.repeat(40)}` });
    }
    json(404, { error: `no route ${req.method} ${url.pathname}` });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, repos, commits, close: () => server.close() };
}

/** A local model folder and data files: training needs nothing from the (fake) Hub, which only receives. */
async function localFixture(dir: string): Promise<string[]> {
  const model = await makeTinyModel(path.join(dir, 'tiny-bert'));
  const write = async (n: number, seed: number, file: string) => {
    const p = makePairs(n, seed);
    await fs.writeFile(file, p.sentence1.map((s, i) => JSON.stringify({ sentence1: s, sentence2: p.sentence2[i], label: p.label[i] })).join('\n') + '\n');
    return file;
  };
  return ['--model', model, '--train-file', await write(24, 1, path.join(dir, 'train.jsonl')), '--validation-file', await write(16, 2, path.join(dir, 'val.jsonl'))];
}

function train(fixture: string[], hub: string, args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, HF_ENDPOINT: hub, HF_TOKEN: '' };
  delete env.HF_HUB_OFFLINE;
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => execFile(process.execPath, [path.join(root, 'train.js'),
    ...fixture, '--device', 'cpu', '--threads', '1', '--epochs', '2', '--learning-rate', '1e-3', ...args], { env },
  (e, stdout, stderr) => resolve({ code: e ? (e.code as number) : 0, stdout, stderr })));
}

test('--push-to-hub uploads the model (weights through LFS), tokenizer, config, results and a model card; the token never lands in a file', async () => {
  const { dir, cleanup } = tempDir('push-');
  const hub = await fakeHub();
  try {
    const fixture = await localFixture(dir);
    const out = path.join(dir, 'my-finetune');
    const r = await train(fixture, hub.url, ['--output-dir', out, '--push-to-hub', '--hub-token', TOKEN, '--hub-private-repo', '--hub-strategy', 'every_save', '--save-strategy', 'epoch']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...hub.repos.entries()], [['tester/my-finetune', { private: true }]]);  // namespace from whoami
    // every_save: one commit per checkpoint, then the end of training.
    assert.deepEqual(hub.commits.map((c) => c.title), ['Training in progress, step 3', 'Training in progress, step 6', 'End of training']);
    const end = hub.commits[2].files;
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md', 'all_results.json', 'trainer_state.json'])
      assert.ok(end.has(f), `${f} was not uploaded (${[...end.keys()].join(', ')})`);
    assert.ok(!/checkpoint-/.test([...end.keys()].join(' ')), 'checkpoints stay local');
    assert.ok(end.get('model.safetensors')!.equals(readFileSync(path.join(out, 'model.safetensors'))), 'the uploaded weights are not the saved model');
    const card = end.get('README.md')!.toString();
    assert.match(card, /^---\nlibrary_name: transformers\ntags:\n- generated_from_trainer\n/);  // a local base model: no base_model link
    assert.match(card, /fine-tuned version of `tiny-bert`/);
    assert.match(card, /- accuracy\n/);
    assert.match(card, /\| Training Loss \| Epoch \| Step \| Validation Loss \| accuracy \| f1 \|/);
    assert.match(card, /- learning_rate: 0\.001/);
    assert.equal(card, readFileSync(path.join(out, 'README.md'), 'utf8'));
    assert.match(r.stdout, /Pushed to the Hub: http:\/\/127\.0\.0\.1:\d+\/tester\/my-finetune\/commit\//);
    for (const c of hub.commits) for (const [name, data] of c.files) assert.ok(!data.toString('latin1').includes(TOKEN), `the token is in ${name}`);
    assert.equal(JSON.parse(readFileSync(path.join(out, 'checkpoint-6', 'training_args.json'), 'utf8')).hubToken, '<HUB_TOKEN>');
  } finally {
    hub.close();
    cleanup();
  }
});

test('a Hub error during the upload: a clear message, exit 1, and every local file intact', async () => {
  const { dir, cleanup } = tempDir('push-fail-');
  const hub = await fakeHub({ failCommit: true });
  try {
    const fixture = await localFixture(dir);
    const out = path.join(dir, 'out');
    const r = await train(fixture, hub.url, ['--output-dir', out, '--push-to-hub', '--hub-model-id', 'org/model', '--hub-token', TOKEN, '--save-strategy', 'no']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`error: push to ${hub.url}/org/model failed \\(HTTP 500\\): .*; the local files in ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} are intact`));
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'all_results.json', 'trainer_state.json', 'README.md']) assert.ok(existsSync(path.join(out, f)), `${f} is missing`);
    // Without a token: refused before anything is uploaded, named.
    const noToken = await train(fixture, hub.url, ['--output-dir', path.join(dir, 'o2'), '--push-to-hub', '--max-steps', '1']);
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /--push-to-hub needs a token: --hub-token or HF_TOKEN/);
  } finally {
    hub.close();
    cleanup();
  }
});
