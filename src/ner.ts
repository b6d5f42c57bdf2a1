// Token classification data as transformers' run_ner.py prepares it: rows of words and word-level tags (the Hub's
// conll2003 layout: "tokens" and "ner_tags"), tags to class ids, words to subword tokens through word ids, the
// first piece of each word labelled and the rest -100 (or, with labelAllTokens, labelled too with B- turned to I-).
import { InputError, show } from './errors.js';
import { readDataRows } from './datasets.js';
import type { TokenizedDataset } from './data.js';
import type { BertTokenizer } from './tokenizer.js';

export interface TokenDataset {
  source: string;
  words: string[][];
  /** Class ids per word (into labelNames); null when the file has no label column. */
  tags: Int32Array[] | null;
  labelNames: string[];
}

export interface TokenColumnOptions {
  /** run_ner's --text-column-name: default "tokens", else the first column. */
  textColumnName?: string;
  /** run_ner's --label-column-name: default "ner_tags", else the second column. */
  labelColumnName?: string;
  /** The class names in id order (a trained model's, or the training file's); else read from the file. */
  labelNames?: string[];
  /** Training data: a label column is required. */
  requireLabels?: boolean;
}

/** A local file of word lists and their tags (.jsonl, .json, .parquet), as run_ner.py reads --train_file. */
export async function loadTokenDataFile(file: string, o: TokenColumnOptions = {}): Promise<TokenDataset> {
  const probe = await readDataRows(file, o.labelColumnName ?? 'ner_tags');
  const { rows, firstRow } = probe;
  if (!rows.length) throw new InputError(file, 'has no rows');
  const columns = Object.keys(rows[0]).filter((c) => c !== '__line');
  const textCol = o.textColumnName ?? (columns.includes('tokens') ? 'tokens' : columns[0]);
  const labelCol = o.labelColumnName ?? (columns.includes('ner_tags') ? 'ner_tags' : columns.find((c) => c !== textCol && Array.isArray(rows[0][c])));
  if (!columns.includes(textCol)) throw new InputError(file, `no text column ${show(textCol)} (columns: ${columns.map((c) => show(c)).join(', ')}); name it with --text-column-name`);
  const hasLabels = labelCol !== undefined && columns.includes(labelCol);
  if (o.labelColumnName !== undefined && !hasLabels) throw new InputError(file, `no label column ${show(o.labelColumnName)} (columns: ${columns.map((c) => show(c)).join(', ')})`);
  if (o.requireLabels && !hasLabels) throw new InputError(file, `no label column: neither "ner_tags" nor a second list column among ${columns.map((c) => show(c)).join(', ')}; name it with --label-column-name`);
  const where = (i: number) => `row ${(rows[i].__line as number | undefined) ?? i + firstRow}`;
  const list = (i: number, col: string) => {
    const v = rows[i][col];
    if (!Array.isArray(v)) throw new InputError(file, `${where(i)}: column ${show(col)} is not a list`);
    return v as unknown[];
  };
  const words = rows.map((_, i) => list(i, textCol).map((w, k) => {
    if (typeof w !== 'string') throw new InputError(file, `${where(i)}: word ${k + 1} of ${show(textCol)} is not text`);
    return w;
  }));
  if (!hasLabels) return { source: file, words, tags: null, labelNames: o.labelNames ?? probe.names ?? [] };
  const raw = rows.map((_, i) => {
    const t = list(i, labelCol!);
    if (t.length !== words[i].length) throw new InputError(file, `${where(i)}: ${t.length} tags for ${words[i].length} words`);
    return t.map((x) => (typeof x === 'bigint' ? Number(x) : x));
  });
  // Names: the model's, else the parquet ClassLabel's, else (string tags) the sorted distinct tags, as run_ner's
  // get_label_list; integer tags without names are their own names.
  let labelNames = o.labelNames ?? probe.names;
  const allInts = raw.every((t) => t.every((x) => Number.isInteger(x)));
  if (!labelNames) {
    const distinct = [...new Set(raw.flat().map(String))];
    labelNames = allInts ? distinct.map(Number).sort((a, b) => a - b).map(String) : distinct.sort();
  }
  const byName = new Map(labelNames.map((n, i) => [n, i]));
  const namesAreInts = labelNames.every((n) => /^\d+$/.test(n));
  const tags = raw.map((t, i) => Int32Array.from(t, (x, k) => {
    const id = typeof x === 'number' && !namesAreInts && Number.isInteger(x) && x >= 0 && x < labelNames!.length ? x : byName.get(String(x));
    if (id === undefined) throw new InputError(file, `${where(i)}: tag ${k + 1} ${show(x)} is not one of the ${labelNames!.length} labels (${labelNames!.slice(0, 20).join(', ')}${labelNames!.length > 20 ? ', ...' : ''})`);
    return id;
  }));
  return { source: file, words, tags, labelNames };
}

/**
 * run_ner.py's tokenize_and_align_labels: each word's pieces, [CLS] ... [SEP], truncated to maxLength; a word's
 * first piece gets its tag, the others -100 (labelAllTokens: the tag too, B-X turned into I-X where the label
 * set has it), special tokens -100.
 */
export function tokenizeTokenDataset(ds: TokenDataset, tok: BertTokenizer, o: { maxLength?: number; labelAllTokens?: boolean } = {}): TokenizedDataset {
  const enc = tok.encodeWords(ds.words, { maxLength: o.maxLength });
  const out: TokenizedDataset = { enc, labels: null, labelNames: ds.labelNames, isRegression: false, wordIds: enc.wordIds };
  if (!ds.tags) return out;
  // B-X -> I-X for the pieces after a word's first, as run_ner's b_to_i_label.
  const bToI = ds.labelNames.map((n, i) => {
    const j = n.startsWith('B-') ? ds.labelNames.indexOf(`I-${n.slice(2)}`) : -1;
    return j >= 0 ? j : i;
  });
  const labels = new Int32Array(enc.ids.length).fill(-100);
  for (let r = 0; r < enc.length; r++) {
    let previous = -1;
    for (let t = enc.offsets[r]; t < enc.offsets[r + 1]; t++) {
      const w = enc.wordIds[t];
      if (w < 0) { previous = w; continue; }
      const tag = ds.tags[r][w];
      labels[t] = w !== previous ? tag : o.labelAllTokens ? bToI[tag] : -100;
      previous = w;
    }
  }
  out.tokenLabels = labels;
  return out;
}

/** Per word, the tag of its first piece (what run_ner's predictions keep): predictions aligned with enc.ids. */
export function wordTags(ds: TokenizedDataset, row: number, predictions: ArrayLike<number>): Array<{ word: number; label: number }> {
  const out: Array<{ word: number; label: number }> = [];
  let previous = -1;
  for (let t = ds.enc.offsets[row]; t < ds.enc.offsets[row + 1]; t++) {
    const w = ds.wordIds![t];
    if (w >= 0 && w !== previous) out.push({ word: w, label: predictions[t] });
    previous = w;
  }
  return out;
}
