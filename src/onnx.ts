// Export of a saved model folder to ONNX in the layout transformers.js and onnxruntime load (Optimum's): config.json,
// tokenizer.json, tokenizer_config.json, onnx/model.onnx (fp32) and, with `quantize`, onnx/model_quantized.onnx
// (dynamic int8 of every MatMul weight: what transformers.js loads as dtype 'q8', its browser default). libtorch's C++
// API has no exporter, so the graph is written here, operator by operator, from the checkpoint's tensors, as
// modeling_bert.py computes it (opset 17: LayerNormalization; IR 8), with dynamic batch and sequence axes.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { architectureOf, type BertConfig, debertaRelative, embeddingSize, headOf, parseConfig, weightKeys } from './config.js';
import { InputError } from './errors.js';
import { writeFileAtomic } from './fsutil.js';
import { readSafetensors, type TensorEntry } from './safetensors.js';
import { BertTokenizer } from './tokenizer.js';

const { onnx } = onnxProto;
type Node = InstanceType<typeof onnx.NodeProto>;
type Tensor = InstanceType<typeof onnx.TensorProto>;

export interface ExportOptions {
  /** Also write onnx/model_quantized.onnx: int8 weights, activations quantized per call (DynamicQuantizeLinear). */
  quantize?: boolean;
  /**
   * Weights in a side file (`onnx/<model>.onnx_data`, ONNX external data) instead of inside the graph: needed past
   * protobuf's 2 GB limit, so chosen there by itself; true forces it.
   */
  externalData?: boolean;
}

/** Past this many weight bytes a graph keeps its weights outside the protobuf (whose messages stop at 2 GB). */
const EXTERNAL_DATA_BYTES = 1.8e9;

export interface ExportResult {
  files: string[];  // written, relative to the output folder
  architecture: string;
  outputs: string[];  // the graph's output names
}

/** The families and heads the exporter writes (the heads transformers.js has pipelines for). */
export const ONNX_FAMILIES = ['bert', 'roberta', 'xlm-roberta', 'electra', 'distilbert', 'modernbert', 'deberta-v2'] as const;
export const ONNX_HEADS = ['SequenceClassification', 'TokenClassification', 'QuestionAnswering', 'MaskedLM'] as const;

// Where each family keeps an encoder layer's modules (as native/modeling_*.cc registers them).
const BERT_LAYER = { q: 'attention.self.query', k: 'attention.self.key', v: 'attention.self.value', o: 'attention.output.dense', n1: 'attention.output.LayerNorm',
  i: 'intermediate.dense', out: 'output.dense', n2: 'output.LayerNorm' };
const DISTILBERT_LAYER = { q: 'attention.q_lin', k: 'attention.k_lin', v: 'attention.v_lin', o: 'attention.out_lin', n1: 'sa_layer_norm', i: 'ffn.lin1',
  out: 'ffn.lin2', n2: 'output_layer_norm' };

/** The float attributes of the operators written here (every other number is an int attribute). */
const FLOAT_ATTRIBUTES = new Set(['epsilon']);

/** A graph under construction: initializers, nodes, fresh names. */
class Graph {
  nodes: Node[] = [];
  initializers: Tensor[] = [];
  private n = 0;
  constructor(private readonly weights: Map<string, TensorEntry>, private readonly quantized: boolean) {}

  fresh(hint: string): string { return `${hint}_${this.n++}`; }

