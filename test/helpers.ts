import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
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
 * Runs a command of test/python/hf_ref.py; resolves with its JSON result. One Python process per test file serves
 * every call in turn (importing torch and transformers takes ~5 s; the suite makes dozens of calls); it is
 * unreferenced while idle, so it never keeps a test file from ending, and exits when this process does.
 */
export function hfRef(command: string, args: object): Promise<any> {
  const s = (refServer ??= startRefServer());
  const id = ++s.seq;
  return new Promise((resolve, reject) => {
    s.pending.set(id, { resolve, reject, command });
    s.child.ref();
    s.child.stdin!.write(JSON.stringify({ id, command, args }) + '\n');
  });
}

interface RefServer {
  child: ChildProcess;
  seq: number;
  pending: Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; command: string }>;
}
let refServer: RefServer | undefined;

function startRefServer(): RefServer {
  const child = spawn(pythonForTests(), [path.join(root, 'test', 'python', 'hf_ref.py'), '--serve'],
    { cwd: os.tmpdir(), stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error', HF_HUB_OFFLINE: '1' } });
  const s: RefServer = { child, seq: 0, pending: new Map() };
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr = (stderr + d).slice(-20_000); });
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let answer: { id: number; result?: unknown; error?: string };
    try {
      answer = JSON.parse(line);
    } catch {
      // Not an answer: every pending request fails with it rather than waiting forever.
      for (const p of s.pending.values()) p.reject(new Error(`hf_ref.py ${p.command}: unexpected output on stdout: ${line.slice(0, 300)}`));
      s.pending.clear();
      return;
    }
    const p = s.pending.get(answer.id);
    if (!p) return;
    s.pending.delete(answer.id);
    if (answer.error !== undefined) p.reject(new Error(`hf_ref.py ${p.command} failed: ${answer.error}`));
    else p.resolve(answer.result);
    if (!s.pending.size) idle(s);
  });
  child.once('exit', (code, signal) => {
    for (const p of s.pending.values()) p.reject(new Error(`hf_ref.py ${p.command} failed: the Python process exited (${code ?? signal}): ${stderr}`));
    s.pending.clear();
    if (refServer === s) refServer = undefined;
  });
  idle(s);
  return s;
}

/** Nothing pending: the server must not keep the event loop (and so the test file) alive. */
function idle(s: RefServer) {
  s.child.unref();
  for (const stream of [s.child.stdin, s.child.stdout, s.child.stderr]) (stream as unknown as { unref?: () => void })?.unref?.();
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
