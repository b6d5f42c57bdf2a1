import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { projectPython, root } from '../scripts/paths.js';

export { root };
export const pythonForTests = projectPython;

/** A Chromium for the browser tests (Debian's chromium), or undefined: those tests skip, saying so. */
export function chromium(): string | undefined {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try { return execFileSync('which', [name], { encoding: 'utf8' }).trim() || undefined; } catch { /* next */ }
  }
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
}

/**
 * Runs a command of test/python/hf_ref.py; resolves with its JSON result. One Python process serves every test file
 * of a `node --test` run (importing torch and transformers takes 5-8 s; a dozen files ask): the first call starts it
 * on a Unix socket named after the test runner's pid (each test file is the runner's child), later files connect to
 * it. The connection is unreferenced while idle, so it never keeps a test file from ending; the server exits when the
 * runner has gone, or after 5 minutes without a connection.
 */
export function hfRef(command: string, args: object): Promise<any> {
  const c = (refClient ??= connectRefServer());
  const id = ++c.seq;
  const line = JSON.stringify({ id, command, args }) + '\n';
  return new Promise((resolve, reject) => {
    c.pending.set(id, { resolve, reject, command, line });
    if (c.socket) {
      c.socket.ref();
      c.socket.write(line);
    }
  });
}

interface RefClient {
  socket?: net.Socket;  // once connected
  seq: number;
  pending: Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; command: string; line: string }>;
}
let refClient: RefClient | undefined;

function connectRefServer(): RefClient {
  const sock = path.join(os.tmpdir(), `bert-trainer-hf-ref-${process.ppid}.sock`), log = `${sock}.log`;
  const c: RefClient = { seq: 0, pending: new Map() };
  const logTail = () => { try { return readFileSync(log, 'utf8').slice(-20_000); } catch { return '(no log)'; } };
  const failAll = (why: string) => {
    for (const p of c.pending.values()) p.reject(new Error(`hf_ref.py ${p.command} failed: ${why}`));
    c.pending.clear();
    if (refClient === c) refClient = undefined;
  };
  const deadline = Date.now() + 180_000;
  let server: ChildProcess | undefined, serverExit: string | undefined;
  const attempt = () => {
    const socket = net.createConnection(sock);
    socket.once('connect', () => {
      c.socket = socket;
      readline.createInterface({ input: socket }).on('line', (line) => {
        let answer: { id: number; result?: unknown; error?: string };
        try {
          answer = JSON.parse(line);
        } catch {
          return failAll(`unexpected output from the server: ${line.slice(0, 300)}`);  // rather than waiting forever
        }
        const p = c.pending.get(answer.id);
        if (!p) return;
        c.pending.delete(answer.id);
        if (answer.error !== undefined) p.reject(new Error(`hf_ref.py ${p.command} failed: ${answer.error}`));
        else p.resolve(answer.result);
        if (!c.pending.size) socket.unref();
      });
      socket.on('close', () => failAll(`the Python server closed the connection: ${logTail()}`));
      for (const p of c.pending.values()) socket.write(p.line);
      if (!c.pending.size) socket.unref();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (c.socket === socket) return;  // 'close' follows and reports it
      if (!server && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
        const fd = openSync(log, 'a');
        server = spawn(pythonForTests(), [path.join(root, 'test', 'python', 'hf_ref.py'), '--serve', sock, String(process.ppid), '300'],
          { cwd: os.tmpdir(), detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error', HF_HUB_OFFLINE: '1' } });
        closeSync(fd);
        // Exit 0 before we connect: another file's server won the socket; anything else is a failure to report.
        server.once('exit', (code, signal) => { if (code !== 0) serverExit = `the Python server exited (${code ?? signal}): ${logTail()}`; });
        server.unref();
      }
      if (serverExit) failAll(serverExit);
      else if (Date.now() > deadline) failAll(`no server on ${sock} after 180 s: ${logTail()}`);
      else setTimeout(attempt, 100);
    });
  };
  attempt();
  return c;
}

/** `node train.js args` with `env` added to this process's: exit code and output (the tests' CLI runs). */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: { ...process.env, ...env }, maxBuffer: 1 << 26 },
    (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr })));
}

