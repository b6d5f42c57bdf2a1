// Loads the addon built by `npm install` (build/Release) or shipped in prebuilds/.
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
  runtime(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; numThreads: number; v8ExternalMemory: number; activations: string[]; distributedBackends: string[];
    /** ATen's kernel level for this CPU (AVX512, AVX2, DEFAULT) and whether bf16 uses oneDNN's prepacked weights here. */
    cpuCapability: string; packedBf16: boolean };
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let cached: Addon | undefined;

/**
 * The one loader: an in-tree build (build/Release) first, else a prebuild from prebuilds/ through node-gyp-build.
 * A CUDA prebuild (prebuilds/<platform>-<arch>-cuda/) is taken when it exists and this machine has an NVIDIA driver;
 * BERT_TRAINER_VARIANT=cpu or cuda chooses explicitly.
 */
export function addon(): Addon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const cuda = path.join(root, 'prebuilds', `${process.platform}-${process.arch}-cuda`, 'node.napi.node');
  const variant = process.env.BERT_TRAINER_VARIANT;
  if (variant !== undefined && variant !== '' && variant !== 'cpu' && variant !== 'cuda')
    throw new UsageError(`BERT_TRAINER_VARIANT must be cpu or cuda (or unset: the CUDA prebuild where there is an NVIDIA driver), got ${show(variant)}`);
  const useCuda = variant === 'cuda' || (variant !== 'cpu' && !existsSync(path.join(root, 'build', 'Release', 'bert_addon.node')) &&
    existsSync(cuda) && existsSync('/proc/driver/nvidia/version'));
  const inTree = existsSync(path.join(root, 'build', 'Release', 'bert_addon.node'));
  if (useCuda || !inTree) checkPrebuild(path.dirname(useCuda ? cuda : path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'x')));
  try {
    cached = (useCuda ? require(cuda) : require('node-gyp-build')(root)) as Addon;
  } catch (e) {
    throw new Error(`the native addon could not be loaded from ${useCuda ? cuda : `${root}/build/Release or ${root}/prebuilds`} (${(e as Error).message.split('\n')[0]}); ` +
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
