// BertConfig as transformers reads config.json: defaults, validation with the file and field named, overrides.
import os from 'node:os';
import { InputError, show } from './errors.js';
import { addon } from './native.js';

export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification';

export interface BertConfig {
  model_type: 'bert';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  pad_token_id: number;
  position_embedding_type: string;
  classifier_dropout: number | null;
  id2label: Record<string, string>;
  label2id: Record<string, number>;
  problem_type: ProblemType | null;
  [key: string]: unknown;
}

export interface ConfigOverrides {
  numLabels?: number;
  /** Label names in id order; sets id2label/label2id (and numLabels). */
  labels?: string[];
  problemType?: ProblemType;
}

export const BERT_BASE_UNCASED: Omit<BertConfig, 'id2label' | 'label2id' | 'problem_type'> = {
  model_type: 'bert', vocab_size: 30522, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
  intermediate_size: 3072, hidden_act: 'gelu', hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02, layer_norm_eps: 1e-12, pad_token_id: 0,
  position_embedding_type: 'absolute', classifier_dropout: null,
};


let activations: string[] | undefined;

export function numLabels(c: BertConfig): number {
  return Object.keys(c.id2label).length;
}

export function problemType(c: BertConfig): ProblemType {
  return c.problem_type ?? (numLabels(c) === 1 ? 'regression' : 'single_label_classification');
}

function labelMaps(n: number, names?: string[]): Pick<BertConfig, 'id2label' | 'label2id'> {
  const id2label: Record<string, string> = {};
  const label2id: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const name = names?.[i] ?? `LABEL_${i}`;
    id2label[String(i)] = name;
    label2id[name] = i;
  }
  return { id2label, label2id };
}

/** Parses a config.json object; `file` names the source in every error. */
export function parseConfig(raw: unknown, file: string, o: ConfigOverrides = {}): BertConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new InputError(file, 'config is not a JSON object');
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== 'bert')
    throw new InputError(file, `model_type is ${show(r.model_type)}; only BERT ("bert") models are supported`);
  const c = { ...BERT_BASE_UNCASED, ...r, model_type: 'bert' } as BertConfig;
  const int = (k: string, min: number, max = 1e9) => {
    const v = c[k];
    if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
      throw new InputError(file, `${k} must be an integer in [${min}, ${max}], got ${show(v)}`);
  };
  const prob = (k: string) => {
    const v = c[k];
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new InputError(file, `${k} must be a number in [0, 1), got ${show(v)}`);
  };
  int('vocab_size', 1, 10_000_000);
  int('hidden_size', 1, 65536);
  int('num_hidden_layers', 0, 1000);
  int('num_attention_heads', 1, 4096);
  int('intermediate_size', 1, 1 << 20);
  int('max_position_embeddings', 1, 1 << 20);
  int('type_vocab_size', 1, 1 << 16);
  if (c.pad_token_id === null) c.pad_token_id = -1;
  int('pad_token_id', -1, c.vocab_size - 1);
  prob('hidden_dropout_prob');
  prob('attention_probs_dropout_prob');
  if (c.classifier_dropout !== null && c.classifier_dropout !== undefined) prob('classifier_dropout');
  else c.classifier_dropout = null;
  for (const k of ['initializer_range', 'layer_norm_eps']) {
    const v = c[k];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new InputError(file, `${k} must be a positive number, got ${show(v)}`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0)
    throw new InputError(file, `hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ${c.num_attention_heads}`);
  const acts = (activations ??= addon().runtime().activations);  // the addon implements them: it owns the list
  if (!acts.includes(c.hidden_act)) throw new InputError(file, `hidden_act ${show(c.hidden_act)} is not supported (${acts.join(', ')})`);
  if (c.position_embedding_type !== 'absolute')
    throw new InputError(file, `position_embedding_type ${show(c.position_embedding_type)} is not supported (only "absolute")`);

  // Labels: config.json's id2label (keys "0".."n-1"), else num_labels, else 2, as PretrainedConfig does.
  let n = 2;
  let names: string[] | undefined;
  if (r.id2label !== undefined) {
    if (typeof r.id2label !== 'object' || r.id2label === null) throw new InputError(file, 'id2label must be an object');
    const entries = Object.entries(r.id2label as Record<string, unknown>);
    n = entries.length;
    names = [];
    for (const [k, v] of entries) {
      const i = Number(k);
      if (!Number.isInteger(i) || i < 0 || i >= n || typeof v !== 'string') throw new InputError(file, `id2label must map "0".."${n - 1}" to names`);
      names[i] = v;
    }
  } else if (r.num_labels !== undefined) {
    n = r.num_labels as number;
  }
  if (o.labels) {
    n = o.labels.length;
    names = o.labels;
  } else if (o.numLabels !== undefined && o.numLabels !== n) {
    n = o.numLabels;
    names = undefined;
  }
  if (!Number.isInteger(n) || n < 1 || n > MAX_LABELS) throw new InputError(file, `the number of labels must be an integer in [1, ${MAX_LABELS}], got ${show(n)}`);
  Object.assign(c, labelMaps(n, names));
  delete c.num_labels;
  const pt = o.problemType ?? (r.problem_type as ProblemType | null | undefined) ?? null;
  if (pt !== null && !['regression', 'single_label_classification', 'multi_label_classification'].includes(pt))
    throw new InputError(file, `problem_type ${show(pt)} is not one of regression, single_label_classification, multi_label_classification`);
  c.problem_type = pt;
  checkFits(c, file, 4, 'its fp32 weights alone');
  return c;
}