  node(op: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}, outputs = 1): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(op));
    const T = onnx.AttributeProto.AttributeType;
    const attribute = Object.entries(attrs).map(([name, v]) => typeof v === 'string' ? { name, type: T.STRING, s: new TextEncoder().encode(v) }
      : Array.isArray(v) ? { name, type: T.INTS, ints: v } : FLOAT_ATTRIBUTES.has(name) ? { name, type: T.FLOAT, f: v } : { name, type: T.INT, i: v });
    this.nodes.push(onnx.NodeProto.create({ opType: op, input: inputs, output: outs, attribute, name: this.fresh(`n_${op}`) }));
    return outs;
  }
  op(op: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}): string { return this.node(op, inputs, attrs)[0]; }

  tensor(name: string, type: number, dims: number[], raw: Uint8Array): string {
    this.initializers.push(onnx.TensorProto.create({ name, dataType: type, dims, rawData: raw }));
    return name;
  }
  floats(values: Float32Array, dims: number[], hint = 'const'): string {
    return this.tensor(this.fresh(hint), onnx.TensorProto.DataType.FLOAT, dims, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  }
  // Small constants (shapes, axes, scalars) are written once each and shared by every node that reads them.
  private constants = new Map<string, string>();
  private constant(key: string, make: () => string): string {
    let id = this.constants.get(key);
    if (!id) this.constants.set(key, (id = make()));
    return id;
  }
  ints(values: number[], dims = [values.length]): string {
    return this.constant(`i64 ${dims} ${values}`, () => {
      const a = BigInt64Array.from(values.map(BigInt));
      return this.tensor(this.fresh('i64'), onnx.TensorProto.DataType.INT64, dims, new Uint8Array(a.buffer));
    });
  }
  scalar(v: number): string { return this.constant(`f32 ${Math.fround(v)}`, () => this.floats(Float32Array.of(v), [], 'scalar')); }

  /** A checkpoint tensor as fp32, checked against the expected shape. */
  weight(name: string, shape?: number[]): Float32Array {
    const t = this.weights.get(name);
    if (!t) throw new InputError('model.safetensors', `no tensor ${name}: the checkpoint does not match its config.json`);
    if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])))
      throw new InputError('model.safetensors', `${name} has shape [${t.shape}], expected [${shape}]`);
    return toF32(t);
  }
  private params = new Map<string, string>();
  /** A checkpoint tensor as an initializer, once however often it is used (the tied decoder reads the embeddings). */
  param(name: string): string {
    let id = this.params.get(name);
    if (!id) {
      id = this.floats(this.weight(name), this.weights.get(name)!.shape, name);
      this.params.set(name, id);
    }
    return id;
  }

  /** nn.Linear: x W^T + b (the weight stored transposed, [in, out]); int8 MatMulInteger when quantizing. */
  linear(x: string, prefix: string): string {
    const t = this.weights.get(`${prefix}.weight`);
    if (!t) throw new InputError('model.safetensors', `no tensor ${prefix}.weight`);
    const [out, inp] = t.shape, w = this.weight(`${prefix}.weight`);
    const wt = new Float32Array(inp * out);
    for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) wt[i * out + o] = w[o * inp + i];
    let y: string;
    if (!this.quantized) {
      y = this.op('MatMul', [x, this.floats(wt, [inp, out], `${prefix}.weight.T`)]);
    } else {
      // As transformers.js's conversion script quantizes (onnxruntime's quantize_dynamic with its defaults there,
      // per_channel and reduce_range): each output column's weights symmetric in 7 bits, [-64, 64]; uint8
      // activations per call. On CPUs without VNNI onnxruntime multiplies u8 x s8 pairs into int16 (vpmaddubsw),
      // which 8-bit weights saturate (255 * 127 * 2 > 32767): outputs off by up to 11% of the largest on an AVX2-only
      // EPYC, where 7 bits keep every pair in range.
      const scale = new Float32Array(out);
      for (let i = 0; i < inp; i++) for (let o = 0; o < out; o++) scale[o] = Math.max(scale[o], Math.abs(wt[i * out + o]));
      for (let o = 0; o < out; o++) scale[o] = scale[o] > 0 ? scale[o] / 64 : 1;
      const q = Int8Array.from(wt, (v, j) => Math.max(-64, Math.min(64, Math.round(v / scale[j % out]))));
      const wq = this.tensor(`${prefix}.weight.T.int8`, onnx.TensorProto.DataType.INT8, [inp, out], new Uint8Array(q.buffer));
      const wzp = this.tensor(this.fresh('wzp'), onnx.TensorProto.DataType.INT8, [out], new Uint8Array(out));
      const [xq, xs, xzp] = this.node('DynamicQuantizeLinear', [x], {}, 3);
      const acc = this.op('MatMulInteger', [xq, wq, xzp, wzp]);
      y = this.op('Mul', [this.op('Cast', [acc], { to: onnx.TensorProto.DataType.FLOAT }), this.op('Mul', [xs, this.floats(scale, [out], `${prefix}.weight.T.scale`)])]);
    }
    return this.weights.has(`${prefix}.bias`) ? this.op('Add', [y, this.param(`${prefix}.bias`)]) : y;
  }
  has(name: string): boolean { return this.weights.has(name); }
  /** nn.LayerNorm; without a bias where the checkpoint has none (ModernBERT's norm_bias false). */
  layerNorm(x: string, prefix: string, eps: number): string {
    const bias = this.has(`${prefix}.bias`) ? [this.param(`${prefix}.bias`)] : [];
    return this.op('LayerNormalization', [x, this.param(`${prefix}.weight`), ...bias], { axis: -1, epsilon: eps });
  }
  activation(x: string, name: string): string {
    const mul = (a: string, b: string) => this.op('Mul', [a, b]);
    if (name === 'gelu') return mul(mul(x, this.scalar(0.5)), this.op('Add', [this.scalar(1), this.op('Erf', [this.op('Div', [x, this.scalar(Math.SQRT2)])])]));
    if (name === 'gelu_new' || name === 'gelu_pytorch_tanh' || name === 'gelu_fast') {
      const inner = mul(this.scalar(Math.sqrt(2 / Math.PI)), this.op('Add', [x, mul(this.scalar(0.044715), this.op('Pow', [x, this.scalar(3)]))]));
      return mul(mul(x, this.scalar(0.5)), this.op('Add', [this.scalar(1), this.op('Tanh', [inner])]));
    }
    if (name === 'relu') return this.op('Relu', [x]);
    if (name === 'tanh') return this.op('Tanh', [x]);
    if (name === 'silu' || name === 'swish') return mul(x, this.op('Sigmoid', [x]));
    if (name === 'quick_gelu') return mul(x, this.op('Sigmoid', [mul(x, this.scalar(1.702))]));
    throw new InputError('config.json', `hidden_act ${JSON.stringify(name)} has no ONNX form here`);
  }
}

