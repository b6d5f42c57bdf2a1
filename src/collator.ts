// DataCollatorWithPadding: pad each batch to its longest sequence (optionally to a multiple), build the mask,
// labels as int32 class ids or float32 scores, or (DataCollatorForTokenClassification) one per token, -100 padded. Plus the samplers that choose which rows form a batch.
import type { Batch } from './model.js';
import type { EncodedDataset } from './tokenizer.js';

export interface CollateOptions {
  padId: number;
  padToMultipleOf?: number;
  labels?: Int32Array | Float32Array | null;
  /** Per-token labels aligned with data.ids: padded with -100 (DataCollatorForTokenClassification). */
  tokenLabels?: Int32Array;
  /** Question answering: [start, end] per example. */
  positions?: Int32Array;
  /** Multiple choice: `rows` are examples, each the data's rows numChoices*e ... numChoices*e + numChoices - 1. */
  numChoices?: number;
}

export function collate(data: EncodedDataset, examples: ArrayLike<number>, o: CollateOptions): Batch {
  // Multiple choice (DataCollatorForMultipleChoice): every choice of each example is a row, labels per example.
  const nc = o.numChoices;
  const rows = nc ? Array.from(examples).flatMap((e) => Array.from({ length: nc }, (_, c) => e * nc + c)) : examples;
  const bs = rows.length;
  let seq = 0;
  for (let i = 0; i < bs; i++) seq = Math.max(seq, data.offsets[rows[i] + 1] - data.offsets[rows[i]]);
  if (o.padToMultipleOf && seq % o.padToMultipleOf) seq += o.padToMultipleOf - (seq % o.padToMultipleOf);
  const inputIds = new Int32Array(bs * seq).fill(o.padId);
  const attentionMask = new Int32Array(bs * seq);
  const tokenTypeIds = new Int32Array(bs * seq);
  for (let i = 0; i < bs; i++) {
    const start = data.offsets[rows[i]], len = data.offsets[rows[i] + 1] - start;
    inputIds.set(data.ids.subarray(start, start + len), i * seq);
    attentionMask.fill(1, i * seq, i * seq + len);
    tokenTypeIds.set(data.typeIds.subarray(start, start + len), i * seq);
  }
  const batch: Batch = { shape: [bs, seq], inputIds, attentionMask, tokenTypeIds };
  if (o.positions) {
    const labels = new Int32Array(bs * 2);
    for (let i = 0; i < bs; i++) labels.set(o.positions.subarray(2 * rows[i], 2 * rows[i] + 2), 2 * i);
    batch.labels = labels;
  } else if (o.tokenLabels) {
    const labels = new Int32Array(bs * seq).fill(-100);
    for (let i = 0; i < bs; i++) {
      const start = data.offsets[rows[i]], len = data.offsets[rows[i] + 1] - start;
      labels.set(o.tokenLabels.subarray(start, start + len), i * seq);
    }
    batch.labels = labels;
  } else if (o.labels) {
    const labels = o.labels instanceof Float32Array ? new Float32Array(examples.length) : new Int32Array(examples.length);
    for (let i = 0; i < examples.length; i++) labels[i] = o.labels[examples[i]];
    batch.labels = labels;
  }
  if (nc) batch.numChoices = nc;
  return batch;
}

/** A small, fast, seedable PRNG (mulberry32): the same seed gives the same order on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The row order of one epoch: a Fisher-Yates shuffle seeded by seed + epoch (like accelerate's SeedableRandomSampler). */
export function shuffledOrder(n: number, seed: number, epoch: number): Int32Array {
  const rnd = mulberry32(seed + epoch * 0x9e3779b1);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  return order;
}

/**
 * HF's group_by_length (LengthGroupedSampler): shuffle, cut into mega-batches of 50 batches, sort each by length
 * (longest first) so batches hold similar lengths and pad less. Off by default, as in TrainingArguments.
 */
export function lengthGroupedOrder(data: EncodedDataset, batchSize: number, seed: number, epoch: number): Int32Array {
  const order = shuffledOrder(data.length, seed, epoch);
  const mega = batchSize * 50;
  const len = (i: number) => data.offsets[i + 1] - data.offsets[i];
  const out = new Int32Array(data.length);
  for (let s = 0; s < order.length; s += mega) {
    const chunk = Array.from(order.subarray(s, s + mega)).sort((a, b) => len(b) - len(a));
    out.set(chunk, s);
  }
  return out;
}

