// Loads the addon: built by `npm install` (build/Release), shipped in prebuilds/, or installed as a platform package.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FileTensor } from './safetensors.js';
import { show, UsageError } from './errors.js';

export interface NativeBlob { name: string; dtype: string; shape: number[]; data: Uint8Array }
/** What the addon loads: bytes in memory, or a range of a file it reads itself (see indexSafetensors). */
export type NativeTensorSource = NativeBlob | FileTensor;
export interface NativeBatch {
  batch: number; seq: number;
  inputIds: Int32Array; attentionMask?: Int32Array; tokenTypeIds?: Int32Array;
  labels?: Int32Array | Float32Array;
  numChoices?: number;
}
export interface NativeModel {
  init(o: { config: object; device: string; seed: number; threads: number }): Promise<{ device: string; numParameters: number; parameterNames: string[] }>;
  load(t: NativeTensorSource[]): Promise<{ missing: string[]; unexpected: string[] }>;
  forward(b: NativeBatch): Promise<{ outputs: Array<{ name: string; shape: number[]; data: Float32Array }>; loss?: number }>;
  forwardBackward(b: NativeBatch, lossScale: number, sync: boolean): Promise<number>;
  setOptimizer(o: { optim: string; beta1: number; beta2: number; eps: number; weightDecay: number; momentum: number; maxGradNorm: number }): Promise<void>;
  optimizerStep(lr: number): Promise<number>;
  zeroGrad(): Promise<void>;
  stateDict(): Promise<NativeBlob[]>;
  loadOptimizerState(t: NativeTensorSource[]): Promise<void>;
  saveSafetensors(file: string, what: 'model' | 'optimizer' | 'rng', metadata: Record<string, string>): Promise<void>;
  setAutocast(dtype: 'no' | 'bf16'): Promise<void>;
  setLabelSmoothing(epsilon: number): Promise<void>;
  setQuantization(mode: 'none' | 'int8'): Promise<void>;
  seed(n: number): Promise<void>;
  rngState(): Promise<NativeBlob[]>;
  setRngState(s: NativeBlob[]): Promise<void>;
  distribute(group: NativeProcessGroup, o: { bucketCapBytes: number }): Promise<void>;
  phaseTimes(): Promise<PhaseTimes>;
  dispose(): Promise<void>;
}
/** Wall time a model has spent per training phase since it was made (forward includes the loss). */
export interface PhaseTimes { forwardMs: number; backwardMs: number; optimizerMs: number; forwardBackwardCalls: number; optimizerCalls: number }
export interface NativeProcessGroup {
  init(o: { masterAddr: string; masterPort: number; rank: number; worldSize: number; timeoutSeconds: number; device: string; agentStore: boolean; storePrefix: string }): Promise<string>;
  allReduce(values: Float64Array, op: 'sum' | 'max' | 'min'): Promise<void>;
  destroy(): Promise<void>;
}
export interface Addon {
  Model: new () => NativeModel;
  ProcessGroup: new () => NativeProcessGroup;
  /** Ends the process now with this code, without waiting for native calls in progress (process.exit does). */
  exitNow(code: number): never;
  /** GFLOP/s of the panel products as training runs them, per [m, k, n] (the roofline workload's peak); [] without the kernel. */
  panelProductRates(shapes: Array<[number, number, number]>, threads: number, repeats: number): Promise<number[]>;
  runtime(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; numThreads: number; v8ExternalMemory: number; activations: string[]; distributedBackends: string[];
    /** ATen's kernel level for this CPU (AVX512, AVX2, DEFAULT) and whether bf16 uses oneDNN's prepacked weights here. */
    cpuCapability: string; packedBf16: boolean; int8ReduceRange: boolean; panelProducts: string; trainingProducts: string; bf16Products: string;
    /** Fused AdamW over an embedding table's row gradients: 'rows' (rows with moments only; the same numbers) or 'dense'. */
    tableAdamW: string;
    /** libtorch's CPU allocator here: 'keeping' (freed blocks of 64 KB-32 MB kept for reuse) or 'default' (BERT_TRAINER_CPU_ALLOCATOR=default). */
    cpuAllocator: string;
    /** The keeping allocator's requests of 64 KB-32 MB so far: served from kept blocks, and from glibc (0 and 0 under 'default'). */
    cpuAllocatorCounts: { reused: number; fresh: number } };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let cached: Addon | undefined;
let source: string | undefined;

/** Where the loaded addon came from (one of the places addon() looks), once it is loaded. */
export function addonSource(): string | undefined { return source; }

/**
 * The npm package holding a platform's prebuilt addon and libraries (scripts/pack.ts writes it; the main package's
 * optionalDependencies name it with os/cpu/libc): @bert-trainer-node/linux-x64, and -cuda for the CUDA build, which
 * no field can keep off machines without an NVIDIA driver, so it is installed by hand and taken only where one is.
 */
export function platformPackage(variant: 'cpu' | 'cuda', platform: string = process.platform, arch: string = process.arch): string {
  return `@bert-trainer-node/${platform}-${arch}${variant === 'cuda' ? '-cuda' : ''}`;
}

/** An installed platform package's folder, or undefined. */
function installedPackage(name: string): string | undefined {
  try {
    return path.dirname(createRequire(path.join(root, 'package.json')).resolve(`${name}/package.json`));
  } catch {
    return undefined;
  }
}

/**
 * The one loader, first found wins: BERT_TRAINER_ADDON (a .node file: to compare builds), an in-tree build
 * (build/Release), a prebuild in prebuilds/ (node-gyp-build), an installed platform package. A CUDA prebuild or
 * package is taken when this machine has an NVIDIA driver; BERT_TRAINER_VARIANT=cpu or cuda chooses explicitly.
 * When none is there, the error lists every place it looked.
 */
export function addon(): Addon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const variant = process.env.BERT_TRAINER_VARIANT;
  if (variant !== undefined && variant !== '' && variant !== 'cpu' && variant !== 'cuda')
    throw new UsageError(`BERT_TRAINER_VARIANT must be cpu or cuda (or unset: the CUDA build where there is an NVIDIA driver), got ${show(variant)}`);
  const wantCuda = variant === 'cuda' || (variant !== 'cpu' && existsSync('/proc/driver/nvidia/version'));
  const inTree = path.join(root, 'build', 'Release', 'bert_addon.node');
  const prebuilt = (v: 'cpu' | 'cuda') => path.join(root, 'prebuilds', `${process.platform}-${process.arch}${v === 'cuda' ? '-cuda' : ''}`, 'node.napi.node');
  const fromPackage = (v: 'cpu' | 'cuda') => { const d = installedPackage(platformPackage(v)); return d ? path.join(d, 'node.napi.node') : undefined; };
  const gypBuild = () => { try { return (require('node-gyp-build') as { path(dir: string): string }).path(root); } catch { return undefined; } };
  const explicit = process.env.BERT_TRAINER_ADDON;
  if (explicit && !existsSync(explicit)) throw new UsageError(`BERT_TRAINER_ADDON names ${explicit}, which does not exist`);
  // In order; CUDA ones only where wanted. node-gyp-build finds the CPU prebuild (by its tags) in prebuilds/.
  const candidates: Array<{ file: string | undefined; what: string; prebuild: boolean }> = [
    ...(explicit ? [{ file: explicit, what: `BERT_TRAINER_ADDON=${explicit}`, prebuild: false }] : []),
    ...(variant === 'cuda' ? [] : [{ file: inTree, what: inTree, prebuild: false }]),
    ...(wantCuda ? [{ file: prebuilt('cuda'), what: prebuilt('cuda'), prebuild: true }, { file: fromPackage('cuda'), what: `the package ${platformPackage('cuda')}`, prebuild: true }] : []),
    ...(variant === 'cuda' ? [] : [{ file: gypBuild(), what: `${path.dirname(prebuilt('cpu'))} (node-gyp-build)`, prebuild: true },
      { file: fromPackage('cpu'), what: `the package ${platformPackage('cpu')}`, prebuild: true }]),
  ];
  const found = candidates.find((c) => c.file && existsSync(c.file));
  if (!found) {
    throw new Error(`the native addon for ${process.platform}-${process.arch} was not found; looked for ${candidates.map((c) => c.what).join(', ')}. ` +
      `In an app: npm install ${platformPackage(wantCuda ? 'cuda' : 'cpu')} (the main package names it in optionalDependencies; npm skips it where os/cpu/libc do not match). ` +
      'In a checkout: `npm install` builds it against libtorch.');
  }
  if (found.prebuild) checkPrebuild(path.dirname(found.file!));
  try {
    cached = require(found.file!) as Addon;
    source = found.what;
  } catch (e) {
    throw new Error(`the native addon could not be loaded from ${found.what} (${(e as Error).message.split('\n')[0]}); ` +
      'run `npm install` (or `npm run rebuild`) in the package folder to build it against libtorch');
  }
  return cached;
}

