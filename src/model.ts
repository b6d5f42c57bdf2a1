// BertForSequenceClassification for JS: validates every argument, serialises calls per model, maps checkpoint
// keys to the model's Hugging Face names, and saves files that transformers' from_pretrained loads.
import path from 'node:path';
import { addon, type NativeBatch, type NativeBlob, type NativeModel, type NativeTensorSource, type PhaseTimes } from './native.js';
import { type BertConfig, type ConfigOverrides, configToJson, nativeConfig, numLabels, parseConfig, problemType } from './config.js';
import { indexSafetensors, type FileTensor } from './safetensors.js';
import { fileSource, type HubOptions, HubError } from './hub.js';
import { readJson, writeAtomically, writeFileAtomic } from './fsutil.js';
import { InputError } from './errors.js';
import type { DistributedContext } from './distributed.js';

export type Device = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;

export interface Batch {
  /** [batch, sequence length] */
  shape: [number, number];
  inputIds: Int32Array;
  attentionMask?: Int32Array;
  tokenTypeIds?: Int32Array;
  /** Int32Array of class ids (or -100 to ignore) for classification; Float32Array for regression. */
  labels?: Int32Array | Float32Array;
}

export interface ModelOptions extends ConfigOverrides, HubOptions {
  device?: Device;
  /** Seeds the initialisation of weights the checkpoint lacks (a new classifier head). Default 42. */
  seed?: number;
  /** libtorch intra-op threads (process-wide). Default: libtorch's choice. */
  threads?: number;
}

export interface LoadReport {
  /** Checkpoint tensors the model did not use (e.g. a pre-training head). */
  unused: string[];
  /** Model parameters the checkpoint did not provide; they keep their fresh initialisation. */
  newlyInitialized: string[];
}

/** TrainingArguments.optim values the addon implements (each as its PyTorch / transformers class computes it). */
export const OPTIMIZERS = ['adamw_torch_fused', 'adamw_torch', 'sgd', 'adafactor'] as const;
export type Optimizer = (typeof OPTIMIZERS)[number];
/** Optimizers whose state is the same tensors (a checkpoint of one resumes the other). */
const STATE_FAMILY: Record<Optimizer, string> = { adamw_torch_fused: 'adamw', adamw_torch: 'adamw', sgd: 'sgd', adafactor: 'adafactor' };

/** The optimizer's and clipping's defaults (torch.optim, TrainingArguments): the one place they are written. */
export const OPTIMIZER_DEFAULTS = { optim: 'adamw_torch_fused' as Optimizer, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, momentum: 0, maxGradNorm: 1 } as const;

export interface OptimizerStepOptions {
  /** TrainingArguments.optim (default adamw_torch_fused). */
  optim?: Optimizer;
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** SGD's momentum (torch.optim.SGD; default 0). */
  momentum?: number;
  /** Clip the gradient 2-norm to this; 0 disables clipping. Default 1.0. */
  maxGradNorm?: number;
}

const DEVICE_RE = /^(auto|cpu|cuda|cuda:\d+)$/;
/** The device names the library takes (the addon resolves them; the CLI checks --device with this). */
export function isDevice(d: unknown): d is Device { return typeof d === 'string' && DEVICE_RE.test(d); }
// Buffers transformers ignores when loading (non-persistent in current versions, present in older checkpoints).
const IGNORED_KEYS = /(^|\.)embeddings\.(position_ids|token_type_ids)$/;

