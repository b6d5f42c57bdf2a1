// Data-parallel training on libtorch's c10d, with torchrun's environment contract: each process reads RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, joins a process group (Gloo on the CPU,
// NCCL on CUDA), and the model's gradients are all-reduced by c10d's Reducer during backward, as DDP does.
import dns from 'node:dns/promises';
import net from 'node:net';
import { addon, type NativeProcessGroup } from './native.js';
import { show, UsageError } from './errors.js';

/** TrainingArguments' ddp_timeout default (seconds): a rendezvous or collective waits this long, then fails. */
export const DEFAULT_DDP_TIMEOUT = 1800;
/** DistributedDataParallel's bucket_cap_mb default. */
export const DEFAULT_BUCKET_CAP_MB = 25;

/** What torchrun (or a scheduler that follows its contract) tells each worker. */
export interface TorchrunEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  /** torchrun's agent hosts the rendezvous store (TORCHELASTIC_USE_AGENT_STORE); keys go under this restart's prefix. */
  agentStore: boolean;
  storePrefix: string;
}

/**
 * The torchrun variables of `env`, checked; null when WORLD_SIZE is not set (a single process, as without torchrun).
 * LOCAL_RANK and LOCAL_WORLD_SIZE default to RANK and WORLD_SIZE (one machine).
 */
export function torchrunEnv(env: NodeJS.ProcessEnv = process.env): TorchrunEnv | null {
  if (env.WORLD_SIZE === undefined) return null;
  const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER, fallback?: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') {
      if (fallback !== undefined) return fallback;
      throw new UsageError(`${name} is not set: a distributed worker needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun and --nproc-per-node set them)`);
    }
    const v = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || v < min || v > max) throw new UsageError(`${name} must be an integer in [${min}, ${max}], got ${show(raw)}`);
    return v;
  };
  const worldSize = int('WORLD_SIZE', 1);
  const rank = int('RANK', 0);
  if (rank >= worldSize) throw new UsageError(`RANK ${rank} is not below WORLD_SIZE ${worldSize}`);
  const localWorldSize = int('LOCAL_WORLD_SIZE', 1, worldSize, worldSize);
  const localRank = int('LOCAL_RANK', 0, localWorldSize - 1, rank % localWorldSize);
  const masterAddr = env.MASTER_ADDR;
  if (!masterAddr) throw new UsageError('MASTER_ADDR is not set: a distributed worker needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun and --nproc-per-node set them)');
  checkHost(masterAddr, 'MASTER_ADDR');
  const masterPort = int('MASTER_PORT', 1, 65535);
  const agentStore = env.TORCHELASTIC_USE_AGENT_STORE === 'True';
  const storePrefix = agentStore ? `/worker/attempt_${env.TORCHELASTIC_RESTART_COUNT ?? '0'}` : '';
  return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort, agentStore, storePrefix };
}

export interface DistributedOptions {
  /** The worker's torchrun variables (default: read from process.env). */
  env?: TorchrunEnv;
  /** 'cpu' (Gloo) or 'cuda' (NCCL, each rank on cuda:LOCAL_RANK). */
  device: 'cpu' | 'cuda';
  /** Seconds before a rendezvous or collective gives up (ddp_timeout). */
  timeoutSeconds?: number;
  /** Gradient bucket size in MiB (ddp_bucket_cap_mb). */
  bucketCapMb?: number;
}

const HOSTNAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** MASTER_ADDR / --master-addr: a host name or an IP address, nothing else (a port goes in MASTER_PORT). */
export function checkHost(value: string, name: string): void {
  if (net.isIP(value) || HOSTNAME.test(value)) return;
  const port = /^(.+):(\d+)$/.exec(value);
  throw new UsageError(port && (net.isIP(port[1]) || HOSTNAME.test(port[1]))
    ? `${name} ${show(value)} has a port: give the host alone (${port[1]}) and the port as ${name === 'MASTER_ADDR' ? 'MASTER_PORT' : '--master-port'}`
    : `${name} must be a host name or an IP address, got ${show(value)}`);
}

/**
 * The address a host name stands for, found before any rendezvous: a name that does not resolve fails here in a
 * line, instead of c10d retrying it every second until ddp_timeout.
 */