function toF32(t: TensorEntry): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const bytes = t.data;
  if (t.dtype === 'F32') return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 4 * n));
  const out = new Float32Array(n), view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), u = new Uint32Array(out.buffer);
  if (t.dtype === 'BF16') { for (let i = 0; i < n; i++) u[i] = view.getUint16(2 * i, true) << 16; return out; }
  if (t.dtype === 'F16') {
    for (let i = 0; i < n; i++) {
      const h = view.getUint16(2 * i, true), s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
      out[i] = (s ? -1 : 1) * (e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15));
    }
    return out;
  }
  throw new InputError('model.safetensors', `${t.name} is ${t.dtype}; the exporter reads F32, BF16 and F16 weights`);
}

type Outputs = Array<{ name: string; rank: number; from: string }>;
const LOWEST = -3.4028234663852886e38;  // float32's lowest: what transformers fills masked scores with
const FLOAT = onnx.TensorProto.DataType.FLOAT, INT64 = onnx.TensorProto.DataType.INT64;

/** Pieces every family's graph uses. */
function common(g: Graph, c: BertConfig) {
  const H = c.hidden_size, nh = c.num_attention_heads, d = H / nh;
  const heads = g.ints([0, 0, nh, d]), merged = g.ints([0, 0, H]);
  const S = g.op('Gather', [g.op('Shape', ['input_ids']), g.ints([1], [])], { axis: 0 });
  let positions: string | undefined;
  const range = () => (positions ??= g.op('Range', [g.ints([0], []), S, g.ints([1], [])]));  // 0..seq-1, int64, one node
  const m = g.op('Cast', ['attention_mask'], { to: FLOAT });  // [batch, seq]
  return {
    H, nh, d, range, m,
    /** [batch, seq, hidden] -> [batch, heads, seq, head_dim] */
    split: (t: string) => g.op('Transpose', [g.op('Reshape', [t, heads])], { perm: [0, 2, 1, 3] }),
    /** The additive key mask [batch, 1, 1, seq]: 0 where attended, LOWEST at padding. */
    keyMask: () => g.op('Unsqueeze', [g.op('Mul', [g.op('Sub', [g.scalar(1), m]), g.scalar(LOWEST)]), g.ints([1, 2])]),
    /** softmax(scores + mask) v, heads merged back: [batch, seq, hidden]. */
    attend: (scores: string, mask: string, v: string) =>
      g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [g.op('Softmax', [g.op('Add', [scores, mask])], { axis: -1 }), v])], { perm: [0, 2, 1, 3] }), merged]),
    first: (x: string) => g.op('Gather', [x, g.ints([0], [])], { axis: 1 }),
    qa: (logits: string): Outputs => {
      const [s, e] = g.node('Split', [logits], { axis: -1 }, 2);
      return [{ name: 'start_logits', rank: 2, from: g.op('Squeeze', [s, g.ints([-1])]) }, { name: 'end_logits', rank: 2, from: g.op('Squeeze', [e, g.ints([-1])]) }];
    },
    /** h W_emb^T + bias: the masked-LM decoder tied to the word embeddings. */
    decode: (h: string, embeddings: string, bias: string | undefined) => {
      const y = g.op('MatMul', [h, g.op('Transpose', [g.param(embeddings)], { perm: [1, 0] })]);
      return bias ? g.op('Add', [y, g.param(bias)]) : y;
    },
  };
}

/** BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT: modeling_bert.py's post-norm encoder under each family's keys. */
function bertLayout(g: Graph, c: BertConfig, head: string): Outputs {
  const { base } = weightKeys(c);
  const k = common(g, c), eps = c.layer_norm_eps;
  const e = `${base}.embeddings`;
  let x = g.op('Gather', [g.param(`${e}.word_embeddings.weight`), 'input_ids']);
  let positions: string;
  if (base === 'roberta') {
    // create_position_ids_from_input_ids: padding_idx + the running count of non-pad tokens, padding_idx at pads.
    const real = g.op('Cast', [g.op('Not', [g.op('Equal', ['input_ids', g.ints([c.pad_token_id], [])])])], { to: INT64 });
    positions = g.op('Add', [g.op('Mul', [g.op('CumSum', [real, g.ints([1], [])]), real]), g.ints([c.pad_token_id], [])]);
  } else {
    positions = k.range();
  }
  x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.position_embeddings.weight`), positions])]);
  if (c.type_vocab_size > 0) x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.token_type_embeddings.weight`), 'token_type_ids'])]);
  x = g.layerNorm(x, `${e}.LayerNorm`, eps);
  if (embeddingSize(c) !== k.H) x = g.linear(x, `${base}.embeddings_project`);

  const mask = k.keyMask();
  const names = c.model_type === 'distilbert' ? DISTILBERT_LAYER : BERT_LAYER;
  const layers = `${base}.${c.model_type === 'distilbert' ? 'transformer' : 'encoder'}.layer`;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${layers}.${l}`;
    const q = k.split(g.linear(x, `${p}.${names.q}`)), key = k.split(g.linear(x, `${p}.${names.k}`)), v = k.split(g.linear(x, `${p}.${names.v}`));
    const scores = g.op('Mul', [g.op('MatMul', [q, g.op('Transpose', [key], { perm: [0, 1, 3, 2] })]), g.scalar(1 / Math.sqrt(k.d))]);
    const attention = g.layerNorm(g.op('Add', [g.linear(k.attend(scores, mask, v), `${p}.${names.o}`), x]), `${p}.${names.n1}`, eps);
    const ff = g.linear(g.activation(g.linear(attention, `${p}.${names.i}`), c.hidden_act), `${p}.${names.out}`);
    x = g.layerNorm(g.op('Add', [ff, attention]), `${p}.${names.n2}`, eps);
  }

  // Heads, as each family's modeling file (evaluation: no dropout).
  if (head === 'SequenceClassification') {
    let h: string;
    if (c.model_type === 'bert') h = g.op('Tanh', [g.linear(k.first(x), `${base}.pooler.dense`)]);
    else if (c.model_type === 'distilbert') h = g.op('Relu', [g.linear(k.first(x), 'pre_classifier')]);
    else h = c.model_type === 'electra' ? g.activation(g.linear(k.first(x), 'classifier.dense'), 'gelu') : g.op('Tanh', [g.linear(k.first(x), 'classifier.dense')]);
    return [{ name: 'logits', rank: 2, from: g.linear(h, c.model_type === 'bert' || c.model_type === 'distilbert' ? 'classifier' : 'classifier.out_proj') }];
  }
  if (head === 'TokenClassification') return [{ name: 'logits', rank: 3, from: g.linear(x, 'classifier') }];
  if (head === 'QuestionAnswering') return k.qa(g.linear(x, 'qa_outputs'));
  // Each family's masked-LM prediction head, then the decoder.
  const [dense, norm, bias, act, normEps] = {
    bert: ['cls.predictions.transform.dense', 'cls.predictions.transform.LayerNorm', 'cls.predictions.bias', c.hidden_act, eps],
    roberta: ['lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias', 'gelu', eps],
    electra: ['generator_predictions.dense', 'generator_predictions.LayerNorm', 'generator_lm_head.bias', 'gelu', eps],
    distilbert: ['vocab_transform', 'vocab_layer_norm', 'vocab_projector.bias', c.hidden_act, 1e-12],
  }[base as 'bert' | 'roberta' | 'electra' | 'distilbert'] as [string, string, string, string, number];
  return [{ name: 'logits', rank: 3, from: k.decode(g.layerNorm(g.activation(g.linear(x, dense), act), norm, normEps), `${e}.word_embeddings.weight`, bias) }];
}

/** ModernBERT: pre-norm layers, rotary positions (global and local theta), GeGLU, the sliding window on local layers. */
function modernBert(g: Graph, c: BertConfig, head: string): Outputs {
  const k = common(g, c), eps = c.layer_norm_eps, d = k.d;
  let x = g.layerNorm(g.op('Gather', [g.param('model.embeddings.tok_embeddings.weight'), 'input_ids']), 'model.embeddings.norm', eps);
  const pos = g.op('Cast', [k.range()], { to: FLOAT });
  // cos and sin of the positions times 1 / theta^(2i / head_dim), [1, 1, seq, head_dim] (ModernBertRotaryEmbedding).
  const rope = (theta: number) => {
    const inv = Float32Array.from({ length: d / 2 }, (_, i) => 1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / d))));
    const freqs = g.op('Mul', [g.op('Unsqueeze', [pos, g.ints([1])]), g.floats(inv, [1, d / 2], 'inv_freq')]);
    const emb = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.ints([0, 1])]);
    return { cos: g.op('Cos', [emb]), sin: g.op('Sin', [emb]) };
  };
  const global = rope(c.global_rope_theta as number), local = rope(c.local_rope_theta as number);
  const rotate = (t: string, r: { cos: string; sin: string }) => {
    const [a, b] = g.node('Split', [t], { axis: -1 }, 2);
    return g.op('Add', [g.op('Mul', [t, r.cos]), g.op('Mul', [g.op('Concat', [g.op('Neg', [b]), a], { axis: -1 }), r.sin])]);
  };
  const keyMask = k.keyMask();
  // The window: |i - j| <= local_attention / 2, else LOWEST; Min with the key mask (a sum of two LOWESTs overflows).
  const distance = g.op('Abs', [g.op('Sub', [g.op('Unsqueeze', [pos, g.ints([1])]), g.op('Unsqueeze', [pos, g.ints([0])])])]);
  const band = g.op('Where', [g.op('LessOrEqual', [distance, g.scalar(Math.floor((c.local_attention as number) / 2))]), g.scalar(0), g.scalar(LOWEST)]);
  const localMask = g.op('Min', [keyMask, band]);
  const types = c.layer_types as string[];
  const qkvShape = g.ints([0, 0, 3, k.nh, d]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`, isGlobal = types[l] === 'full_attention', r = isGlobal ? global : local;
    const h = l === 0 ? x : g.layerNorm(x, `${p}.attn_norm`, eps);
    const qkv = g.op('Transpose', [g.op('Reshape', [g.linear(h, `${p}.attn.Wqkv`), qkvShape])], { perm: [2, 0, 3, 1, 4] });  // [3, batch, heads, seq, d]
    const [q, key, v] = g.node('Split', [qkv], { axis: 0 }, 3).map((t) => g.op('Squeeze', [t, g.ints([0])]));
    const scores = g.op('Mul', [g.op('MatMul', [rotate(q, r), g.op('Transpose', [rotate(key, r)], { perm: [0, 1, 3, 2] })]), g.scalar(1 / Math.sqrt(d))]);
    x = g.op('Add', [x, g.linear(k.attend(scores, isGlobal ? keyMask : localMask, v), `${p}.attn.Wo`)]);
    const [input, gate] = g.node('Split', [g.linear(g.layerNorm(x, `${p}.mlp_norm`, eps), `${p}.mlp.Wi`)], { axis: -1 }, 2);
    x = g.op('Add', [x, g.linear(g.op('Mul', [g.activation(input, c.hidden_act), gate]), `${p}.mlp.Wo`)]);
  }
  x = g.layerNorm(x, 'model.final_norm', eps);
  const predictionHead = (t: string) => g.layerNorm(g.activation(g.linear(t, 'head.dense'), c.classifier_activation as string), 'head.norm', eps);
  if (head === 'SequenceClassification') {
    let pooled: string;
    if (c.classifier_pooling === 'mean') {
      const m3 = g.op('Unsqueeze', [k.m, g.ints([2])]);
      pooled = g.op('Div', [g.op('ReduceSum', [g.op('Mul', [x, m3]), g.ints([1])], { keepdims: 0 }), g.op('ReduceSum', [m3, g.ints([1])], { keepdims: 0 })]);
    } else {
      pooled = k.first(x);
    }
    return [{ name: 'logits', rank: 2, from: g.linear(predictionHead(pooled), 'classifier') }];
  }
  if (head === 'TokenClassification') return [{ name: 'logits', rank: 3, from: g.linear(predictionHead(x), 'classifier') }];
  if (head === 'QuestionAnswering') return k.qa(g.linear(predictionHead(x), 'classifier'));
  return [{ name: 'logits', rank: 3, from: k.decode(predictionHead(x), 'model.embeddings.tok_embeddings.weight', g.has('decoder.bias') ? 'decoder.bias' : undefined) }];
}

