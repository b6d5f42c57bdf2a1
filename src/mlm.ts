// Masked-language-model data as transformers' run_mlm.py prepares it: text lines (a .txt file, or the "text"
// column of .jsonl/.json/.csv/.parquet rows), each tokenized with [CLS] ... [SEP]; then either each non-empty line
// as one example (--line-by-line, truncated) or every line's tokens concatenated and cut into blocks of
// max_seq_length (group_texts, the remainder dropped). Masking happens per batch (collator.ts maskTokens).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputError, show } from './errors.js';
import { readDataRows } from './datasets.js';
import type { TokenizedDataset } from './data.js';
import type { BertTokenizer, EncodedDataset } from './tokenizer.js';
import type { MaskingOptions } from './collator.js';

/** The lines of a text file, or the text column of a data file (run_mlm: "text", else the first column). */
export async function loadTextLines(file: string, textColumn?: string): Promise<string[]> {
  if (path.extname(file).toLowerCase() === '.txt') {
    const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => { throw new InputError(file, `cannot read (${e.code ?? e.message})`); });
    const lines = text.split(/\r?\n/);
    if (lines[lines.length - 1] === '') lines.pop();
    return lines;
  }
  const { rows, firstRow } = await readDataRows(file, 'label');
  if (!rows.length) throw new InputError(file, 'has no rows');
  const columns = Object.keys(rows[0]).filter((c) => c !== '__line');
  const col = textColumn ?? (columns.includes('text') ? 'text' : columns[0]);
  return rows.map((r, i) => {
    const v = r[col];
    if (typeof v !== 'string') throw new InputError(file, `row ${(r.__line as number | undefined) ?? i + firstRow}: column ${show(col)} is not text`);
    return v;
  });
}

/** run_mlm.py's tokenize_function and group_texts (or line_by_line): examples of at most maxSeqLength tokens. */
export function tokenizeForMlm(lines: string[], tok: BertTokenizer, o: { maxSeqLength: number; lineByLine?: boolean; wholeWordMask?: boolean }): TokenizedDataset {
  let enc: EncodedDataset;
  const used = o.lineByLine ? lines.filter((l) => l.length > 0 && l.trim() !== '') : lines;
  if (o.lineByLine) {
    enc = tok.encodeBatch(used, null, { maxLength: o.maxSeqLength });
  } else {
    const all = tok.encodeBatch(used, null, { truncation: false });
    const blocks = Math.floor(all.ids.length / o.maxSeqLength);
    const n = blocks * o.maxSeqLength;
    enc = { ids: all.ids.slice(0, n), typeIds: all.typeIds.slice(0, n), offsets: Int32Array.from({ length: blocks + 1 }, (_, i) => i * o.maxSeqLength), length: blocks };
  }
  const out: TokenizedDataset = { enc, labels: null, labelNames: [], isRegression: false };
  if (o.wholeWordMask) {
    // Each line's tokens with their character offsets ([0, 0] for [CLS] and [SEP]), in the order encodeBatch laid
    // them out (line by line: truncated to its example), for the collator's word boundaries.
    const offsets = new Int32Array(2 * enc.ids.length);
    let p = 0;
    for (let r = 0; r < used.length && p < enc.ids.length; r++) {
      const w = tok.encodeWithOffsets(used[r]);
      const room = o.lineByLine ? enc.offsets[r + 1] - enc.offsets[r] - 2 : w.ids.length;
      p++;  // [CLS]: [0, 0]
      for (let k = 0; k < Math.min(room, w.ids.length) && p < enc.ids.length; k++, p++) offsets.set(w.offsets[k], 2 * p);
      p++;  // [SEP]
    }
    out.tokenOffsets = offsets;
  }
  return out;
}

/** run_mlm's masking settings for a tokenizer and a vocabulary: [CLS], [SEP] and padding never masked. */
export function mlmMasking(tok: BertTokenizer, vocabSize: number, mlmProbability: number): MaskingOptions {
  return { mlmProbability, maskId: tok.maskId, vocabSize, specialIds: tok.specialIds };
}
