// Export of a saved model folder to ONNX in the layout transformers.js and onnxruntime load (Optimum's): config.json,
// tokenizer.json, tokenizer_config.json, onnx/model.onnx (fp32) and, with `quantize`, onnx/model_quantized.onnx
// (dynamic int8 of every MatMul weight: what transformers.js loads as dtype 'q8', its browser default). libtorch's C++
// API has no exporter, so the graph is written here, operator by operator, from the checkpoint's tensors, as
// modeling_bert.py computes it (opset 17: LayerNormalization; IR 8), with dynamic batch and sequence axes.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { architectureOf, type BertConfig, embeddingSize, headOf, parseConfig, weightKeys } from './config.js';
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
}

export interface ExportResult {
  files: string[];  // written, relative to the output folder
  architecture: string;
  outputs: string[];  // the graph's output names
}

/** The families and heads the exporter writes (transformers.js has these pipelines; BERT-layout encoders). */
export const ONNX_FAMILIES = ['bert', 'roberta', 'xlm-roberta', 'electra', 'distilbert'] as const;
export const ONNX_HEADS = ['SequenceClassification', 'TokenClassification', 'QuestionAnswering', 'MaskedLM'] as const;

// Where each family keeps an encoder layer's modules (as native/modeling_*.cc registers them).
const BERT_LAYER = { q: 'attention.self.query', k: 'attention.self.key', v: 'attention.self.value', o: 'attention.output.dense', n1: 'attention.output.LayerNorm',
  i: 'intermediate.dense', out: 'output.dense', n2: 'output.LayerNorm' };
const DISTILBERT_LAYER = { q: 'attention.q_lin', k: 'attention.k_lin', v: 'attention.v_lin', o: 'attention.out_lin', n1: 'sa_layer_norm', i: 'ffn.lin1',
  out: 'ffn.lin2', n2: 'output_layer_norm' };

/** A graph under construction: initializers, nodes, fresh names. */
class Graph {
  nodes: Node[] = [];
  initializers: Tensor[] = [];
  private n = 0;
  constructor(private readonly weights: Map<string, TensorEntry>, private readonly quantized: boolean) {}

  fresh(hint: string): string { return `${hint}_${this.n++}`; }