/**
 * DeBERTa's relative positions as gather indices by distance, query minus key, from -(n - 1) to n - 1 (n =
 * max_position_embeddings): c2p's clamp(bucket + span, 0, 2 span - 1) and p2c's clamp(-bucket + span, ...), bucketed
 * as make_log_bucket_position does (its float32 operations mirrored with Math.fround). The graph looks them up by
 * i - j for the input's length.
 */
function debertaIndexTables(c: BertConfig): { c2p: BigInt64Array; p2c: BigInt64Array; n: number } {
  const n = c.max_position_embeddings, { attSpan: span, maxRelative: maxRel, buckets } = debertaRelative(c);
  const f = Math.fround, mid = Math.floor(buckets / 2);
  const bucket = (rel: number) => {
    if (!(buckets > 0 && maxRel > 0)) return rel;
    const abs = rel < mid && rel > -mid ? mid - 1 : Math.abs(rel);
    if (abs <= mid) return rel;
    const logPos = f(Math.ceil(f(f(f(Math.log(f(abs / mid))) / f(Math.log(f((maxRel - 1) / mid)))) * (mid - 1))) + mid);
    return Math.trunc(logPos * Math.sign(rel));
  };
  const c2p = new BigInt64Array(2 * n - 1), p2c = new BigInt64Array(2 * n - 1);
  for (let r = -(n - 1); r < n; r++) {
    const b = bucket(r);
    c2p[r + n - 1] = BigInt(Math.min(Math.max(b + span, 0), 2 * span - 1));
    p2c[r + n - 1] = BigInt(Math.min(Math.max(-b + span, 0), 2 * span - 1));
  }
  return { c2p, p2c, n };
}

