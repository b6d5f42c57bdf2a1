// SIGKILL at random moments while checkpoints are being written: every checkpoint-N folder that exists is
// complete and loads, and resuming from the latest one reproduces the uninterrupted run's final weights.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { root, tempDir } from './helpers.js';
import { BertForSequenceClassification, listCheckpoints } from '../src/index.js';
import { readSafetensors } from '../src/safetensors.js';

let work: { dir: string; cleanup: () => void }, home: string;
before(async () => { work = tempDir('kill-test-'); home = await makeHfHome(path.join(work.dir, 'hf')); });
after(() => work.cleanup());

const ARGS = ['--model', 'tiny/bert', '--device', 'cpu', '--threads', '1', '--learning-rate', '1e-3', '--eval-strategy', 'no', '--save-steps', '1', '--save-total-limit', '3', '--max-steps', '120'];
const env = () => ({ ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' });
const run = (args: string[]) => new Promise<number>((resolve) => execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: env() }, (e) => resolve(e ? (e.code as number) : 0)));

test('checkpoints survive SIGKILL at random moments; resume from the latest gives the same final weights', async () => {
  const full = path.join(work.dir, 'full');
  assert.equal(await run([...ARGS, '--output-dir', full]), 0);
  let s = 11;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const out = path.join(work.dir, 'killed');
  for (let k = 0; k < 4; k++) {
    const latest = (await listCheckpoints(out)).pop();
    const child = spawn(process.execPath, [path.join(root, 'train.js'), ...ARGS, '--output-dir', out, ...(latest ? ['--resume-from-checkpoint', latest] : [])], { env: env(), stdio: 'ignore' });
    // Kill somewhere after start-up, while steps and checkpoint writes are under way.
    const exited = new Promise((r) => child.on('exit', r));
    await new Promise((r) => setTimeout(r, 800 + rnd() * 1700));
    child.kill('SIGKILL');
    await exited;
    for (const cp of await listCheckpoints(out)) {
      await readSafetensors(path.join(cp, 'model.safetensors'));
      await readSafetensors(path.join(cp, 'optimizer.safetensors'));
      JSON.parse(readFileSync(path.join(cp, 'trainer_state.json'), 'utf8'));
      const m = await BertForSequenceClassification.fromPretrained(cp, { device: 'cpu' });
      await m.dispose();
    }
  }
  const latest = (await listCheckpoints(out)).pop();
  assert.equal(await run([...ARGS, '--output-dir', out, ...(latest ? ['--resume-from-checkpoint', latest] : [])]), 0);
  assert.ok(readFileSync(path.join(full, 'model.safetensors')).equals(readFileSync(path.join(out, 'model.safetensors'))), 'final weights differ');
  const leftovers = (await fs.readdir(out)).filter((n) => n.includes('.tmp-') || n.includes('.deleting-'));
  console.log(`after 4 kills: ${(await listCheckpoints(out)).length} complete checkpoints, ${leftovers.length} abandoned temporary folders (never loaded)`);
});