export async function resolveHost(value: string, name: string, timeoutMs = 10_000): Promise<string> {
  if (net.isIP(value)) return value;
  let timer: NodeJS.Timeout | undefined;
  try {
    const found = await Promise.race([dns.lookup(value), new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs); })]);
    return found.address;
  } catch (e) {
    throw new UsageError(`${name} ${show(value)} does not resolve to an address (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  } finally {
    clearTimeout(timer);
  }
}

/** ddp_timeout and ddp_bucket_cap_mb with their defaults, checked (the launcher checks them before starting workers). */
export function checkDdpOptions(o: { timeoutSeconds?: number; bucketCapMb?: number }): { timeoutSeconds: number; bucketCapMb: number } {
  const timeoutSeconds = o.timeoutSeconds ?? DEFAULT_DDP_TIMEOUT, bucketCapMb = o.bucketCapMb ?? DEFAULT_BUCKET_CAP_MB;
  if (!(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) throw new UsageError(`ddpTimeout (--ddp-timeout) must be a number of seconds > 0, got ${show(timeoutSeconds)}`);
  if (!(Number.isFinite(bucketCapMb) && bucketCapMb > 0)) throw new UsageError(`ddpBucketCapMb (--ddp-bucket-cap-mb) must be > 0, got ${show(bucketCapMb)}`);
  return { timeoutSeconds, bucketCapMb };
}

/**
 * One process's membership of a data-parallel job (torch.distributed.init_process_group). Pass it to the Trainer as
 * `distributed`: it shards the data, wraps the model as DDP does, and leaves logging and saving to rank 0.
 */
export class DistributedContext {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(private readonly native: NativeProcessGroup, readonly env: TorchrunEnv, readonly backend: string,
    readonly device: string, readonly timeoutSeconds: number, readonly bucketCapMb: number) {}

  get rank() { return this.env.rank; }
  get worldSize() { return this.env.worldSize; }
  get localRank() { return this.env.localRank; }
  /** Rank 0: the one process that logs and writes files. */
  get isMain() { return this.env.rank === 0; }

  static async init(o: DistributedOptions): Promise<DistributedContext> {
    const env = o.env ?? torchrunEnv();
    if (!env) throw new UsageError('not a distributed worker: WORLD_SIZE is not set (start it with --nproc-per-node N or torchrun)');
    if (o.device !== 'cpu' && o.device !== 'cuda') throw new TypeError(`device must be 'cpu' or 'cuda', got ${show(o.device)}`);
    const { timeoutSeconds, bucketCapMb } = checkDdpOptions(o);
    const device = o.device === 'cpu' ? 'cpu' : `cuda:${env.localRank}`;
    const a = addon();
    if (!a.runtime().distributedBackends.includes(o.device === 'cpu' ? 'gloo' : 'nccl'))
      throw new UsageError(`this build of the addon has no ${o.device === 'cpu' ? 'Gloo' : 'NCCL'} backend (it was compiled without its headers: ${o.device === 'cpu' ? 'apt-get install libgloo-dev' : 'a CUDA torch wheel with nvidia-nccl'}, then \`npm run rebuild\`, which configures anew; see the README's "Multiple processes and machines")`);
    await resolveHost(env.masterAddr, 'MASTER_ADDR');
    const native = new a.ProcessGroup();
    let backend: string;
    try {
      backend = await native.init({ masterAddr: env.masterAddr, masterPort: env.masterPort, rank: env.rank, worldSize: env.worldSize, timeoutSeconds, device,
        agentStore: env.agentStore, storePrefix: env.storePrefix });
    } catch (e) {
      const m = (e as Error).message;
      if (/EADDRINUSE|address already in use/i.test(m))
        throw new UsageError(`MASTER_PORT ${env.masterPort} on ${env.masterAddr} is in use by another program: pick a free port (--master-port)`);
      if (/timed? ?out|Timeout/i.test(m))
        throw new Error(`rank ${env.rank}: the other ranks did not all join ${env.masterAddr}:${env.masterPort} within ${timeoutSeconds} s (--ddp-timeout): ${nativeReason(e)}`);
      throw new Error(`rank ${env.rank}: joining the process group at ${env.masterAddr}:${env.masterPort} failed: ${nativeReason(e)}`);
    }
    return new DistributedContext(native, env, backend, device, timeoutSeconds, bucketCapMb);
  }

  /** The handle the model's distribute() takes. */
  get handle(): NativeProcessGroup { return this.native; }

  /** In place on every rank, in call order (every rank must make the same calls). */
  allReduce(values: Float64Array, op: 'sum' | 'max' | 'min' = 'sum'): Promise<Float64Array> {
    const p = this.queue.then(() => this.native.allReduce(values, op).catch((e) => { throw this.collectiveError(e); })).then(() => values);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * The one line a failed collective (an all-reduce here, or a gradient bucket's during backward) becomes: what it
   * means, not Gloo's socket text; a timeout names --ddp-timeout.
   */
  collectiveError(e: unknown): Error {
    const reason = nativeReason(e);
    const why = /timed? ?out|timeout/i.test(reason) ? `no answer within ${this.timeoutSeconds} s (--ddp-timeout)`
      : /read error|write error|connection|broken pipe|socket|GLHF|peer/i.test(reason) ? 'the connection to it was lost' : reason;
    return new Error(`rank ${this.rank}: a collective failed, so another rank has stopped or is unreachable (${why})`);
  }

  /** Every rank waits here until all have arrived. */
  async barrier(): Promise<void> { await this.allReduce(new Float64Array(1)); }

  /** Leaves the group (torch.distributed.destroy_process_group). */
  destroy(): Promise<void> { return this.native.destroy(); }
}

/** The first line of a c10d/Gloo error, without the source location of libtorch's build machine. */
function nativeReason(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].replace(/\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*/g, '').replace(/ This is typically caused by.*$/, '').trim();
}

/**
 * This rank's batches of an epoch, as accelerate's BatchSamplerShard hands them out (split_batches off,
 * even_batches on): batch i goes to rank i % worldSize; when the count does not divide, the last round is
 * completed with batches from the start, and a short final batch with rows from the start of the order, so every
 * rank takes the same number of equally sized steps.
 */
export function shardBatches(all: Int32Array[], order: Int32Array, batchSize: number, rank: number, worldSize: number): Int32Array[] {
  if (worldSize === 1) return all;
  const full = all.slice();
  const last = full[full.length - 1];
  if (last && last.length < batchSize) {
    const filled = new Int32Array(batchSize);
    filled.set(last);
    for (let i = last.length, k = 0; i < batchSize; i++, k++) filled[i] = order[k % order.length];
    full[full.length - 1] = filled;
  }
  const rounds = Math.ceil(full.length / worldSize);
  const mine: Int32Array[] = [];
  for (let r = 0; r < rounds; r++) mine.push(full[(r * worldSize + rank) % full.length]);
  return mine;
}