/** DeBERTa-v2/v3: disentangled attention (content-to-position, position-to-content) over relative positions. */
function deberta(g: Graph, c: BertConfig, head: string): Outputs {
  const k = common(g, c), eps = c.layer_norm_eps, d = k.d, types = c.pos_att_type as string[];
  const e = 'deberta.embeddings';
  let x = g.op('Gather', [g.param(`${e}.word_embeddings.weight`), 'input_ids']);
  if (c.position_biased_input) x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.position_embeddings.weight`), k.range()])]);
  if (c.type_vocab_size > 0) x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.token_type_embeddings.weight`), 'token_type_ids'])]);
  if (g.has(`${e}.embed_proj.weight`)) x = g.linear(x, `${e}.embed_proj`);
  x = g.op('Mul', [g.layerNorm(x, `${e}.LayerNorm`, eps), g.op('Unsqueeze', [k.m, g.ints([2])])]);  // padding rows zeroed
  // get_attention_mask: query and key both real; LOWEST elsewhere (a padding query's softmax is then uniform).
  const m2 = g.op('Mul', [g.op('Unsqueeze', [k.m, g.ints([1, 2])]), g.op('Unsqueeze', [k.m, g.ints([1, 3])])]);
  const mask = g.op('Mul', [g.op('Sub', [g.scalar(1), m2]), g.scalar(LOWEST)]);
  const scaleFactor = 1 + (types.includes('c2p') ? 1 : 0) + (types.includes('p2c') ? 1 : 0);
  const scale = g.scalar(Math.fround(Math.sqrt(Math.fround(d * scaleFactor))));
  let rel: { c2p: string; p2c: string } | undefined, re: string | undefined;
  if (c.relative_attention) {
    const t = debertaIndexTables(c), ids = k.range();
    const distance = g.op('Add', [g.op('Sub', [g.op('Unsqueeze', [ids, g.ints([1])]), g.op('Unsqueeze', [ids, g.ints([0])])]), g.ints([t.n - 1], [])]);  // [seq, seq]
    const lookup = (a: BigInt64Array) => g.op('Gather', [g.tensor(g.fresh('rel_index'), INT64, [a.length], new Uint8Array(a.buffer)), distance]);
    rel = { c2p: lookup(t.c2p), p2c: lookup(t.p2c) };
    re = g.param('deberta.encoder.rel_embeddings.weight');
    if (g.has('deberta.encoder.LayerNorm.weight')) re = g.layerNorm(re, 'deberta.encoder.LayerNorm', eps);
    re = g.op('Unsqueeze', [re, g.ints([0])]);  // [1, 2 span, hidden]
  }
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `deberta.encoder.layer.${l}`, a = `${p}.attention.self`;
    const q = k.split(g.linear(x, `${a}.query_proj`)), key = k.split(g.linear(x, `${a}.key_proj`)), v = k.split(g.linear(x, `${a}.value_proj`));
    let scores = g.op('MatMul', [q, g.op('Div', [g.op('Transpose', [key], { perm: [0, 1, 3, 2] }), scale])]);
    if (rel && re) {
      const full = g.op('Shape', [scores]);
      let relAtt: string | undefined;
      if (types.includes('c2p')) {
        const posKey = k.split(g.linear(re, c.share_att_key ? `${a}.key_proj` : `${a}.pos_key_proj`));  // [1, heads, 2 span, d]
        const att = g.op('GatherElements', [g.op('MatMul', [q, g.op('Transpose', [posKey], { perm: [0, 1, 3, 2] })]), g.op('Expand', [rel.c2p, full])], { axis: 3 });
        relAtt = g.op('Div', [att, scale]);
      }
      if (types.includes('p2c')) {
        const posQuery = k.split(g.linear(re, c.share_att_key ? `${a}.query_proj` : `${a}.pos_query_proj`));
        const att = g.op('GatherElements', [g.op('MatMul', [key, g.op('Transpose', [posQuery], { perm: [0, 1, 3, 2] })]), g.op('Expand', [rel.p2c, full])], { axis: 3 });
        const p2c = g.op('Div', [g.op('Transpose', [att], { perm: [0, 1, 3, 2] }), scale]);
        relAtt = relAtt ? g.op('Add', [relAtt, p2c]) : p2c;
      }
      if (relAtt) scores = g.op('Add', [scores, relAtt]);
    }
    const attention = g.layerNorm(g.op('Add', [g.linear(k.attend(scores, mask, v), `${p}.attention.output.dense`), x]), `${p}.attention.output.LayerNorm`, eps);
    const ff = g.linear(g.activation(g.linear(attention, `${p}.intermediate.dense`), c.hidden_act), `${p}.output.dense`);
    x = g.layerNorm(g.op('Add', [ff, attention]), `${p}.output.LayerNorm`, eps);
  }
  if (head === 'SequenceClassification')
    return [{ name: 'logits', rank: 2, from: g.linear(g.activation(g.linear(k.first(x), 'pooler.dense'), c.pooler_hidden_act as string), 'classifier') }];
  if (head === 'TokenClassification') return [{ name: 'logits', rank: 3, from: g.linear(x, 'classifier') }];
  if (head === 'QuestionAnswering') return k.qa(g.linear(x, 'qa_outputs'));
  const lm = c.legacy === false ? 'lm_predictions.lm_head' : 'cls.predictions';
  const [dense, norm] = c.legacy === false ? [`${lm}.dense`, `${lm}.LayerNorm`] : [`${lm}.transform.dense`, `${lm}.transform.LayerNorm`];
  return [{ name: 'logits', rank: 3, from: k.decode(g.layerNorm(g.activation(g.linear(x, dense), c.hidden_act), norm, eps), `${e}.word_embeddings.weight`, `${lm}.bias`) }];
}