function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${typeof v === 'number' ? v : typeof v}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${v}`);
  return v;
}
function checkNum(name: string, v: unknown, ok: (x: number) => boolean, range: string): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!ok(v)) throw new RangeError(`${name} must be ${range}, got ${v}`);
  return v;
}

/** Maps a checkpoint key to this model's key; null for keys transformers ignores. */
function mapKey(key: string, addPrefix: boolean): string {
  let k = key.replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
  if (addPrefix && !k.startsWith('cls.') && !k.startsWith('classifier.')) k = `bert.${k}`;
  return k;
}

export class BertForSequenceClassification {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    private readonly native: NativeModel,
    readonly config: BertConfig,
    readonly device: string,
    readonly numParameters: number,
    readonly parameterNames: string[],
    readonly loadReport: LoadReport,
  ) {}

  get numLabels(): number { return numLabels(this.config); }
  /** Parameters outside the embeddings, as PreTrainedModel.num_parameters(exclude_embeddings=True) counts them. */
  get nonEmbeddingParameters(): number {
    const c = this.config;
    return this.numParameters - (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * c.hidden_size;
  }
  get problemType() { return problemType(this.config); }

  /** A randomly initialised model (seeded), e.g. with bert-base-uncased's config for speed work. */
  static async fromConfig(config: BertConfig, o: ModelOptions = {}): Promise<BertForSequenceClassification> {
    const device = o.device ?? 'auto';
    if (!isDevice(device)) throw new TypeError(`device must be auto, cpu, cuda or cuda:N, got ${JSON.stringify(device)}`);
    const seed = checkInt('seed', o.seed ?? 42, 0, Number.MAX_SAFE_INTEGER);
    const threads = checkInt('threads', o.threads ?? 0, 0, 1024);
    const a = addon();
    const native = new a.Model();
    const info = await native.init({ config: nativeConfig(config), device, seed, threads });
    return new BertForSequenceClassification(native, config, info.device, info.numParameters, info.parameterNames,
      { unused: [], newlyInitialized: info.parameterNames.slice() });
  }

  /**
   * Loads config.json + model.safetensors from a local folder or a Hub repo id (through the HF cache). Accepts
   * BertModel, BertForPreTraining/MaskedLM and BertForSequenceClassification checkpoints; pickle is refused.
   */
  static async fromPretrained(nameOrPath: string, o: ModelOptions = {}): Promise<BertForSequenceClassification> {
    if (typeof nameOrPath !== 'string' || !nameOrPath) throw new TypeError('nameOrPath must be a non-empty string');
    const src = await fileSource(nameOrPath, o);
    const configFile = (await src.get('config.json'))!;
    const config = parseConfig(await readJson(configFile), configFile, o);
    const files = await weightFiles(src, nameOrPath);
    const model = await BertForSequenceClassification.fromConfig(config, o);
    try {
      const tensors: FileTensor[] = [];  // headers only: the addon reads each tensor from its file
      for (const f of files) tensors.push(...(await indexSafetensors(f)).tensors);
      const addPrefix = !tensors.some((t) => t.name.startsWith('bert.'));
      const unused: string[] = [];
      const blobs: NativeTensorSource[] = [];
      for (const t of tensors) {
        if (IGNORED_KEYS.test(t.name)) continue;
        const k = mapKey(t.name, addPrefix);
        if (k.startsWith('cls.')) unused.push(t.name);
        else blobs.push({ ...t, name: k });
      }
      let report;
      try {
        report = await model.native.load(blobs);
      } catch (e) {
        throw new InputError(files.join(', '), (e as Error).message);
      }
      (model as { loadReport: LoadReport }).loadReport = { unused: [...unused, ...report.unexpected], newlyInitialized: report.missing };
      return model;
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }

  /** Serialises calls: one native call per model at a time, in call order. Rejects at once after dispose(). */
  private run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new Error('this model was disposed; load a new one'));
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private toNative(b: Batch, needLabels: boolean): NativeBatch {
    if (typeof b !== 'object' || b === null) throw new TypeError('batch must be an object');
    if (!Array.isArray(b.shape) || b.shape.length !== 2) throw new TypeError('batch.shape must be [batch, sequenceLength]');
    const c = this.config;
    const bs = checkInt('batch.shape[0]', b.shape[0], 1, 1 << 20);
    const seq = checkInt('batch.shape[1]', b.shape[1], 1, c.max_position_embeddings);
    const n = bs * seq;
    // Types and lengths here; the addon scans every id once against its table (inputIds < vocab_size,
    // tokenTypeIds < type_vocab_size, attentionMask 0/1, class labels) and rejects with the same kind of message.
    const ints = (name: string, a: unknown, required: boolean) => {
      if (a === undefined && !required) return undefined;
      if (!(a instanceof Int32Array)) throw new TypeError(`batch.${name} must be an Int32Array`);
      if (a.length !== n) throw new RangeError(`batch.${name} has ${a.length} elements; shape [${bs}, ${seq}] needs ${n}`);
      return a;
    };
    const out: NativeBatch = {
      batch: bs, seq,
      inputIds: ints('inputIds', b.inputIds, true)!,
      attentionMask: ints('attentionMask', b.attentionMask, false),
      tokenTypeIds: ints('tokenTypeIds', b.tokenTypeIds, false),
    };
    if (b.labels === undefined) {
      if (needLabels) throw new TypeError('batch.labels is required for a training step');
      return out;
    }
    const pt = this.problemType;
    const per = pt === 'multi_label_classification' || (pt === 'regression' && this.numLabels > 1) ? this.numLabels : 1;
    if (pt === 'regression') {
      if (!(b.labels instanceof Float32Array)) throw new TypeError('batch.labels must be a Float32Array for regression');
      if (b.labels.length !== bs * per) throw new RangeError(`batch.labels has ${b.labels.length} elements; needs ${bs * per}`);
      for (let i = 0; i < b.labels.length; i++) if (!Number.isFinite(b.labels[i])) throw new RangeError(`batch.labels[${i}] is not finite`);
    } else if (pt === 'single_label_classification') {
      if (!(b.labels instanceof Int32Array)) throw new TypeError('batch.labels must be an Int32Array of class ids');
      if (b.labels.length !== bs) throw new RangeError(`batch.labels has ${b.labels.length} elements; needs ${bs}`);
    } else if (b.labels.length !== bs * per) {
      throw new RangeError(`batch.labels has ${b.labels.length} elements; needs ${bs * per}`);
    }
    out.labels = b.labels;
    return out;
  }

  /** Eval mode, no gradients: logits [batch, numLabels] (row-major), and the loss when labels are given. */
  forward(batch: Batch): Promise<{ logits: Float32Array; loss?: number }> {
    try {
      const nb = this.toNative(batch, false);
      return this.run(() => this.native.forward(nb));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Train mode (dropout on): forward, loss, backward of loss * lossScale; gradients accumulate. Returns the loss.
   * After distribute(), `sync: false` keeps this backward's gradients local (DDP's no_sync, for the first
   * micro-batches of a gradient-accumulation step); the default all-reduces them.
   */
  trainStep(batch: Batch, o: { lossScale?: number; sync?: boolean } = {}): Promise<number> {
    try {
      const nb = this.toNative(batch, true);
      const scale = checkNum('lossScale', o.lossScale ?? 1, (x) => Number.isFinite(x) && x > 0, 'a positive finite number');
      const sync = o.sync ?? true;
      if (typeof sync !== 'boolean') throw new TypeError('sync must be true or false');
      return this.run(() => this.native.forwardBackward(nb, scale, sync));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * clip_grad_norm_, then the optimizer (fused AdamW by default; adamw_torch, sgd, adafactor; weight decay skips
   * biases and LayerNorm weights), then zero the gradients. Returns the pre-clip norm.
   */
  optimizerStep(o: OptimizerStepOptions): Promise<number> {
    try {
      if (typeof o !== 'object' || o === null) throw new TypeError('optimizerStep options must be an object with lr');
      const fin = (x: number) => Number.isFinite(x);
      const optim = o.optim ?? OPTIMIZER_DEFAULTS.optim;
      if (!OPTIMIZERS.includes(optim)) throw new TypeError(`optim must be one of ${OPTIMIZERS.join(', ')}, got ${JSON.stringify(optim)}`);
      const opts = {
        optim,
        momentum: checkNum('momentum', o.momentum ?? OPTIMIZER_DEFAULTS.momentum, (x) => x >= 0 && x < 1, 'in [0, 1)'),
        lr: checkNum('lr', o.lr, (x) => fin(x) && x >= 0, 'a finite number >= 0'),
        beta1: checkNum('beta1', o.beta1 ?? OPTIMIZER_DEFAULTS.beta1, (x) => x >= 0 && x < 1, 'in [0, 1)'),
        beta2: checkNum('beta2', o.beta2 ?? OPTIMIZER_DEFAULTS.beta2, (x) => x >= 0 && x < 1, 'in [0, 1)'),
        eps: checkNum('eps', o.eps ?? OPTIMIZER_DEFAULTS.eps, (x) => fin(x) && x > 0, 'a positive finite number'),
        weightDecay: checkNum('weightDecay', o.weightDecay ?? OPTIMIZER_DEFAULTS.weightDecay, (x) => fin(x) && x >= 0, 'a finite number >= 0'),
        maxGradNorm: checkNum('maxGradNorm', o.maxGradNorm ?? OPTIMIZER_DEFAULTS.maxGradNorm, (x) => fin(x) && x >= 0, 'a finite number >= 0 (0: no clipping)'),
      };
      this.optim = optim;
      return this.run(() => this.native.optimizerStep(opts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  zeroGrad(): Promise<void> { return this.run(() => this.native.zeroGrad()); }

  /** Wall time spent in forward (with the loss), backward and the optimizer since the model was made. */
  phaseTimes(): Promise<PhaseTimes> { return this.run(() => this.native.phaseTimes()); }

  /** The process group this model's gradients are all-reduced over (set by distribute()). */
  get distributed(): DistributedContext | undefined { return this._distributed; }
  private _distributed: DistributedContext | undefined;

  /**
   * Data parallelism, as wrapping in DistributedDataParallel: rank 0's weights are broadcast to every rank (a
   * collective: every rank calls it), then each training backward all-reduces averaged gradients in buckets.
   * The model must be on the group's device.
   */
  distribute(group: DistributedContext): Promise<void> {
    if (this._distributed) return this._distributed === group ? Promise.resolve() : Promise.reject(new Error('this model is already distributed over another process group'));
    if (this.device !== group.device)
      return Promise.reject(new TypeError(`the model is on ${this.device} but rank ${group.rank}'s device is ${group.device} (create the model with device: ${JSON.stringify(group.device)})`));
    return this.run(async () => {
      await this.native.distribute(group.handle, { bucketCapBytes: Math.round(group.bucketCapMb * 1024 * 1024) });
      this._distributed = group;
    });
  }

  /**
   * Mixed precision for forward passes and the loss: 'bf16' runs them under autocast to bfloat16 (as the HF
   * Trainer's `bf16=True`); parameters, gradients and AdamW state stay fp32. 'no' (the default) is fp32.
   */
  setMixedPrecision(mode: 'no' | 'bf16'): Promise<void> {
    if (mode !== 'no' && mode !== 'bf16') return Promise.reject(new TypeError(`mixed precision must be 'no' or 'bf16', got ${JSON.stringify(mode)}`));
    return this.run(async () => { await this.native.setAutocast(mode); this._mixedPrecision = mode; });
  }
  get mixedPrecision(): 'no' | 'bf16' { return this._mixedPrecision; }
  private _mixedPrecision: 'no' | 'bf16' = 'no';

  /**
   * Label smoothing of the classification loss in trainStep and forward (the Trainer's label_smoothing_factor,
   * computed as its LabelSmoother: (1 - e) * NLL + e * the mean of -log p over the classes). 0 turns it off.
   */
  setLabelSmoothing(epsilon: number): Promise<void> {
    try {
      checkNum('labelSmoothing', epsilon, (x) => x >= 0 && x < 1, 'in [0, 1)');
      if (epsilon > 0 && this.problemType !== 'single_label_classification')
        throw new TypeError(`label smoothing applies to single-label classification only; this model is ${this.problemType}`);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(() => this.native.setLabelSmoothing(epsilon));
  }

  /** Seeds this model's dropout generators (as torch.manual_seed would; other models keep their own streams). */
  seed(n: number): Promise<void> {
    try {
      checkInt('seed', n, 0, Number.MAX_SAFE_INTEGER);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run(() => this.native.seed(n));
  }
  /** The dropout generators' states: U8 tensors named "cpu" and, on a GPU, "cuda" (what rng_state.safetensors holds). */
  rngState(): Promise<NativeBlob[]> { return this.run(() => this.native.rngState()); }
  setRngState(state: NativeBlob[]): Promise<void> {
    if (!Array.isArray(state) || !state.every((t) => t && typeof t.name === 'string' && t.data instanceof Uint8Array && Array.isArray(t.shape) && typeof t.dtype === 'string'))
      return Promise.reject(new TypeError('state must be an array of { name, dtype, shape, data: Uint8Array } as rngState() returns'));
    return this.run(() => this.native.setRngState(state));
  }

  stateDict(): Promise<NativeBlob[]> { return this.run(() => this.native.stateDict()); }

  /** Writes model.safetensors and config.json (what BertForSequenceClassification.from_pretrained reads). */
  async save(dir: string): Promise<void> {
    // Written by the addon straight from the tensors: no copy of the weights passes through JS.
    await writeAtomically(path.join(dir, 'model.safetensors'), (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'model', { format: 'pt' })));
    await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(configToJson(this.config), null, 2) + '\n');
  }

  /** Loads weights saved by save() (same architecture and names) into this model. */
  async loadWeights(file: string): Promise<void> {
    const { tensors } = await indexSafetensors(file);
    const report = await this.run(() => this.native.load(tensors)).catch((e) => { throw new InputError(file, (e as Error).message); });
    if (report.missing.length || report.unexpected.length)
      throw new InputError(file, `does not match this model (missing: ${report.missing.slice(0, 5).join(', ') || 'none'}; unexpected: ${report.unexpected.slice(0, 5).join(', ') || 'none'})`);
  }

  /** The optimizer of the last optimizerStep (the one whose state saveOptimizerState writes). */
  private optim: Optimizer = OPTIMIZER_DEFAULTS.optim;

  /** The optimizer's state (step, state.<parameter>.<key> as torch.optim names it), with the optimizer's name. */
  async saveOptimizerState(file: string): Promise<void> {
    const optim = this.optim;
    await writeAtomically(file, (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'optimizer', { format: 'pt', optim })));
  }

  /** This model's dropout generators as a safetensors file ("cpu", and "cuda" on a GPU), as rng_state in checkpoints. */
  async saveRngState(file: string): Promise<void> {
    await writeAtomically(file, (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'rng', { format: 'pt' })));
  }

  /** Loads saveOptimizerState's file; `optim` (default: the file's) must keep the same state as the file's optimizer. */
  async loadOptimizerState(file: string, optim?: Optimizer): Promise<void> {
    const { tensors, metadata } = await indexSafetensors(file);
    // Files from before the optimizer was recorded hold AdamW state.
    const saved = (metadata.optim ?? (metadata.content === 'adamw-state' ? 'adamw_torch_fused' : undefined)) as Optimizer | undefined;
    if (!saved || !OPTIMIZERS.includes(saved)) throw new InputError(file, `does not say which optimizer's state it holds (metadata optim: ${JSON.stringify(metadata.optim ?? null)})`);
    if (optim && STATE_FAMILY[optim] !== STATE_FAMILY[saved]) throw new InputError(file, `holds ${saved} state; this run's optimizer is ${optim}, which keeps other state`);
    this.optim = optim ?? saved;
    await this.run(() => this.native.loadOptimizerState(tensors)).catch((e) => { throw new InputError(file, (e as Error).message); });
  }

  /** Frees the native memory once queued calls finish; later calls reject. */
  dispose(): Promise<void> {
    if (this.disposed) return Promise.resolve();
    const p = this.queue.then(() => this.native.dispose());
    this.disposed = true;
    this.queue = p.catch(() => undefined);
    return p;
  }
}

async function weightFiles(src: Awaited<ReturnType<typeof fileSource>>, name: string): Promise<string[]> {
  const single = await src.get('model.safetensors', true);
  if (single) return [single];
  const index = await src.get('model.safetensors.index.json', true);
  if (index) {
    const j = (await readJson(index)) as { weight_map?: Record<string, string> };
    if (!j.weight_map || typeof j.weight_map !== 'object') throw new InputError(index, 'no weight_map object');
    const shards = [...new Set(Object.values(j.weight_map))];
    const out: string[] = [];
    for (const s of shards) out.push((await src.get(s))!);
    return out;
  }
  for (const pickle of ['pytorch_model.bin', 'tf_model.h5', 'model.ckpt.index', 'flax_model.msgpack']) {
    const p = await src.get(pickle, true).catch(() => null);
    if (p) throw new InputError(p, 'only safetensors weights are loaded (a pickle/TF/Flax file can run code or needs another framework); ' +
      'convert it once with Python: `AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`');
  }
  throw new HubError(`${name}: no model.safetensors (or model.safetensors.index.json) found`);
}
