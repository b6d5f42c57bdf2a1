// The configs of the BERT family as transformers reads config.json (AutoConfig: model_type picks the family):
// defaults, validation with the file and field named, overrides. Every family is held under BertConfig's field
// names (DistilBERT's dim, n_layers... are mapped in and back out), so the rest of the code reads one shape.
import os from 'node:os';
import { InputError, show } from './errors.js';
import { addon } from './native.js';

export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification';

export interface BertConfig {
  model_type: ModelType;
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


/** The heads, by the suffix of transformers' class names (BertForSequenceClassification, RobertaForMaskedLM...). */
export const HEADS = ['SequenceClassification', 'TokenClassification', 'QuestionAnswering', 'MaskedLM', 'MultipleChoice'] as const;
export type Head = (typeof HEADS)[number];

/**
 * The families: the one list of what is supported. `prefix` names the classes, `base` the base model's key prefix,
 * `headKeys` the modules outside it (a checkpoint's other heads are reported unused), `tied` the keys transformers
 * ties to the word embeddings (not loaded separately), `defaults` the config class's, `aliases` the family's own
 * names for BertConfig's fields.
 */
interface Family {
  prefix: string;
  base: string;
  heads: readonly Head[];
  headKeys: RegExp;
  tied: RegExp;
  defaults: Record<string, unknown>;
  aliases?: Record<string, string>;
  /** Fields of BertConfig's shape the family's config.json does not have: their fixed values (not written back). */
  fixed?: Record<string, unknown>;
  /** The checkpoint class whose masked-LM or discriminator head maps onto a head here (architectures[0]). */
  pretraining?: Head;
}
const ROBERTA_DEFAULTS = { vocab_size: 50265, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, hidden_act: 'gelu',
  hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02,
  layer_norm_eps: 1e-12, pad_token_id: 1, bos_token_id: 0, eos_token_id: 2, position_embedding_type: 'absolute', classifier_dropout: null };
const MODERNBERT_DEFAULTS = { vocab_size: 50368, hidden_size: 768, intermediate_size: 1152, num_hidden_layers: 22, num_attention_heads: 12, hidden_activation: 'gelu',
  max_position_embeddings: 8192, initializer_range: 0.02, initializer_cutoff_factor: 2.0, norm_eps: 1e-5, norm_bias: false, pad_token_id: 50283, eos_token_id: 50282,
  bos_token_id: 50281, cls_token_id: 50281, sep_token_id: 50282, attention_bias: false, attention_dropout: 0, local_attention: 128, embedding_dropout: 0,
  mlp_bias: false, mlp_dropout: 0, decoder_bias: true, classifier_pooling: 'cls', classifier_dropout: 0, classifier_bias: false, classifier_activation: 'gelu',
  tie_word_embeddings: true };
const DEBERTA_DEFAULTS = { vocab_size: 128100, hidden_size: 1536, num_hidden_layers: 24, num_attention_heads: 24, intermediate_size: 6144, hidden_act: 'gelu',
  hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, max_position_embeddings: 512, type_vocab_size: 0, initializer_range: 0.02, layer_norm_eps: 1e-7,
  relative_attention: false, max_relative_positions: -1, pad_token_id: 0, position_biased_input: true, pos_att_type: null, pooler_dropout: 0,
  pooler_hidden_act: 'gelu', legacy: true };
export const FAMILIES = {
  bert: { prefix: 'Bert', base: 'bert', heads: HEADS, headKeys: /^(cls|classifier|qa_outputs)\./, tied: /^cls\.predictions\.decoder\.(weight|bias)$/,
    defaults: {}, pretraining: 'MaskedLM' },
  roberta: { prefix: 'Roberta', base: 'roberta', heads: HEADS, headKeys: /^(lm_head|classifier|qa_outputs)\./, tied: /^lm_head\.decoder\.(weight|bias)$/,
    defaults: ROBERTA_DEFAULTS },
  'xlm-roberta': { prefix: 'XLMRoberta', base: 'roberta', heads: HEADS, headKeys: /^(lm_head|classifier|qa_outputs)\./, tied: /^lm_head\.decoder\.(weight|bias)$/,
    defaults: { ...ROBERTA_DEFAULTS, vocab_size: 30522 } },
  electra: { prefix: 'Electra', base: 'electra', heads: HEADS,
    headKeys: /^(generator_predictions|generator_lm_head|discriminator_predictions|classifier|qa_outputs|sequence_summary)\./, tied: /^generator_lm_head\.weight$/,
    defaults: { vocab_size: 30522, embedding_size: 128, hidden_size: 256, num_hidden_layers: 12, num_attention_heads: 4, intermediate_size: 1024, hidden_act: 'gelu',
      hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02,
      layer_norm_eps: 1e-12, pad_token_id: 0, position_embedding_type: 'absolute', classifier_dropout: null, summary_type: 'first', summary_use_proj: true,
      summary_activation: 'gelu', summary_last_dropout: 0.1 }, pretraining: 'SequenceClassification' },
  distilbert: { prefix: 'DistilBert', base: 'distilbert', heads: HEADS, headKeys: /^(vocab_transform|vocab_layer_norm|vocab_projector|pre_classifier|classifier|qa_outputs)\./,
    tied: /^vocab_projector\.weight$/,
    defaults: { vocab_size: 30522, max_position_embeddings: 512, sinusoidal_pos_embds: false, n_layers: 6, n_heads: 12, dim: 768, hidden_dim: 3072, dropout: 0.1,
      attention_dropout: 0.1, activation: 'gelu', initializer_range: 0.02, qa_dropout: 0.1, seq_classif_dropout: 0.2, pad_token_id: 0 },
    aliases: { hidden_size: 'dim', num_hidden_layers: 'n_layers', num_attention_heads: 'n_heads', intermediate_size: 'hidden_dim', hidden_dropout_prob: 'dropout',
      attention_probs_dropout_prob: 'attention_dropout', hidden_act: 'activation' },
    fixed: { type_vocab_size: 0, layer_norm_eps: 1e-12, position_embedding_type: 'absolute', classifier_dropout: null } },
  // layer_types and rope_parameters as transformers 5 writes them, or global_attn_every_n_layers and the two
  // rope thetas as transformers 4 did (modernBertFields reads both and writes both).
  modernbert: { prefix: 'ModernBert', base: 'model', heads: HEADS, headKeys: /^(head|classifier|decoder)\./, tied: /^decoder\.weight$/,
    defaults: MODERNBERT_DEFAULTS, aliases: { hidden_act: 'hidden_activation', layer_norm_eps: 'norm_eps', attention_probs_dropout_prob: 'attention_dropout' },
    fixed: { type_vocab_size: 0, hidden_dropout_prob: 0, position_embedding_type: 'absolute' } },
  // DeBERTa-v2 and v3 (one model_type; v3 is a configuration: relative positions in 256 buckets, shared keys, no
  // absolute positions). Its optional fields (position_buckets, share_att_key, norm_rel_ebd, embedding_size,
  // cls_dropout...) are read as DebertaV2Model reads them, with getattr's defaults: debertaFields.
  'deberta-v2': { prefix: 'DebertaV2', base: 'deberta', heads: HEADS, headKeys: /^(pooler|classifier|qa_outputs|cls|lm_predictions|mask_predictions)\./,
    tied: /^cls\.predictions\.decoder\.(weight|bias)$/, defaults: DEBERTA_DEFAULTS, fixed: { position_embedding_type: 'absolute', classifier_dropout: null } },
} as const satisfies Record<string, Family>;
export type ModelType = keyof typeof FAMILIES;
const family = (c: { model_type: ModelType }): Family => FAMILIES[c.model_type];

/** Every family's heads as transformers names the classes: the one list (the addon builds each). */
export const ARCHITECTURES: readonly string[] = Object.values(FAMILIES).flatMap((f: Family) => f.heads.map((h) => `${f.prefix}For${h}`));
export type Architecture = string;

/** The head of a class name (RobertaForTokenClassification -> TokenClassification). */
export function headOf(architecture: Architecture): Head {
  const h = architecture.slice(architecture.indexOf('For') + 3) as Head;
  if (!HEADS.includes(h)) throw new TypeError(`architecture ${JSON.stringify(architecture)} is not one of ${ARCHITECTURES.join(', ')}`);
  return h;
}

/** The class of `head` in the config's family, or a clear refusal where the family has no such head here. */
export function architectureFor(c: BertConfig, head: Head): Architecture {
  const f = family(c);
  if (!f.heads.includes(head)) throw new InputError('config.json', `model_type ${show(c.model_type)} has no ${head} head here (it has ${f.heads.join(', ')})`);
  return `${f.prefix}For${head}`;
}

/** The base model's key prefix (bert, roberta, electra, distilbert), the head modules' keys and the tied keys. */
export function weightKeys(c: BertConfig): { base: string; headKeys: RegExp; tied: RegExp } {
  const f = family(c);
  return { base: f.base, headKeys: f.headKeys, tied: f.tied };
}

let activations: string[] | undefined;

/**
 * The checks config fields go through, each error naming `file` and the field as the family's config.json names it
 * (`name`). The activations are the addon's list: it implements them.
 */
function fieldChecks(c: BertConfig, file: string, name: (k: string) => string = (k) => k) {
  const fail = (k: string, what: string): never => { throw new InputError(file, `${name(k)} must be ${what}, got ${show(c[k])}`); };
  return {
    int(k: string, min: number, max = 1e9) {
      const v = c[k];
      if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail(k, `an integer in [${min}, ${max}]`);
    },
    /** A probability; with `optional`, also null or absent. */
    prob(k: string, optional = false) {
      const v = c[k];
      if (optional && (v === null || v === undefined)) return;
      if (typeof v !== 'number' || !(v >= 0 && v < 1)) fail(k, 'a number in [0, 1)');
    },
    bool(k: string) { if (typeof c[k] !== 'boolean') fail(k, 'true or false'); },
    activation(k: string) {
      const acts = (activations ??= addon().runtime().activations);
      if (!acts.includes(c[k] as string)) throw new InputError(file, `${name(k)} ${show(c[k])} is not supported (${acts.join(', ')})`);
    },
  };
}

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
  const modelType = (r.model_type ?? 'bert') as ModelType;
  if (!Object.hasOwn(FAMILIES, modelType as string))
    throw new InputError(file, `model_type is ${show(r.model_type)}; supported: ${Object.keys(FAMILIES).map((k) => JSON.stringify(k)).join(', ')}`);
  const f: Family = FAMILIES[modelType];
  const given: Record<string, unknown> = { ...f.defaults, ...r };
  // The family's own names (DistilBERT's dim...) onto BertConfig's; fields it does not have take fixed values.
  for (const [bertName, own] of Object.entries(f.aliases ?? {})) given[bertName] = given[own];
  Object.assign(given, f.fixed);
  const c = { ...BERT_BASE_UNCASED, ...given, model_type: modelType } as BertConfig;
  const name = (k: string) => (f.aliases as Record<string, string> | undefined)?.[k] ?? k;  // the field as the family's config.json names it
  const { int, prob, bool, activation } = fieldChecks(c, file, name);
  int('vocab_size', 1, 10_000_000);
  int('hidden_size', 1, 65536);
  int('num_hidden_layers', 0, 1000);
  int('num_attention_heads', 1, 4096);
  int('intermediate_size', 1, 1 << 20);
  int('max_position_embeddings', 1, 1 << 20);
  int('type_vocab_size', f.fixed?.type_vocab_size === 0 || modelType === 'deberta-v2' ? 0 : 1, 1 << 16);  // DeBERTa-v3 has none
  if (modelType === 'electra') {
    int('embedding_size', 1, 65536);
    electraSummaryFields(c, file);
  }
  if (modelType === 'distilbert') {
    bool('sinusoidal_pos_embds');
    for (const k of ['qa_dropout', 'seq_classif_dropout']) prob(k);
  }
  if (modelType === 'modernbert') modernBertFields(c, file);
  if (modelType === 'deberta-v2') debertaFields(c, file);
  if (c.pad_token_id === null) c.pad_token_id = -1;
  int('pad_token_id', -1, c.vocab_size - 1);
  if (f.base === 'roberta' && c.pad_token_id < 0) throw new InputError(file, 'pad_token_id must be set: RoBERTa\'s position ids count from it');
  // RoBERTa's positions start after padding_idx: the longest input is max_position_embeddings - pad_token_id - 1.
  prob('hidden_dropout_prob');
  prob('attention_probs_dropout_prob');
  prob('classifier_dropout', true);
  c.classifier_dropout ??= null;
  for (const k of ['initializer_range', 'layer_norm_eps']) {
    const v = c[k];
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new InputError(file, `${k} must be a positive number, got ${show(v)}`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0)
    throw new InputError(file, `${name('hidden_size')} ${c.hidden_size} is not a multiple of ${name('num_attention_heads')} ${c.num_attention_heads}`);
  activation('hidden_act');
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

/** ELECTRA's SequenceSummary fields (its multiple-choice head): the first token, a projection to hidden_size. */
function electraSummaryFields(c: BertConfig, file: string): void {
  if (c.summary_type !== 'first') throw new InputError(file, `summary_type ${show(c.summary_type)} is not supported (only "first", ELECTRA's default)`);
  if (c.summary_proj_to_labels === true) throw new InputError(file, 'summary_proj_to_labels true is not supported (the multiple-choice classifier reads hidden_size)');
  const { prob, bool, activation } = fieldChecks(c, file);
  bool('summary_use_proj');
  if ((c.summary_activation ?? '') !== '') activation('summary_activation');  // none: no activation
  for (const k of ['summary_first_dropout', 'summary_last_dropout']) prob(k, true);
}

/** DeBERTa-v2's own fields, checked, and what the model derives from them (pos_att_type as a list, att_span). */
function debertaFields(c: BertConfig, file: string): void {
  const checks = fieldChecks(c, file);
  const int = (k: string, fallback: number) => {
    const v = c[k] ?? fallback;
    if (!Number.isInteger(v)) throw new InputError(file, `${k} must be an integer, got ${show(v)}`);
    return v as number;
  };
  const bool = (k: string, fallback: boolean) => {
    c[k] ??= fallback;
    checks.bool(k);
    return c[k] as boolean;
  };
  const types = typeof c.pos_att_type === 'string' ? c.pos_att_type.toLowerCase().split('|').map((t) => t.trim()) : (c.pos_att_type ?? []);
  if (!Array.isArray(types) || !types.every((t) => t === 'c2p' || t === 'p2c'))
    throw new InputError(file, `pos_att_type must list "c2p" and/or "p2c" (as a list or "p2c|c2p"), got ${show(c.pos_att_type)}`);
  c.pos_att_type = types;
  c.relative_attention = bool('relative_attention', false);
  c.max_relative_positions = int('max_relative_positions', -1);
  c.position_buckets = int('position_buckets', -1);
  c.share_att_key = bool('share_att_key', false);
  c.position_biased_input = bool('position_biased_input', true);
  c.legacy = bool('legacy', true);
  if (typeof (c.norm_rel_ebd ?? 'none') !== 'string') throw new InputError(file, `norm_rel_ebd must be a string such as "layer_norm", got ${show(c.norm_rel_ebd)}`);
  if (int('conv_kernel_size', 0) > 0) throw new InputError(file, `conv_kernel_size ${c.conv_kernel_size} is not supported (DeBERTa-v2's convolution layer; DeBERTa-v3 has none)`);
  c.embedding_size = int('embedding_size', c.hidden_size);
  if ((c.embedding_size as number) < 1) throw new InputError(file, `embedding_size must be positive, got ${c.embedding_size}`);
  for (const k of ['attention_head_size', 'pooler_hidden_size'] as const) {
    const want = k === 'attention_head_size' ? c.hidden_size / c.num_attention_heads : c.hidden_size;
    if (c[k] !== undefined && c[k] !== null && c[k] !== want) throw new InputError(file, `${k} ${show(c[k])} is not supported (only ${want}, the default)`);
  }
  for (const k of ['pooler_dropout', 'cls_dropout']) checks.prob(k, true);
  checks.activation('pooler_hidden_act');
  if (c.relative_attention && (c.max_relative_positions as number) < 1 && (c.position_buckets as number) < 1 && c.max_position_embeddings < 1)
    throw new InputError(file, 'relative_attention needs position_buckets or max_relative_positions');
}

/** DeBERTa's relative distances: how many the table embeds on each side (att_span), and the bucketing bounds. */
export function debertaRelative(c: BertConfig): { attSpan: number; maxRelative: number; buckets: number } {
  const maxRelative = (c.max_relative_positions as number) < 1 ? c.max_position_embeddings : c.max_relative_positions as number;
  const buckets = c.position_buckets as number;
  return { attSpan: c.relative_attention ? (buckets > 0 ? buckets : maxRelative) : 0, maxRelative, buckets };
}

/**
 * ModernBERT's own fields, checked, with its attention pattern in both forms transformers has written: layer_types
 * and rope_parameters (5.x), global_attn_every_n_layers and global/local_rope_theta (4.x); both are kept in step so
 * that either version reads the saved config.
 */
function modernBertFields(c: BertConfig, file: string): void {
  const n = c.num_hidden_layers;
  const every = c.global_attn_every_n_layers ?? 3;
  if (!Number.isInteger(every) || (every as number) < 1) throw new InputError(file, `global_attn_every_n_layers must be a positive integer, got ${show(every)}`);
  if (c.layer_types === undefined || c.layer_types === null) c.layer_types = Array.from({ length: n }, (_, i) => (i % (every as number) ? 'sliding_attention' : 'full_attention'));
  const types = c.layer_types as unknown[];
  if (!Array.isArray(types) || types.length !== n || !types.every((t) => t === 'full_attention' || t === 'sliding_attention'))
    throw new InputError(file, `layer_types must list "full_attention" or "sliding_attention" for each of the ${n} layers, got ${show(c.layer_types)}`);
  const rope = (c.rope_parameters ?? {}) as Record<string, Record<string, unknown> | undefined>;
  if (typeof rope !== 'object' || Array.isArray(rope)) throw new InputError(file, `rope_parameters must be an object, got ${show(c.rope_parameters)}`);
  const theta = (type: string, legacy: string, fallback: number): number => {
    const p = rope[type] ?? {};
    const kind = p.rope_type ?? p.type ?? 'default';
    if (kind !== 'default') throw new InputError(file, `rope_parameters.${type}.rope_type ${show(kind)} is not supported (only "default")`);
    const v = p.rope_theta ?? c[legacy] ?? fallback;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new InputError(file, `rope_parameters.${type}.rope_theta must be a positive number, got ${show(v)}`);
    return v;
  };
  c.global_rope_theta = theta('full_attention', 'global_rope_theta', 160000);
  c.local_rope_theta = theta('sliding_attention', 'local_rope_theta', 10000);
  c.rope_parameters = { full_attention: { rope_type: 'default', rope_theta: c.global_rope_theta }, sliding_attention: { rope_type: 'default', rope_theta: c.local_rope_theta } };
  c.global_attn_every_n_layers = every;
  if (!Number.isInteger(c.local_attention) || (c.local_attention as number) < 0) throw new InputError(file, `local_attention must be a non-negative integer, got ${show(c.local_attention)}`);
  const { prob, bool, activation } = fieldChecks(c, file);
  for (const k of ['norm_bias', 'attention_bias', 'mlp_bias', 'decoder_bias', 'classifier_bias']) bool(k);
  for (const k of ['embedding_dropout', 'mlp_dropout', 'classifier_dropout']) prob(k);
  if (c.classifier_pooling !== 'cls' && c.classifier_pooling !== 'mean') throw new InputError(file, `classifier_pooling must be "cls" or "mean", got ${show(c.classifier_pooling)}`);
  activation('classifier_activation');
  if (typeof c.initializer_cutoff_factor !== 'number' || !(c.initializer_cutoff_factor > 0)) c.initializer_cutoff_factor = 3;  // None: 3, as _init_weights
  if (c.tie_word_embeddings === false) throw new InputError(file, 'tie_word_embeddings false is not supported: the masked-LM decoder here is the word embeddings');
}

/** The parameters the addon allocates for this config and head. */
export function parameterCount(c: BertConfig, architecture: Architecture = architectureOf(c)): number {
  if (c.model_type === 'modernbert') return modernBertParameterCount(c, architecture);
  if (c.model_type === 'deberta-v2') return debertaParameterCount(c, architecture);
  const H = c.hidden_size, I = c.intermediate_size, n = numLabels(c), E = embeddingSize(c), V = c.vocab_size;
  const embeddings = embeddingParameters(c) + 2 * E + (E !== H ? E * H + H : 0);
  const layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H;
  const dense = H * H + H;  // BERT's pooler; RoBERTa's, ELECTRA's and DistilBERT's dense before the classifier
  const head = headOf(architecture);
  const sizes: Record<Head, number> = {
    SequenceClassification: dense + H * n + n,
    MultipleChoice: dense + H + 1,
    TokenClassification: H * n + n,
    QuestionAnswering: H * 2 + 2,
    MaskedLM: c.model_type === 'electra' ? H * E + E + 2 * E + V : dense + 2 * H + V,
  };
  return embeddings + c.num_hidden_layers * layer + sizes[head];
}

function modernBertParameterCount(c: BertConfig, architecture: Architecture): number {
  const H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers, n = numLabels(c);
  const norm = H * (c.norm_bias ? 2 : 1), b = (on: unknown, k: number) => (on ? k : 0);
  const layer = norm * 2 + 3 * H * H + b(c.attention_bias, 3 * H) + H * H + b(c.attention_bias, H) + 2 * H * I + b(c.mlp_bias, 2 * I) + I * H + b(c.mlp_bias, H);
  const head = H * H + b(c.classifier_bias, H) + norm;
  const sizes: Record<Head, number> = { SequenceClassification: H * n + n, MultipleChoice: H + 1, TokenClassification: H * n + n, QuestionAnswering: 2 * H + 2,
    MaskedLM: b(c.decoder_bias, V) };
  return V * H + norm + L * layer - (L > 0 ? norm : 0) + norm + head + sizes[headOf(architecture)];
}

function debertaParameterCount(c: BertConfig, architecture: Architecture): number {
  const H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, E = embeddingSize(c), n = numLabels(c);
  const rel = c.relative_attention === true, types = c.pos_att_type as string[], span = debertaRelative(c).attSpan;
  const embeddings = V * E + (c.position_biased_input ? c.max_position_embeddings * E : 0) + c.type_vocab_size * E + (E !== H ? E * H : 0) + 2 * H;
  const positional = rel && !c.share_att_key ? types.length * (H * H + H) : 0;
  const layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H + positional;
  const encoder = rel ? 2 * span * H + (String(c.norm_rel_ebd ?? '').includes('layer_norm') ? 2 * H : 0) : 0;
  const pooler = H * H + H;
  const sizes: Record<Head, number> = { SequenceClassification: pooler + H * n + n, MultipleChoice: pooler + H + 1, TokenClassification: H * n + n,
    QuestionAnswering: 2 * H + 2, MaskedLM: c.legacy === false ? H * H + H + 2 * H + V : H * E + E + 2 * E + V };
  return embeddings + c.num_hidden_layers * layer + encoder + sizes[headOf(architecture)];
}

/** The longest input the position embeddings allow: RoBERTa's positions start after padding_idx. */
export function maxSequenceLength(c: BertConfig): number {
  return family(c).base === 'roberta' ? c.max_position_embeddings - c.pad_token_id - 1 : c.max_position_embeddings;
}

/** ELECTRA's and DeBERTa's embedding width (embedding_size); the hidden size elsewhere. */
export function embeddingSize(c: BertConfig): number {
  return c.model_type === 'electra' || c.model_type === 'deberta-v2' ? c.embedding_size as number : c.hidden_size;
}

/** The word, position and token-type embedding tables' parameters (excluded from FLOP counts, as transformers does). */
export function embeddingParameters(c: BertConfig): number {
  if (c.model_type === 'modernbert') return c.vocab_size * c.hidden_size;  // rotary positions: no table
  if (c.model_type === 'deberta-v2') return (c.vocab_size + (c.position_biased_input ? c.max_position_embeddings : 0) + c.type_vocab_size) * embeddingSize(c);
  return (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * embeddingSize(c);
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

/**
 * The head a checkpoint's config.json names (architectures[0], as AutoModel reads it), when it is one of its
 * family's here; BertForPreTraining keeps its masked-LM head, ElectraForPreTraining (a discriminator) becomes a
 * sequence classifier; a bare base model (or none named) gets sequence classification.
 */
export function architectureOf(c: BertConfig): Architecture {
  const f = family(c);
  const named = Array.isArray(c.architectures) ? String(c.architectures[0]) : undefined;
  if (named === `${f.prefix}ForPreTraining` && f.pretraining) return `${f.prefix}For${f.pretraining}`;
  return named && named.startsWith(`${f.prefix}For`) && ARCHITECTURES.includes(named) ? named : `${f.prefix}ForSequenceClassification`;
}

/** What save() writes: the config as transformers writes it for the model's class, under the family's own names. */
export function configToJson(c: BertConfig, architecture: Architecture): Record<string, unknown> {
  const f = family(c);
  const out: Record<string, unknown> = { ...c, architectures: [architecture], model_type: c.model_type, pad_token_id: c.pad_token_id < 0 ? null : c.pad_token_id, dtype: 'float32' };
  for (const [bertName, own] of Object.entries(f.aliases ?? {})) { out[own] = out[bertName]; delete out[bertName]; }
  for (const k of Object.keys(f.fixed ?? {})) delete out[k];
  return out;
}

/** Fields transformers 5's strict config classes type as float (they refuse 2 for 2.0): written with a decimal point. */
const FLOAT_FIELDS = new Set(['initializer_range', 'layer_norm_eps', 'norm_eps', 'initializer_cutoff_factor']);

/** config.json's text for save(): configToJson, with FLOAT_FIELDS' whole numbers written as 2.0. */
export function configJsonText(c: BertConfig, architecture: Architecture): string {
  const mark = '@float@';
  const text = JSON.stringify(configToJson(c, architecture), (k, v) => (FLOAT_FIELDS.has(k) && Number.isInteger(v) ? `${mark}${v}` : v), 2);
  return text.replace(new RegExp(`"${mark}(-?\\d+)"`, 'g'), '$1.0') + '\n';
}

/** What the addon needs: BertConfig's fields, the family, and the dropout the head reads before its classifier. */
export function nativeConfig(c: BertConfig, architecture: Architecture): Record<string, unknown> {
  const head = headOf(architecture);
  // DistilBERT's heads each name their dropout; elsewhere classifier_dropout (None: hidden_dropout_prob).
  // DeBERTa's: cls_dropout (None: hidden_dropout_prob) for the pooled heads, hidden_dropout_prob per token.
  const classifierDropout = c.model_type === 'distilbert'
    ? (head === 'QuestionAnswering' ? c.qa_dropout : head === 'TokenClassification' ? c.hidden_dropout_prob : c.seq_classif_dropout) as number
    : c.model_type === 'deberta-v2' ? (head === 'TokenClassification' ? c.hidden_dropout_prob : (c.cls_dropout as number | null | undefined) ?? c.hidden_dropout_prob)
    : c.classifier_dropout ?? -1;
  const modernbert = c.model_type === 'modernbert' ? {
    global_layers: (c.layer_types as string[]).map((t) => t === 'full_attention'), global_rope_theta: c.global_rope_theta, local_rope_theta: c.local_rope_theta,
    local_attention: c.local_attention, norm_bias: c.norm_bias, attention_bias: c.attention_bias, mlp_bias: c.mlp_bias, decoder_bias: c.decoder_bias,
    classifier_bias: c.classifier_bias, embedding_dropout: c.embedding_dropout, mlp_dropout: c.mlp_dropout, classifier_pooling: c.classifier_pooling,
    classifier_activation: c.classifier_activation, initializer_cutoff_factor: c.initializer_cutoff_factor } : undefined;
  const rel = c.model_type === 'deberta-v2' ? debertaRelative(c) : undefined;
  const deberta = rel ? {
    relative_attention: c.relative_attention, att_span: rel.attSpan, position_buckets: rel.buckets, max_relative_positions: rel.maxRelative,
    share_att_key: c.share_att_key, c2p: (c.pos_att_type as string[]).includes('c2p'), p2c: (c.pos_att_type as string[]).includes('p2c'),
    position_biased_input: c.position_biased_input, norm_rel_ebd: String(c.norm_rel_ebd ?? 'none').toLowerCase().split('|').map((t) => t.trim()).includes('layer_norm'),
    pooler_dropout: c.pooler_dropout, pooler_hidden_act: c.pooler_hidden_act, legacy: c.legacy } : undefined;
  const summary = c.model_type === 'electra' ? { use_proj: c.summary_use_proj, activation: c.summary_activation ?? '',
    first_dropout: c.summary_first_dropout ?? 0, last_dropout: c.summary_last_dropout ?? 0 } : undefined;
  return { ...c, num_labels: numLabels(c), problem_type: problemType(c), classifier_dropout: classifierDropout, architecture,
    embedding_size: embeddingSize(c), sinusoidal_pos_embds: c.sinusoidal_pos_embds === true, modernbert, deberta, summary };
}