/**
 * Moves each initializer of 1 KB or more into `dataFile` (ONNX external data: location, offset, length), in order;
 * returns the side file's pieces.
 */
function externalize(initializers: Tensor[], dataFile: string): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  for (const t of initializers) {
    const raw = t.rawData as Uint8Array;
    if (raw.byteLength < 1024) continue;
    t.externalData = [{ key: 'location', value: dataFile }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(raw.byteLength) }];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array(0);
    pieces.push(raw);
    offset += raw.byteLength;
  }
  return pieces;
}

/** The encoder and head as one graph; returns the model proto's bytes (and its external data, if any). */
function buildGraph(c: BertConfig, architecture: string, weights: Map<string, TensorEntry>, quantized: boolean, external: boolean | undefined, dataFile: string) {
  const g = new Graph(weights, quantized);
  const head = headOf(architecture);
  const inputs = ['input_ids', 'attention_mask', ...(c.type_vocab_size > 0 ? ['token_type_ids'] : [])];
  const outputs = c.model_type === 'modernbert' ? modernBert(g, c, head) : c.model_type === 'deberta-v2' ? deberta(g, c, head) : bertLayout(g, c, head);
  for (const o of outputs) g.nodes.push(onnx.NodeProto.create({ opType: 'Identity', input: [o.from], output: [o.name], name: `out_${o.name}` }));

  const dim = (...names: Array<string | number>) => ({ dim: names.map((n) => (typeof n === 'number' ? { dimValue: n } : { dimParam: n })) });
  const valueInfo = (name: string, type: number, shape: ReturnType<typeof dim>) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: type, shape } } });
  const labels = head === 'MaskedLM' ? c.vocab_size : head === 'MultipleChoice' ? 1 : Object.keys(c.id2label).length;
  const graph = onnx.GraphProto.create({
    name: architecture, node: g.nodes, initializer: g.initializers,
    input: inputs.map((n) => valueInfo(n, INT64, dim('batch_size', 'sequence_length'))),
    output: outputs.map((o) => valueInfo(o.name, FLOAT,
      o.rank === 3 ? dim('batch_size', 'sequence_length', labels) : o.name === 'logits' ? dim('batch_size', labels) : dim('batch_size', 'sequence_length'))),
  });
  const weightBytes = g.initializers.reduce((n, t) => n + (t.rawData as Uint8Array).byteLength, 0);
  const data = external ?? weightBytes > EXTERNAL_DATA_BYTES ? externalize(g.initializers, dataFile) : undefined;
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'bert-trainer-node', opsetImport: [{ domain: '', version: 17 }], graph });
  return { bytes: onnx.ModelProto.encode(model).finish(), data, outputs: outputs.map((o) => o.name) };
}