export function tempDir(prefix = 'bert-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A tiny BERT config (2 layers, hidden 32, 4 heads, vocab 100), dropout off for exact comparisons. */
export const TINY = {
  vocab_size: 100, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 37,
  max_position_embeddings: 64, type_vocab_size: 2, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0,
  num_labels: 2,
};

/** A deterministic batch with padding in the second row. */
export function tinyBatch(bs = 3, seq = 9, seed = 1) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const inputIds = new Int32Array(bs * seq), attentionMask = new Int32Array(bs * seq), tokenTypeIds = new Int32Array(bs * seq);
  for (let b = 0; b < bs; b++) {
    const len = b === 1 ? seq - 4 : seq;
    for (let t = 0; t < seq; t++) {
      const i = b * seq + t;
      inputIds[i] = t < len ? 1 + Math.floor(rnd() * 98) : 0;
      attentionMask[i] = t < len ? 1 : 0;
      tokenTypeIds[i] = t < len && t > len / 2 ? 1 : 0;
    }
  }
  const labels = new Int32Array(bs).map((_, i) => i % 2);
  return { shape: [bs, seq] as [number, number], inputIds, attentionMask, tokenTypeIds, labels };
}

export function batchJson(b: ReturnType<typeof tinyBatch>) {
  return { shape: b.shape, inputIds: [...b.inputIds], attentionMask: [...b.attentionMask], tokenTypeIds: [...b.tokenTypeIds], labels: [...b.labels] };
}

/**
 * How far apart a weight may end after `steps` AdamW steps of `lr` taken here and by PyTorch, beyond the relative
 * bound each test sets: 0.01% of the distance the steps can move it. AdamW divides each gradient element by its own
 * magnitude, so float32 rounding in a near-zero gradient (terms that cancel), which differs between oneDNN's and
 * MKL's products, becomes a visible fraction of a step (measured: 2.1e-7 after 3 steps of 1e-3 on a ModernBERT
 * weight, 1.0e-6 after 5 steps of 1e-2 on a BERT weight). A wrong gradient moves weights by about lr per step.
 */
export function adamRoundingAllowance(steps: number, lr: number): number {
  return 1e-4 * steps * lr;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A copy of raw little-endian float32 bytes as a Float32Array (Buffer views may be unaligned or shared). */
export function f32(u8: Uint8Array): Float32Array {
  return new Float32Array(new Uint8Array(u8).buffer);
}

/**
 * prebuilds/<platform>-<arch>/ for the tests that ship it, (re)made by `npm run prebuild` when absent or older than the
 * in-tree build: a prebuild of older sources would not be this addon. Returns its folder.
 */
export function ensurePrebuild(): string {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const prebuilt = path.join(dir, 'node.napi.node'), inTree = path.join(root, 'build', 'Release', 'bert_addon.node');
  if (!existsSync(prebuilt) || (existsSync(inTree) && statSync(prebuilt).mtimeMs < statSync(inTree).mtimeMs))
    execFileSync(process.execPath, [path.join(root, 'scripts', 'prebuild.js')], { cwd: root, stdio: 'pipe' });
  return dir;
}

/** A CommonJS script run with an addon file's path: the raw addon alone (init, forward, a training step, AdamW), its numbers as JSON. */
export const ADDON_RUN = `
const m = { exports: {} };
process.dlopen(m, process.argv[2]);
const a = m.exports;
const config = { model_type: 'bert', embedding_size: 16, sinusoidal_pos_embds: false, vocab_size: 50, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 24,
  max_position_embeddings: 32, type_vocab_size: 2, pad_token_id: 0, num_labels: 2, hidden_act: 'gelu', hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0, layer_norm_eps: 1e-12, initializer_range: 0.02, classifier_dropout: -1, problem_type: 'single_label_classification',
  architecture: 'BertForSequenceClassification' };
(async () => {
  const model = new a.Model();
  await model.init({ config, device: 'cpu', seed: 3, threads: 1 });
  const batch = { batch: 2, seq: 5, inputIds: Int32Array.from([2, 7, 9, 11, 3, 2, 8, 3, 0, 0]), attentionMask: Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]), labels: Int32Array.from([0, 1]) };
  const before = await model.forward(batch);
  const loss = await model.forwardBackward(batch, 1);
  await model.setOptimizer({ optim: 'adamw_torch_fused', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, momentum: 0, maxGradNorm: 1 });
  const norm = await model.optimizerStep(1e-2);
  const after = await model.forward(batch);
  console.log(JSON.stringify({ torch: a.runtime().torchVersion, before: Array.from(before.outputs[0].data), loss, norm, after: Array.from(after.outputs[0].data) }));
  await model.dispose();
})();
`;
