// `node train.js --nproc-per-node N ...`: what `torchrun` does for one machine of a job. It starts N workers of the
// same command with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), and when one fails, stops the others and exits non-zero: no worker outlives the launcher.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { exitNow } from './native.js';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  /** undefined: a free port of this machine (one node only, as torchrun --standalone). */
  masterPort?: number;
  /** The worker command: node's arguments after the executable (script and flags). */
  command: string[];
  err: (line: string) => void;
}

/** Seconds a worker gets between SIGTERM and SIGKILL once the job is being stopped. */
const GRACE_S = 5;

/** A port nothing listens on now (the workers' rendezvous binds it a moment later). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Runs the job's workers on this machine; resolves to the launcher's exit code. */
export async function launch(o: LaunchOptions): Promise<number> {
  const port = o.masterPort ?? await freePort();
  const world = o.nnodes * o.nprocPerNode;
  // As torchrun: several workers on one machine share its cores (torchrun sets 1 thread; here an equal share).
  const threads = process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(os.availableParallelism() / o.nprocPerNode)));
  const workers: ChildProcess[] = [];
  let failed: { rank: number; code: number } | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const live = () => workers.filter((w) => w.exitCode === null && w.signalCode === null);
  const stopAll = (failedRank: number) => {
    // Told first why: a worker whose peer is gone cannot save a checkpoint (rank 0 waits for every rank), so it
    // stops without promising one.
    for (const w of live()) { try { w.send({ event: 'peer-failed', rank: failedRank }); } catch { /* channel closed: SIGTERM still goes */ } }
    for (const w of live()) w.kill('SIGTERM');
    killTimer ??= setTimeout(() => { for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL'); }, GRACE_S * 1000);
  };
  // An interrupt or termination of the launcher goes to every worker (each saves a checkpoint and stops).
  const forward = (sig: NodeJS.Signals) => { for (const w of workers) if (w.exitCode === null) w.kill(sig); };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, forward);
  // However the launcher ends (a second Ctrl-C quits it at once), no worker outlives it.
  const killAll = () => { for (const w of live()) w.kill('SIGKILL'); };
  process.on('exit', killAll);
  const codes = await Promise.all(Array.from({ length: o.nprocPerNode }, (_, local) => {
    const rank = o.nodeRank * o.nprocPerNode + local;
    const env = {
      ...process.env, RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(o.nprocPerNode),
      GROUP_RANK: String(o.nodeRank), MASTER_ADDR: o.masterAddr, MASTER_PORT: String(port), OMP_NUM_THREADS: threads,
      BERT_TRAINER_LAUNCHER: '1',
    };
    // The IPC channel is how a worker learns that its launcher is gone (even killed with SIGKILL): it exits.
    const w = spawn(process.execPath, [...process.execArgv, ...o.command], { env, stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
    workers.push(w);
    return new Promise<number>((resolve) => {
      w.once('error', (e) => { o.err(`error: worker rank ${rank} could not start: ${e.message}`); resolve(1); });
      w.once('exit', (code, signal) => {
        const c = code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0);
        if (c !== 0 && c !== 130 && !failed) {
          failed = { rank, code: c };
          const others = workers.length - 1;
          o.err(`error: worker rank ${rank} (pid ${w.pid}) ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${others ? `; stopping the other ${others} worker${others > 1 ? 's' : ''}` : ''}`);
          stopAll(rank);
        }
        resolve(c);
      });
    });
  }));
  clearTimeout(killTimer);
  for (const s of signals) process.off(s, forward);
  process.off('exit', killAll);
  if (failed) return failed.code === 2 ? 2 : 1;
  return codes.every((c) => c === 0) ? 0 : codes.includes(130) ? 130 : 1;
}

/** In a worker started by launch(): exit when the launcher is gone, so that no worker is left behind. */
export function watchLauncher(err: (line: string) => void): void {
  if (process.env.BERT_TRAINER_LAUNCHER !== '1' || !process.channel) return;
  process.channel.unref();  // the channel alone must not keep a finished worker alive
  process.once('disconnect', () => {
    err(`error: rank ${process.env.RANK}: the launcher exited; stopping`);
    exitNow(1);
  });
  process.on('message', (m: { event?: string; rank?: number }) => {
    if (m?.event === 'peer-failed') peerFailed = m.rank;
  });
}

let peerFailed: number | undefined;
/** In a worker: the rank whose failure made the launcher stop this job, once it has said so; else undefined. */
export function failedPeer(): number | undefined { return peerFailed; }