/** Cuts an order into batches of `batchSize` row indices; dropLast drops a short final batch. */
export function batches(order: Int32Array, batchSize: number, dropLast = false): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s < order.length; s += batchSize) {
    const b = order.subarray(s, s + batchSize);
    if (b.length < batchSize && dropLast) break;
    out.push(b);
  }
  return out;
}

export interface MaskingOptions {
  /** run_mlm's --mlm-probability (DataCollatorForLanguageModeling's mlm_probability). */
  mlmProbability: number;
  maskId: number;
  /** Random replacements are drawn from [0, vocabSize), as torch.randint(len(tokenizer)). */
  vocabSize: number;
  /** Ids never masked: the tokens the tokenizer adds ([CLS], [SEP]); padding is never masked either. */
  specialIds: ReadonlySet<number>;
  /**
   * Whole-word masking (DataCollatorForLanguageModeling(whole_word_mask=True)): each token's [start, end) character
   * offsets in its text, per batch position ([0, 0] for special tokens and padding). A word is a run of tokens with
   * no gap between them; words, not tokens, are chosen, and every token of a chosen word becomes [MASK].
   */
  tokenOffsets?: Int32Array;
}

/** Two values per token of `data` (aligned with its ids), laid out as collate lays out the batch: [0, 0] at padding. */
export function collatePairs(data: EncodedDataset, values: Int32Array, rows: ArrayLike<number>, seq: number): Int32Array {
  const out = new Int32Array(rows.length * seq * 2);
  for (let i = 0; i < rows.length; i++) {
    const start = data.offsets[rows[i]], len = data.offsets[rows[i] + 1] - start;
    out.set(values.subarray(2 * start, 2 * (start + len)), 2 * i * seq);
  }
  return out;
}

/**
 * DataCollatorForLanguageModeling(mlm=True) on a padded batch: each eligible token (not padding, not a special
 * token) is chosen with probability mlmProbability; labels hold the chosen tokens' ids (-100 elsewhere); of the
 * chosen, 80% become [MASK], 10% a random token, 10% stay. `rng`: uniform in [0, 1), seeded by the caller.
 */
export function maskTokens(batch: Batch, o: MaskingOptions, rng: () => number): Batch {
  const ids = Int32Array.from(batch.inputIds), labels = new Int32Array(ids.length).fill(-100);
  const special = (i: number) => (batch.attentionMask !== undefined && batch.attentionMask[i] === 0) || o.specialIds.has(ids[i]);
  const chosen = new Uint8Array(ids.length);
  if (o.tokenOffsets) {
    // transformers' _calc_word_ids_and_prob_mask and _whole_word_mask, row by row: a token starts a word when it is
    // not special and there is a gap before it (or a special token); only a word's first token is drawn for.
    const [B, S] = batch.shape;
    for (let b = 0; b < B; b++) {
      let word = -1;
      for (let t = 0; t < S; t++) {
        const i = b * S + t;
        if (special(i)) continue;
        const prevEnd = t === 0 ? -1 : o.tokenOffsets[2 * (i - 1) + 1], prevSpecial = t > 0 && special(i - 1);
        if (o.tokenOffsets[2 * i] !== prevEnd || prevSpecial || word < 0) word = rng() < o.mlmProbability ? 1 : 0;
        chosen[i] = word === 1 ? 1 : 0;
      }
    }
  } else {
    for (let i = 0; i < ids.length; i++) if (!special(i) && rng() < o.mlmProbability) chosen[i] = 1;
  }
  for (let i = 0; i < ids.length; i++) {
    if (!chosen[i]) continue;
    labels[i] = ids[i];
    // Whole words: always [MASK] (transformers sets mask_replace_prob to 1: no random replacement with whole words).
    if (o.tokenOffsets) { ids[i] = o.maskId; continue; }
    const r = rng();
    if (r < 0.8) ids[i] = o.maskId;
    else if (r < 0.9) ids[i] = Math.floor(rng() * o.vocabSize);
  }
  return { ...batch, inputIds: ids, labels };
}