  node(op: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}, outputs = 1, domain = ''): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(op));
    const attribute = Object.entries(attrs).map(([name, v]) => typeof v === 'string' ? { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) }
      : Array.isArray(v) ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v } : Number.isInteger(v) && name !== 'epsilon' && name !== 'alpha'
        ? { name, type: onnx.AttributeProto.AttributeType.INT, i: v } : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v });
    this.nodes.push(onnx.NodeProto.create({ opType: op, input: inputs, output: outs, attribute, domain, name: this.fresh(`n_${op}`) }));
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
  ints(values: number[], dims = [values.length]): string {
    const a = BigInt64Array.from(values.map(BigInt));
    return this.tensor(this.fresh('i64'), onnx.TensorProto.DataType.INT64, dims, new Uint8Array(a.buffer));
  }
  scalar(v: number): string { return this.floats(Float32Array.of(v), [], 'scalar'); }

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
      // onnxruntime's quantize_dynamic (QInt8 weights, per tensor, symmetric; uint8 activations per call).
      let max = 0;
      for (const v of wt) max = Math.max(max, Math.abs(v));
      const scale = max > 0 ? max / 127 : 1;
      const q = Int8Array.from(wt, (v) => Math.max(-127, Math.min(127, Math.round(v / scale))));
      const wq = this.tensor(`${prefix}.weight.T.int8`, onnx.TensorProto.DataType.INT8, [inp, out], new Uint8Array(q.buffer));
      const wzp = this.tensor(this.fresh('wzp'), onnx.TensorProto.DataType.INT8, [], new Uint8Array(1));
      const [xq, xs, xzp] = this.node('DynamicQuantizeLinear', [x], {}, 3);
      const acc = this.op('MatMulInteger', [xq, wq, xzp, wzp]);
      y = this.op('Mul', [this.op('Cast', [acc], { to: onnx.TensorProto.DataType.FLOAT }), this.op('Mul', [xs, this.scalar(scale)])]);
    }
    return this.weights.has(`${prefix}.bias`) ? this.op('Add', [y, this.param(`${prefix}.bias`)]) : y;
  }
  layerNorm(x: string, prefix: string, eps: number): string {
    return this.op('LayerNormalization', [x, this.param(`${prefix}.weight`), this.param(`${prefix}.bias`)], { axis: -1, epsilon: eps });
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

/** The encoder and head as one graph; returns the model proto. */
function buildGraph(c: BertConfig, architecture: string, weights: Map<string, TensorEntry>, quantized: boolean) {
  const g = new Graph(weights, quantized);
  const head = headOf(architecture);
  const { base } = weightKeys(c);
  const H = c.hidden_size, nh = c.num_attention_heads, d = H / nh, eps = c.layer_norm_eps;
  const types = c.type_vocab_size > 0;
  const inputs = ['input_ids', 'attention_mask', ...(types ? ['token_type_ids'] : [])];

  // Embeddings: words + positions (+ token types), LayerNorm; ELECTRA's projection.
  const e = `${base}.embeddings`;
  let x = g.op('Gather', [g.param(`${e}.word_embeddings.weight`), 'input_ids']);
  let positions: string;
  if (base === 'roberta') {
    // create_position_ids_from_input_ids: padding_idx + the running count of non-pad tokens, padding_idx at pads.
    const real = g.op('Cast', [g.op('Not', [g.op('Equal', ['input_ids', g.ints([c.pad_token_id], [])])])], { to: onnx.TensorProto.DataType.INT64 });
    positions = g.op('Add', [g.op('Mul', [g.op('CumSum', [real, g.ints([1], [])]), real]), g.ints([c.pad_token_id], [])]);
  } else {
    const S = g.op('Gather', [g.op('Shape', ['input_ids']), g.ints([1], [])], { axis: 0 });
    positions = g.op('Range', [g.ints([0], []), S, g.ints([1], [])]);
  }
  x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.position_embeddings.weight`), positions])]);
  if (types) x = g.op('Add', [x, g.op('Gather', [g.param(`${e}.token_type_embeddings.weight`), 'token_type_ids'])]);
  x = g.layerNorm(x, `${e}.LayerNorm`, eps);
  if (embeddingSize(c) !== H) x = g.linear(x, `${base}.embeddings_project`);

  // The additive key mask, [batch, 1, 1, seq]: 0 where attended, float32's lowest where padding (as transformers).
  const m = g.op('Cast', ['attention_mask'], { to: onnx.TensorProto.DataType.FLOAT });
  const mask = g.op('Unsqueeze', [g.op('Mul', [g.op('Sub', [g.scalar(1), m]), g.scalar(-3.4028234663852886e38)]), g.ints([1, 2])]);
  const heads = g.ints([0, 0, nh, d]), merged = g.ints([0, 0, H]);
  const names = c.model_type === 'distilbert' ? DISTILBERT_LAYER : BERT_LAYER;
  const layers = `${base}.${c.model_type === 'distilbert' ? 'transformer' : 'encoder'}.layer`;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `${layers}.${l}`;
    const split = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, heads])], { perm });
    const q = split(g.linear(x, `${p}.${names.q}`), [0, 2, 1, 3]);
    const k = split(g.linear(x, `${p}.${names.k}`), [0, 2, 3, 1]);
    const v = split(g.linear(x, `${p}.${names.v}`), [0, 2, 1, 3]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, k]), g.scalar(1 / Math.sqrt(d))]), mask]);
    const context = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v])], { perm: [0, 2, 1, 3] }), merged]);
    const attention = g.layerNorm(g.op('Add', [g.linear(context, `${p}.${names.o}`), x]), `${p}.${names.n1}`, eps);
    const ff = g.linear(g.activation(g.linear(attention, `${p}.${names.i}`), c.hidden_act), `${p}.${names.out}`);
    x = g.layerNorm(g.op('Add', [ff, attention]), `${p}.${names.n2}`, eps);
  }

  // Heads, as each family's modeling file (evaluation: no dropout).
  const first = () => g.op('Gather', [x, g.ints([0], [])], { axis: 1 });
  const outputs: Array<{ name: string; rank: number; from: string }> = [];
  if (head === 'SequenceClassification') {
    let h: string;
    if (c.model_type === 'bert') h = g.op('Tanh', [g.linear(first(), `${base}.pooler.dense`)]);
    else if (c.model_type === 'distilbert') h = g.op('Relu', [g.linear(first(), 'pre_classifier')]);
    else h = c.model_type === 'electra' ? g.activation(g.linear(first(), 'classifier.dense'), 'gelu') : g.op('Tanh', [g.linear(first(), 'classifier.dense')]);
    outputs.push({ name: 'logits', rank: 2, from: g.linear(h, c.model_type === 'bert' || c.model_type === 'distilbert' ? 'classifier' : 'classifier.out_proj') });
  } else if (head === 'TokenClassification') {
    outputs.push({ name: 'logits', rank: 3, from: g.linear(x, 'classifier') });
  } else if (head === 'MaskedLM') {
    // Each family's prediction head, then the decoder: the word embeddings (tied) transposed, and the head's bias.
    const [dense, norm, bias, act, normEps] = {
      bert: ['cls.predictions.transform.dense', 'cls.predictions.transform.LayerNorm', 'cls.predictions.bias', c.hidden_act, eps],
      roberta: ['lm_head.dense', 'lm_head.layer_norm', 'lm_head.bias', 'gelu', eps],
      electra: ['generator_predictions.dense', 'generator_predictions.LayerNorm', 'generator_lm_head.bias', 'gelu', eps],
      distilbert: ['vocab_transform', 'vocab_layer_norm', 'vocab_projector.bias', c.hidden_act, 1e-12],
    }[base as 'bert' | 'roberta' | 'electra' | 'distilbert'] as [string, string, string, string, number];
    const h = g.layerNorm(g.activation(g.linear(x, dense), act), norm, normEps);
    const decoder = g.op('Transpose', [g.param(`${e}.word_embeddings.weight`)], { perm: [1, 0] });
    outputs.push({ name: 'logits', rank: 3, from: g.op('Add', [g.op('MatMul', [h, decoder]), g.param(bias)]) });
  } else {
    const [s, en] = g.node('Split', [g.linear(x, 'qa_outputs')], { axis: -1 }, 2);
    outputs.push({ name: 'start_logits', rank: 2, from: g.op('Squeeze', [s, g.ints([-1])]) }, { name: 'end_logits', rank: 2, from: g.op('Squeeze', [en, g.ints([-1])]) });
  }
  for (const o of outputs) g.nodes.push(onnx.NodeProto.create({ opType: 'Identity', input: [o.from], output: [o.name], name: `out_${o.name}` }));

  const dim = (...names: Array<string | number>) => ({ dim: names.map((n) => (typeof n === 'number' ? { dimValue: n } : { dimParam: n })) });
  const valueInfo = (name: string, type: number, shape: ReturnType<typeof dim>) => onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: type, shape } } });
  const labels = head === 'MaskedLM' ? c.vocab_size : head === 'QuestionAnswering' ? 0 : Object.keys(c.id2label).length;
  const graph = onnx.GraphProto.create({
    name: architecture, node: g.nodes, initializer: g.initializers,
    input: inputs.map((n) => valueInfo(n, onnx.TensorProto.DataType.INT64, dim('batch_size', 'sequence_length'))),
    output: outputs.map((o) => valueInfo(o.name, onnx.TensorProto.DataType.FLOAT,
      o.rank === 3 ? dim('batch_size', 'sequence_length', labels) : o.name === 'logits' ? dim('batch_size', labels) : dim('batch_size', 'sequence_length'))),
  });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'bert-trainer-node', opsetImport: [{ domain: '', version: 17 }], graph });
  return { bytes: onnx.ModelProto.encode(model).finish(), outputs: outputs.map((o) => o.name) };
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
  for (const quantized of o.quantize ? [false, true] : [false]) {
    const built = buildGraph(c, architecture, weights, quantized);
    if (built.bytes.byteLength >= 2 ** 31) throw new InputError(weightsFile, 'the ONNX graph would be over 2 GB: external data is not written here yet');
    const name = `onnx/${quantized ? 'model_quantized' : 'model'}.onnx`;
    await writeFileAtomic(path.join(outDir, name), built.bytes);
    files.push(name);
    outputs = built.outputs;
  }
  await fs.copyFile(configFile, path.join(outDir, 'config.json'));
  await writeFileAtomic(path.join(outDir, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson()) + '\n');
  await writeFileAtomic(path.join(outDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigFor(tok), null, 2) + '\n');
  files.push('config.json', 'tokenizer.json', 'tokenizer_config.json');
  return { files, architecture, outputs };
}
