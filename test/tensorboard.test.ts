// TensorBoard event files as the Trainer's TensorBoardCallback writes them, read back by tensorboard's own
// EventAccumulator: every logged scalar at its step, the arguments as text, and a resumed run appending to the same
// run without showing any step twice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { pythonForTests, root, tempDir } from './helpers.js';
import { crc32c, maskedCrc32c, tensorboardTags } from '../src/tensorboard.js';

let home: string, work: { dir: string; cleanup: () => void };
const BASE = ['--model', 'tiny/bert', '--threads', '1', '--device', 'cpu', '--learning-rate', '1e-3', '--report-to', 'tensorboard', '--logging-steps', '2'];
const cli = (args: string[]) => new Promise<{ code: number; stderr: string }>((resolve) =>
  execFile(process.execPath, [path.join(root, 'train.js'), ...args], { env: { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' } },
    (err, _o, stderr) => resolve({ code: err ? (err.code as number) : 0, stderr })));
const readRun = (dir: string) => JSON.parse(execFileSync(pythonForTests(), [path.join(root, 'test', 'python', 'tb_read.py'), dir], { cwd: os.tmpdir(), encoding: 'utf8' }).trim().split('\n').pop()!);

before(async () => { work = tempDir('tb-test-'); home = await makeHfHome(path.join(work.dir, 'hf')); });
after(() => work.cleanup());

/** What TensorBoard must show: each numeric log_history value under the Trainer's tag at its step (float32), once
 * per log entry (train/epoch comes with both a training and an evaluation entry, as in transformers). */
function expected(logHistory: Array<Record<string, number>>): Map<string, number[][]> {
  const m = new Map<string, number[][]>();
  for (const e of logHistory) for (const [tag, v] of tensorboardTags(e)) (m.get(tag) ?? m.set(tag, []).get(tag)!).push([e.step, Math.fround(v)]);
  return m;
}

function assertRunMatches(run: { scalars: Record<string, number[][]> }, logHistory: Array<Record<string, number>>) {
  const want = expected(logHistory);
  const sort = (a: number[][]) => [...a].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  assert.deepEqual(Object.keys(run.scalars).sort(), [...want.keys()].sort());
  for (const [tag, points] of want) assert.deepEqual(sort(run.scalars[tag]), sort(points), tag);
}

test('CRC32C as TFRecord uses it (RFC 3720 check value; masked form)', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(maskedCrc32c(new Uint8Array(0)), 0xa282ead8);
});

test('--report-to tensorboard: EventAccumulator reads every scalar of log_history at its step, and the arguments', async () => {
  const out = path.join(work.dir, 'run');
  const r = await cli([...BASE, '--epochs', '2', '--output-dir', out, '--save-strategy', 'no']);
  assert.equal(r.code, 0, r.stderr);
  const runs = readdirSync(path.join(out, 'runs'));
  assert.equal(runs.length, 1);
  assert.match(runs[0], new RegExp(`^[A-Z][a-z]{2}\\d{2}_\\d{2}-\\d{2}-\\d{2}_${os.hostname()}$`));
  const run = readRun(path.join(out, 'runs', runs[0]));
  const state = JSON.parse(readFileSync(path.join(out, 'trainer_state.json'), 'utf8'));
  assertRunMatches(run, state.log_history);
  for (const tag of ['train/loss', 'train/learning_rate', 'train/grad_norm', 'train/epoch', 'eval/loss', 'eval/accuracy', 'eval/f1'])
    assert.ok(run.scalars[tag]?.length, `no ${tag}`);
  assert.equal(JSON.parse(run.text['args/text_summary']).learningRate, 1e-3);
  assert.equal(JSON.parse(run.text['model_config/text_summary']).model_type, 'bert');
});

test('a resumed run appends to its run folder; steps logged after the checkpoint are not shown twice', async () => {
  const out = path.join(work.dir, 'resumed');
  const args = [...BASE, '--max-steps', '10', '--save-steps', '4', '--eval-strategy', 'no', '--output-dir', out];
  assert.equal((await cli(args)).code, 0);
  // Resume from step 4 of a run that logged up to step 10: steps 6..10 are logged again by the second writer.
  const r = await cli([...args, '--resume-from-checkpoint', path.join(out, 'checkpoint-4')]);
  assert.equal(r.code, 0, r.stderr);
  const runs = readdirSync(path.join(out, 'runs'));
  assert.equal(runs.length, 1, 'the resumed run must write into the same run folder');
  assert.equal(readdirSync(path.join(out, 'runs', runs[0])).filter((f) => f.startsWith('events.out.tfevents.')).length, 2);
  const state = JSON.parse(readFileSync(path.join(out, 'trainer_state.json'), 'utf8'));
  assertRunMatches(readRun(path.join(out, 'runs', runs[0])), state.log_history);
});