/**
 * tokenizer_config.json with its special tokens named (transformers.js reads cls/sep/pad/unk/mask from it: its
 * question-answering pipeline finds the context after sep_token), from the tokenizer where the file left them out.
 */
function tokenizerConfigFor(tok: BertTokenizer): Record<string, unknown> {
  const c = { ...tok.tokenizerConfig() };
  c.cls_token ??= tok.idToToken(tok.clsId);
  c.sep_token ??= tok.idToToken(tok.sepId);
  c.pad_token ??= tok.idToToken(tok.padId);
  const wordPiece = tok.idToToken(tok.clsId) === '[CLS]';
  for (const [key, token] of [['unk_token', wordPiece ? '[UNK]' : '<unk>'], ['mask_token', wordPiece ? '[MASK]' : '<mask>']] as const)
    if (c[key] === undefined && tok.tokenToId(token) !== undefined) c[key] = token;
  return c;
}

/**
 * Writes `outDir` from the saved model folder `modelDir` (config.json, model.safetensors, the tokenizer files): the
 * layout transformers.js loads offline (`env.localModelPath`), fp32 and with `quantize` int8.
 */
export async function exportOnnx(modelDir: string, outDir: string, o: ExportOptions = {}): Promise<ExportResult> {
  const configFile = path.join(modelDir, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(configFile, 'utf8'));
  } catch (e) {
    throw new InputError(configFile, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found: --model must be a saved model folder' : `not valid JSON (${(e as Error).message})`);
  }
  const c = parseConfig(raw, configFile);
  const architecture = architectureOf(c);
  if (!(ONNX_FAMILIES as readonly string[]).includes(c.model_type))
    throw new InputError(configFile, `model_type ${JSON.stringify(c.model_type)} cannot be exported to ONNX here yet (${ONNX_FAMILIES.join(', ')} can)`);
  const head = headOf(architecture);
  if (!(ONNX_HEADS as readonly string[]).includes(head))
    throw new InputError(configFile, `${architecture} cannot be exported to ONNX here (heads: ${ONNX_HEADS.join(', ')})`);
  const weightsFile = path.join(modelDir, 'model.safetensors');
  const st = await readSafetensors(weightsFile).catch((e) => { throw new InputError(weightsFile, (e as Error).message); });
  const weights = new Map(st.tensors.map((t) => [t.name, t]));
  const tok = await BertTokenizer.fromPretrained(modelDir);

  await fs.mkdir(path.join(outDir, 'onnx'), { recursive: true });
  const files: string[] = [];
  let outputs: string[] = [];
  let external = false;
  for (const quantized of o.quantize ? [false, true] : [false]) {
    const base = quantized ? 'model_quantized' : 'model';
    const built = buildGraph(c, architecture, weights, quantized, o.externalData, `${base}.onnx_data`);
    if (built.data) {
      await writeFileAtomic(path.join(outDir, 'onnx', `${base}.onnx_data`), built.data);
      files.push(`onnx/${base}.onnx_data`);
      external = true;
    }
    await writeFileAtomic(path.join(outDir, 'onnx', `${base}.onnx`), built.bytes);
    files.push(`onnx/${base}.onnx`);
    outputs = built.outputs;
  }
  // transformers.js fetches the side file only when the config says so (transformers.js_config, as Optimum writes it).
  // Otherwise config.json is copied as saved (its floats written as transformers reads them).
  if (external) {
    const config = JSON.parse(await fs.readFile(configFile, 'utf8'));
    config['transformers.js_config'] = { ...config['transformers.js_config'], use_external_data_format: true };
    await writeFileAtomic(path.join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  } else {
    await fs.copyFile(configFile, path.join(outDir, 'config.json'));
  }
  await writeFileAtomic(path.join(outDir, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson()) + '\n');
  await writeFileAtomic(path.join(outDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigFor(tok), null, 2) + '\n');
  files.push('config.json', 'tokenizer.json', 'tokenizer_config.json');
  return { files, architecture, outputs };
}
