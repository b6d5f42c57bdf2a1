// From text rows to what the Trainer consumes: tokenized in chunks so the event loop keeps breathing.
import type { TextDataset } from './datasets.js';
import type { BertTokenizer, EncodedDataset } from './tokenizer.js';

/** A tokenized split with its labels: what the Trainer trains and evaluates on. */
export interface TokenizedDataset {
  enc: EncodedDataset;
  /** One label per example (sequence classification); null without labels or for token-level labels. */
  labels: Int32Array | Float32Array | null;
  labelNames: string[];
  isRegression: boolean;
  /** Token classification: a class id per token, aligned with enc.ids (-100: not scored, as run_ner.py aligns them). */
  tokenLabels?: Int32Array;
  /** Each token's word index (-1 for special tokens), aligned with enc.ids: BatchEncoding.word_ids(). */
  wordIds?: Int32Array;
  /** Question answering: [start, end] token positions per example (run_qa's start_positions, end_positions). */
  positions?: Int32Array;
  /** Whole-word masking: each token's [start, end) in its text, aligned with enc.ids ([0, 0] for special tokens). */
  tokenOffsets?: Int32Array;
  /** Multiple choice: enc's rows are numChoices per example, in order; `labels` are per example. */
  numChoices?: number;
}

/** The examples of a split: its rows, or for multiple choice its rows over the choices per example. */
export function exampleCount(d: TokenizedDataset): number { return d.numChoices ? d.enc.length / d.numChoices : d.enc.length; }

/** Whether a split has anything to score against. */
export function hasLabels(d: TokenizedDataset): boolean { return d.labels !== null || d.tokenLabels !== undefined || d.positions !== undefined; }

const CHUNK = 512;

export async function tokenizeDataset(ds: TextDataset, tok: BertTokenizer, maxLength?: number): Promise<TokenizedDataset> {
  const parts: EncodedDataset[] = [];
  for (let s = 0; s < ds.text1.length; s += CHUNK) {
    parts.push(tok.encodeBatch(ds.text1.slice(s, s + CHUNK), ds.text2 ? ds.text2.slice(s, s + CHUNK) : null, { maxLength }));
    await new Promise((r) => setImmediate(r));
  }
  return { enc: concat(parts), labels: ds.labels, labelNames: ds.labelNames, isRegression: ds.isRegression };
}

function concat(parts: EncodedDataset[]): EncodedDataset {
  const total = parts.reduce((a, p) => a + p.ids.length, 0), n = parts.reduce((a, p) => a + p.length, 0);
  const ids = new Int32Array(total), typeIds = new Uint8Array(total), offsets = new Int32Array(n + 1);
  let p = 0, r = 0;
  for (const part of parts) {
    ids.set(part.ids, p);
    typeIds.set(part.typeIds, p);
    for (let i = 0; i < part.length; i++) offsets[r + i] = part.offsets[i] + p;
    p += part.ids.length;
    r += part.length;
  }
  offsets[n] = p;
  return { ids, typeIds, offsets, length: n };
}

/**
 * Multiple choice as run_swag.py tokenizes it: each example's context paired with each of its choices
 * (tokenizer(first_sentences, second_sentences, truncation=True)), the choices' rows in order; labels per example.
 */
export function tokenizeChoices(rows: Array<{ context: string; choices: string[]; label?: number }>, tok: BertTokenizer, maxLength?: number): TokenizedDataset {
  const nc = rows[0]?.choices.length ?? 0;
  if (nc < 2) throw new RangeError('multiple choice needs at least 2 choices per example');
  rows.forEach((r, i) => {
    if (r.choices.length !== nc) throw new RangeError(`example ${i + 1} has ${r.choices.length} choices; the first has ${nc}`);
    if (r.label !== undefined && !(Number.isInteger(r.label) && r.label >= 0 && r.label < nc)) throw new RangeError(`example ${i + 1}: label ${r.label} is not a choice index in [0, ${nc})`);
  });
  const enc = tok.encodeBatch(rows.flatMap((r) => r.choices.map(() => r.context)), rows.flatMap((r) => r.choices), { maxLength });
  const labels = rows.every((r) => r.label !== undefined) ? Int32Array.from(rows, (r) => r.label!) : null;
  return { enc, labels, labelNames: [], isRegression: false, numChoices: nc };
}