/**
 * process.exit(code) that does not wait for a native call in progress: 'exit' listeners run (the launcher stops
 * its workers there), then the addon ends the process. Without a loaded addon, process.exit has nothing to wait for.
 */
export function exitNow(code: number): never {
  process.exitCode = code;
  process.emit('exit', code);
  if (cached) cached.exitNow(code);
  process.exit(code);
}

/**
 * A prebuild's files against the sizes its prebuild.json records: a truncated shared library is mapped past its
 * end by the dynamic loader and the process dies of SIGBUS with no message, so a damaged file is named first.
 */
function checkPrebuild(dir: string): void {
  let manifest: { files?: Array<{ file: string; bytes: number }> };
  try {
    manifest = JSON.parse(readFileSync(path.join(dir, 'prebuild.json'), 'utf8'));
  } catch {
    return;  // no prebuild here (node-gyp-build says so), or one made before prebuild.json existed
  }
  for (const { file, bytes } of manifest.files ?? []) {
    const f = path.join(dir, file);
    const size = existsSync(f) ? statSync(f).size : -1;
    if (size !== bytes)
      throw new Error(`the prebuilt addon in ${dir} is damaged: ${file} ${size < 0 ? 'is missing' : `is ${size} bytes`}, its prebuild.json records ${bytes} ` +
        '(an interrupted copy or download?); reinstall the package, or run `npm run prebuild` in a checkout');
  }
}
