// The BERT encoder with one head for JS (BertForSequenceClassification, BertForTokenClassification,
// BertForQuestionAnswering, BertForMaskedLM, BertForMultipleChoice): validates every argument, serialises calls per
// model, maps checkpoint keys to the model's Hugging Face names, and saves files that transformers' from_pretrained
// (AutoModelFor...) loads.
import path from 'node:path';
import { addon, type NativeBatch, type NativeBlob, type NativeModel, type NativeTensorSource, type PhaseTimes } from './native.js';
import { type Architecture, ARCHITECTURES, architectureFor, architectureOf, type BertConfig, type ConfigOverrides, configJsonText, embeddingParameters, type Head,
  headOf, maxSequenceLength, nativeConfig, numLabels, parseConfig, problemType, weightKeys } from './config.js';
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
  /**
   * What the head reads, Int32Array unless said: sequence classification and multiple choice, a class id per
   * example (Float32Array scores for regression, num_labels per example for multi-label); token classification and
   * masked LM, a class (token) id per position, -100 to ignore; question answering, [start, end] per example.
   */
  labels?: Int32Array | Float32Array;
  /** Multiple choice: the rows per example (the batch is examples × numChoices rows, each a choice). */
  numChoices?: number;
}

/** A head's outputs, by transformers' ModelOutput names in camelCase, each row-major with its shape. */
export interface ModelOutput {
  /** Sequence classification [batch, numLabels]; token classification [batch, seq, numLabels]; multiple choice
   * [examples, numChoices]; masked LM [batch, seq, vocab] without labels, [labelled positions, vocab] with them. */
  logits?: Float32Array;
  startLogits?: Float32Array;
  endLogits?: Float32Array;
  loss?: number;
  shapes: Record<string, number[]>;
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

/** The optimizer's settings, given once per run with setOptimizer (the learning rate goes with each step). */
export interface OptimizerOptions {
  /** TrainingArguments.optim (default adamw_torch_fused). */
  optim?: Optimizer;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** SGD's momentum (torch.optim.SGD; default 0). */
  momentum?: number;
  /** Clip the gradient 2-norm to this; 0 disables clipping. Default 1.0. */
  maxGradNorm?: number;
}

/** setOptimizer's settings checked and completed with the defaults (the one place they are validated). */
function optimizerSettings(o: OptimizerOptions) {
  if (typeof o !== 'object' || o === null) throw new TypeError('setOptimizer options must be an object');
  const fin = (x: number) => Number.isFinite(x);
  const optim = o.optim ?? OPTIMIZER_DEFAULTS.optim;
  if (!OPTIMIZERS.includes(optim)) throw new TypeError(`optim must be one of ${OPTIMIZERS.join(', ')}, got ${JSON.stringify(optim)}`);
  const opts = {
    optim,
    momentum: checkNum('momentum', o.momentum ?? OPTIMIZER_DEFAULTS.momentum, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    beta1: checkNum('beta1', o.beta1 ?? OPTIMIZER_DEFAULTS.beta1, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    beta2: checkNum('beta2', o.beta2 ?? OPTIMIZER_DEFAULTS.beta2, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    eps: checkNum('eps', o.eps ?? OPTIMIZER_DEFAULTS.eps, (x) => fin(x) && x > 0, 'a positive finite number'),
    weightDecay: checkNum('weightDecay', o.weightDecay ?? OPTIMIZER_DEFAULTS.weightDecay, (x) => fin(x) && x >= 0, 'a finite number >= 0'),
    maxGradNorm: checkNum('maxGradNorm', o.maxGradNorm ?? OPTIMIZER_DEFAULTS.maxGradNorm, (x) => fin(x) && x >= 0, 'a finite number >= 0 (0: no clipping)'),
  };
  return opts;
}

const DEVICE_RE = /^(auto|cpu|cuda|cuda:\d+)$/;
/** The device names the library takes (the addon resolves them; the CLI checks --device with this). */
export function isDevice(d: unknown): d is Device { return typeof d === 'string' && DEVICE_RE.test(d); }
// Buffers transformers ignores when loading (non-persistent in current versions, present in older checkpoints).
const IGNORED_KEYS = /(^|\.)embeddings\.(position_ids|token_type_ids)$/;

/** The class to build: the calling class's head in the config's family, `architecture` if given, else config.json's. */
function pickArchitecture(config: BertConfig, head: Head | null, architecture: Architecture | undefined): Architecture {
  if (architecture !== undefined) {
    if (!ARCHITECTURES.includes(architecture)) throw new TypeError(`architecture must be one of ${ARCHITECTURES.join(', ')}, got ${JSON.stringify(architecture)}`);
    if (architectureFor(config, headOf(architecture)) !== architecture) throw new TypeError(`architecture ${architecture} is not of this config's model_type ${JSON.stringify(config.model_type)}`);
    if (head && headOf(architecture) !== head) throw new TypeError(`architecture ${architecture} is not a ${head} head`);
    return architecture;
  }
  return head ? architectureFor(config, head) : architectureOf(config);
}

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

/** Maps a checkpoint key to this model's key: old LayerNorm names, and the base model's prefix for a bare base model. */
function mapKey(key: string, addPrefix: boolean, keys: { base: string; headKeys: RegExp }): string {
  let k = key.replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
  if (addPrefix && !keys.headKeys.test(k)) k = `${keys.base}.${k}`;
  return k;
}

type ModelClass<M> = { new (native: NativeModel, config: BertConfig, architecture: Architecture, device: string, numParameters: number,
  parameterNames: string[], loadReport: LoadReport): M; readonly head: Head | null };

/**
 * The encoder and one head. Use a head's class (BertForTokenClassification.fromPretrained(...)), or this class to
 * take the head that config.json's `architectures` names, as AutoModel does.
 */
export class BertPreTrainedModel {
  /** The head this class builds (in the family config.json's model_type names); null: the class config.json names. */
  static readonly head: Head | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  /** @internal use fromPretrained / fromConfig */
  constructor(
    private readonly native: NativeModel,
    readonly config: BertConfig,
    readonly architecture: Architecture,
    readonly device: string,
    readonly numParameters: number,
    readonly parameterNames: string[],
    readonly loadReport: LoadReport,
  ) {}

  get numLabels(): number { return numLabels(this.config); }
  /** The head (SequenceClassification, TokenClassification, QuestionAnswering, MaskedLM, MultipleChoice). */
  get head(): Head { return headOf(this.architecture); }
  /** Parameters outside the embeddings, as PreTrainedModel.num_parameters(exclude_embeddings=True) counts them. */
  get nonEmbeddingParameters(): number { return this.numParameters - embeddingParameters(this.config); }
  get problemType() { return problemType(this.config); }

  /** A randomly initialised model (seeded), e.g. with bert-base-uncased's config for speed work. */
  static async fromConfig<M extends BertPreTrainedModel>(this: ModelClass<M>, config: BertConfig, o: ModelOptions & { architecture?: Architecture } = {}): Promise<M> {
    const architecture = pickArchitecture(config, this.head, o.architecture);
    const device = o.device ?? 'auto';
    if (!isDevice(device)) throw new TypeError(`device must be auto, cpu, cuda or cuda:N, got ${JSON.stringify(device)}`);
    const seed = checkInt('seed', o.seed ?? 42, 0, Number.MAX_SAFE_INTEGER);
    const threads = checkInt('threads', o.threads ?? 0, 0, 1024);
    const a = addon();
    const native = new a.Model();
    const info = await native.init({ config: nativeConfig(config, architecture), device, seed, threads });
    return new this(native, config, architecture, info.device, info.numParameters, info.parameterNames,
      { unused: [], newlyInitialized: info.parameterNames.slice() });
  }

  /**
   * Loads config.json + model.safetensors from a local folder or a Hub repo id (through the HF cache). Accepts
   * BertModel, BertForPreTraining and every head's checkpoints (a head the class does not have is reported as unused
   * and its own is newly initialised, as from_pretrained reports them); pickle is refused. The class's head, or the
   * one config.json names (BertPreTrainedModel, as AutoModel), or `o.architecture`.
   */
  static async fromPretrained<M extends BertPreTrainedModel>(this: ModelClass<M>, nameOrPath: string, o: ModelOptions & { architecture?: Architecture } = {}): Promise<M> {
    if (typeof nameOrPath !== 'string' || !nameOrPath) throw new TypeError('nameOrPath must be a non-empty string');
    const src = await fileSource(nameOrPath, o);
    const configFile = (await src.get('config.json'))!;
    const config = parseConfig(await readJson(configFile), configFile, o);
    const files = await weightFiles(src, nameOrPath);
    const architecture = pickArchitecture(config, this.head, o.architecture);
    const model = await (this as unknown as typeof BertPreTrainedModel).fromConfig(config, { ...o, architecture }) as M;
    try {
      const tensors: FileTensor[] = [];  // headers only: the addon reads each tensor from its file
      for (const f of files) tensors.push(...(await indexSafetensors(f)).tensors);
      const keys = weightKeys(config);
      const addPrefix = !tensors.some((t) => t.name.startsWith(`${keys.base}.`));
      const unused: string[] = [];
      const blobs: NativeTensorSource[] = [];
      const params = new Set(model.parameterNames);
      for (const t of tensors) {
        if (IGNORED_KEYS.test(t.name)) continue;
        const k = mapKey(t.name, addPrefix, keys);
        // transformers ties the masked-LM decoder to the word embeddings (and its bias to the head's bias): one tensor.
        if (keys.tied.test(k) && !params.has(k)) continue;
        // Another head's modules (a masked-LM checkpoint loaded for classification) are reported unused.
        if (keys.headKeys.test(k) && !params.has(k)) unused.push(t.name);
        else blobs.push({ ...t, name: k });
      }
      let report;
      try {
        report = await (model as BertPreTrainedModel).native.load(blobs);
      } catch (e) {
        throw new InputError(files.join(', '), (e as Error).message);
      }
      (model as { loadReport: LoadReport }).loadReport = { unused: [...unused, ...report.unexpected], newlyInitialized: report.missing };
      return model;
    } catch (e) {
      await (model as BertPreTrainedModel).dispose();
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
    const seq = checkInt('batch.shape[1]', b.shape[1], 1, maxSequenceLength(c));
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
    if (this.head === 'MultipleChoice') {
      const nc = checkInt('batch.numChoices', b.numChoices, 1, bs);
      if (bs % nc !== 0) throw new RangeError(`batch.numChoices ${nc} must divide the batch's ${bs} rows (examples × choices)`);
      out.numChoices = nc;
    }
    if (b.labels === undefined) {
      if (needLabels) throw new TypeError('batch.labels is required for a training step');
      return out;
    }
    const perHead = { TokenClassification: n, MaskedLM: n, QuestionAnswering: bs * 2, MultipleChoice: bs / (out.numChoices ?? 1) } as Record<string, number>;
    if (this.head in perHead) {
      const need = perHead[this.head];
      if (!(b.labels instanceof Int32Array)) throw new TypeError(`batch.labels must be an Int32Array for ${this.architecture}`);
      if (b.labels.length !== need) throw new RangeError(`batch.labels has ${b.labels.length} elements; ${this.architecture} needs ${need} (${
        this.head === 'QuestionAnswering' ? '[start, end] per row' : this.head === 'MultipleChoice' ? 'one per example' : 'one per position'})`);
      out.labels = b.labels;
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

  /** Eval mode, no gradients: the head's outputs (ModelOutput), and the loss when labels are given. */
  forward(batch: Batch): Promise<ModelOutput> {
    try {
      const nb = this.toNative(batch, false);
      return this.run(async () => {
        const r = await this.native.forward(nb);
        const out: ModelOutput = { shapes: {} };
        const camel = { logits: 'logits', start_logits: 'startLogits', end_logits: 'endLogits' } as const;
        for (const t of r.outputs) {
          const k = camel[t.name as keyof typeof camel];
          out[k] = t.data;
          out.shapes[k] = t.shape;
        }
        if (r.loss !== undefined) out.loss = r.loss;
        return out;
      });
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
   * The optimizer (fused AdamW by default; adamw_torch, sgd, adafactor; weight decay skips biases and LayerNorm
   * weights) and gradient clipping, set once per run as a torch.optim object is made. The optimizer keeps its own
   * state; changing the settings keeps it when the new optimizer keeps the same tensors (AdamW fused or not) and
   * starts afresh otherwise. optimizerStep() sets the defaults if this was never called.
   */
  setOptimizer(o: OptimizerOptions = {}): Promise<void> {
    try {
      const opts = optimizerSettings(o);
      this.optim = opts.optim;
      return this.run(() => this.native.setOptimizer(opts));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** clip_grad_norm_, then one step of the optimizer setOptimizer made at learning rate `lr`, then zero the gradients. Returns the pre-clip norm. */
  optimizerStep(o: { lr: number }): Promise<number> {
    try {
      if (typeof o !== 'object' || o === null) throw new TypeError('optimizerStep options must be an object with lr');
      const extra = Object.keys(o).filter((k) => k !== 'lr');
      if (extra.length) throw new TypeError(`optimizerStep takes { lr } only; give ${extra.join(', ')} to setOptimizer() once`);
      const lr = checkNum('lr', o.lr, (x) => Number.isFinite(x) && x >= 0, 'a finite number >= 0');
      const defaults = this.optim === undefined ? optimizerSettings({}) : undefined;  // optimizerStep without setOptimizer
      if (defaults) this.optim = defaults.optim;
      return this.run(async () => {
        if (defaults) await this.native.setOptimizer(defaults);
        return this.native.optimizerStep(lr);
      });
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
    if (mode === 'bf16' && this._quantization === 'int8') return Promise.reject(new TypeError('mixed precision bf16 cannot be combined with int8 quantization (it computes in fp32)'));
    return this.run(async () => { await this.native.setAutocast(mode); this._mixedPrecision = mode; });
  }
  get mixedPrecision(): 'no' | 'bf16' { return this._mixedPrecision; }
  private _mixedPrecision: 'no' | 'bf16' = 'no';

  /**
   * Evaluation (forward, predict, evaluate) with every Linear layer in int8: 'int8' quantizes as
   * `torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)` does (weights per tensor,
   * symmetric; each product's input quantized on the fly over the whole batch, padding included), on the CPU in
   * fp32 only. Training is unaffected (the quantized copies follow the weights); 'none' (the default) turns it off.
   */
  setQuantization(mode: 'none' | 'int8'): Promise<void> {
    if (mode !== 'none' && mode !== 'int8') return Promise.reject(new TypeError(`quantization must be 'none' or 'int8', got ${JSON.stringify(mode)}`));
    if (mode === 'int8' && this.device !== 'cpu') return Promise.reject(new TypeError(`int8 quantization runs on the CPU only; this model is on ${this.device}`));
    if (mode === 'int8' && this._mixedPrecision === 'bf16') return Promise.reject(new TypeError('int8 quantization cannot be combined with mixed precision bf16 (it computes in fp32)'));
    return this.run(async () => { await this.native.setQuantization(mode); this._quantization = mode; });
  }
  get quantization(): 'none' | 'int8' { return this._quantization; }
  private _quantization: 'none' | 'int8' = 'none';

  /**
   * Label smoothing of the classification loss in trainStep and forward (the Trainer's label_smoothing_factor,
   * computed as its LabelSmoother: (1 - e) * NLL + e * the mean of -log p over the classes). 0 turns it off.
   */
  setLabelSmoothing(epsilon: number): Promise<void> {
    try {
      checkNum('labelSmoothing', epsilon, (x) => x >= 0 && x < 1, 'in [0, 1)');
      if (epsilon > 0 && (this.head === 'QuestionAnswering' || (this.head === 'SequenceClassification' && this.problemType !== 'single_label_classification')))
        throw new TypeError(`label smoothing applies to class labels only; this model is ${this.head === 'SequenceClassification' ? this.problemType : this.architecture}`);
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

  /** Writes model.safetensors and config.json (what AutoModelFor<head>.from_pretrained reads). */
  async save(dir: string): Promise<void> {
    // Written by the addon straight from the tensors: no copy of the weights passes through JS.
    await writeAtomically(path.join(dir, 'model.safetensors'), (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'model', { format: 'pt' })));
    await writeFileAtomic(path.join(dir, 'config.json'), configJsonText(this.config, this.architecture));
  }

  /** Loads weights saved by save() (same architecture and names) into this model. */
  async loadWeights(file: string): Promise<void> {
    const { tensors } = await indexSafetensors(file);
    const report = await this.run(() => this.native.load(tensors)).catch((e) => { throw new InputError(file, (e as Error).message); });
    if (report.missing.length || report.unexpected.length)
      throw new InputError(file, `does not match this model (missing: ${report.missing.slice(0, 5).join(', ') || 'none'}; unexpected: ${report.unexpected.slice(0, 5).join(', ') || 'none'})`);
  }

  /** The optimizer setOptimizer made (the one whose state saveOptimizerState writes); undefined before. */
  private optim: Optimizer | undefined;

  /** The optimizer's state (step, state.<parameter>.<key> as torch.optim names it), with the optimizer's name. */
  async saveOptimizerState(file: string): Promise<void> {
    const optim = this.optim;
    if (optim === undefined) throw new Error('saveOptimizerState: no optimizer yet (setOptimizer or optimizerStep first)');
    await writeAtomically(file, (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'optimizer', { format: 'pt', optim })));
  }

  /** This model's dropout generators as a safetensors file ("cpu", and "cuda" on a GPU), as rng_state in checkpoints. */
  async saveRngState(file: string): Promise<void> {
    await writeAtomically(file, (tmp) => this.run(() => this.native.saveSafetensors(tmp, 'rng', { format: 'pt' })));
  }

  /** Loads saveOptimizerState's file into the optimizer (made with the file's optim if setOptimizer was not called); `optim`, when given, must keep the same state as the file's optimizer. */
  async loadOptimizerState(file: string, optim?: Optimizer): Promise<void> {
    const { tensors, metadata } = await indexSafetensors(file);
    // Files from before the optimizer was recorded hold AdamW state.
    const saved = (metadata.optim ?? (metadata.content === 'adamw-state' ? 'adamw_torch_fused' : undefined)) as Optimizer | undefined;
    if (!saved || !OPTIMIZERS.includes(saved)) throw new InputError(file, `does not say which optimizer's state it holds (metadata optim: ${JSON.stringify(metadata.optim ?? null)})`);
    if (optim && this.optim && optim !== this.optim) throw new TypeError(`loadOptimizerState: optim ${optim} is not the optimizer setOptimizer made (${this.optim})`);
    const mine = optim ?? this.optim;
    if (mine && STATE_FAMILY[mine] !== STATE_FAMILY[saved]) throw new InputError(file, `holds ${saved} state; this run's optimizer is ${mine}, which keeps other state`);
    if (this.optim === undefined) await this.setOptimizer({ optim: mine ?? saved });
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

// Each head's class builds that head in the family config.json's model_type names (BertForSequenceClassification
// .fromPretrained of a RoBERTa checkpoint is a RobertaForSequenceClassification), as transformers' AutoModelFor...
// classes do; index.ts exports them under those names too.

/** Sentence-pair (or single sentence) classification and regression, as transformers' class. */
export class BertForSequenceClassification extends BertPreTrainedModel {
  static override readonly head: Head = 'SequenceClassification';
  override forward(batch: Batch) { return super.forward(batch) as Promise<ModelOutput & { logits: Float32Array }>; }
}
/** A class per token (named-entity recognition): logits [batch, seq, numLabels]. */
export class BertForTokenClassification extends BertPreTrainedModel {
  static override readonly head: Head = 'TokenClassification';
  override forward(batch: Batch) { return super.forward(batch) as Promise<ModelOutput & { logits: Float32Array }>; }
}
/** Extractive question answering: startLogits and endLogits [batch, seq]. */
export class BertForQuestionAnswering extends BertPreTrainedModel {
  static override readonly head: Head = 'QuestionAnswering';
  override forward(batch: Batch) { return super.forward(batch) as Promise<ModelOutput & { startLogits: Float32Array; endLogits: Float32Array }>; }
}
/** Masked-language modelling: the decoder is the word embeddings (tied), its bias cls.predictions.bias. */
export class BertForMaskedLM extends BertPreTrainedModel {
  static override readonly head: Head = 'MaskedLM';
  override forward(batch: Batch) { return super.forward(batch) as Promise<ModelOutput & { logits: Float32Array }>; }
}
/** Multiple choice (SWAG): each example's choices are rows of the batch; logits [examples, numChoices]. */
export class BertForMultipleChoice extends BertPreTrainedModel {
  static override readonly head: Head = 'MultipleChoice';
  override forward(batch: Batch) { return super.forward(batch) as Promise<ModelOutput & { logits: Float32Array }>; }
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