const MAX_LABELS = 100000;

/** The parameters the addon allocates for this config and head. */
export function parameterCount(c: BertConfig, architecture: Architecture = architectureOf(c)): number {
  const H = c.hidden_size, I = c.intermediate_size, n = numLabels(c);
  const embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * H + 2 * H;
  const layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H;
  const pooler = H * H + H;
  const head = { BertForSequenceClassification: pooler + H * n + n, BertForMultipleChoice: pooler + H + 1, BertForTokenClassification: H * n + n,
    BertForQuestionAnswering: H * n + n, BertForMaskedLM: H * H + H + 2 * H + c.vocab_size }[architecture];
  return embeddings + c.num_hidden_layers * layer + head;
}

/** Bytes of memory this process can still take: the kernel's MemAvailable, within a cgroup's limit if it has one. */
export function availableMemory(): number {
  const limit = process.constrainedMemory?.() ?? 0;
  const free = os.freemem();
  return limit > 0 && limit < Number.MAX_SAFE_INTEGER ? Math.min(free, Math.max(0, limit - process.memoryUsage.rss())) : free;
}

/**
 * Each field of a config can be in range while their product is not: refuse, naming the file, a model that cannot
 * fit in memory before anything is allocated (the kernel would kill the process after minutes of swapping).
 * `bytesPerParameter`: 4 to hold fp32 weights; training adds gradients and AdamW's two moments (16 in all).
 */
export function checkFits(c: BertConfig, file: string, bytesPerParameter: number, what: string): void {
  const params = parameterCount(c), need = params * bytesPerParameter, have = availableMemory();
  if (need > have) {
    const gb = (b: number) => `${(b / 2 ** 30).toFixed(1)} GB`;
    throw new InputError(file, `this configuration makes a model of ${params.toExponential(2)} parameters (vocab_size ${c.vocab_size}, hidden_size ${c.hidden_size}, ` +
      `num_hidden_layers ${c.num_hidden_layers}, intermediate_size ${c.intermediate_size}): ${what} need ${gb(need)}, and this machine has ${gb(have)} of memory available`);
  }
}

/** The heads (transformers' class names) the addon builds on the encoder: the one list. */
export const ARCHITECTURES = ['BertForSequenceClassification', 'BertForTokenClassification', 'BertForQuestionAnswering', 'BertForMaskedLM', 'BertForMultipleChoice'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/**
 * The head a checkpoint's config.json names (architectures[0], as AutoModel reads it), when it is one of ours;
 * BertForPreTraining keeps its masked-LM head; a bare BertModel (or none named) gets sequence classification.
 */
export function architectureOf(c: BertConfig): Architecture {
  const named = Array.isArray(c.architectures) ? String(c.architectures[0]) : undefined;
  if (named === 'BertForPreTraining') return 'BertForMaskedLM';
  return (ARCHITECTURES as readonly string[]).includes(named ?? '') ? named as Architecture : 'BertForSequenceClassification';
}

/** What save() writes: the config as transformers writes it for the model's class. */
export function configToJson(c: BertConfig, architecture: Architecture): Record<string, unknown> {
  return { ...c, architectures: [architecture], model_type: 'bert', pad_token_id: c.pad_token_id < 0 ? null : c.pad_token_id, dtype: 'float32' };
}

/** What the addon needs. */
export function nativeConfig(c: BertConfig, architecture: Architecture): Record<string, unknown> {
  return { ...c, num_labels: numLabels(c), problem_type: problemType(c), classifier_dropout: c.classifier_dropout ?? -1, architecture };
}
