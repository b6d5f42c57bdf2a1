// Datasets: GLUE from the Hub dataset nyu-mll/glue (parquet, through the HF cache) and local files
// (parquet, CSV, TSV including the original GLUE/MRPC formats, JSON Lines). Every row is checked; a bad row is
// an error naming the file, the row and the reason, never silently dropped.
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';  // zstd, brotli, lz4, gzip: the codecs pyarrow and datasets write
import { parse as parseCsv } from 'csv-parse/sync';
import { InputError, show } from './errors.js';
import { glueTask, type GlueTask } from './glue.js';
import { hubFile, type HubOptions } from './hub.js';

export interface TextDataset {
  /** Where the rows came from, for messages. */
  source: string;
  text1: string[];
  text2: string[] | null;
  /** Class ids (Int32Array) or scores (Float32Array); null when the split has no labels (GLUE test: -1). */
  labels: Int32Array | Float32Array | null;
  labelNames: string[];
  isRegression: boolean;
}

export interface ColumnOptions {
  /** Text column(s); inferred from common names when absent. */
  textColumns?: string[];
  /** Label column; inferred ("label", "Quality", "labels", "score") when absent. */
  labelColumn?: string;
  /** Class names in id order (string labels in the file are mapped through them). */
  labelNames?: string[];
  isRegression?: boolean;
  /** Training data: a file without a recognisable label column is an error naming its columns. */
  requireLabels?: boolean;
  /** Prediction: the label column, if any, is not read (labels come back null). */
  ignoreLabels?: boolean;
}


const TEXT_PAIRS: Array<[string, string?]> = [
  ['sentence1', 'sentence2'], ['#1 String', '#2 String'], ['question1', 'question2'], ['premise', 'hypothesis'],
  ['question', 'sentence'], ['text_a', 'text_b'], ['text1', 'text2'], ['sentence'], ['text'],
];
const LABEL_NAMES = ['label', 'Quality', 'labels', 'score'];

/** A GLUE split, e.g. loadGlue('mrpc', 'train'), from `nyu-mll/glue` via the HF cache (or the Hub). */
export async function loadGlue(taskName: string, split: string, o: HubOptions = {}): Promise<TextDataset> {
  const task = glueTask(taskName);
  if (!task.splits.includes(split)) throw new RangeError(`GLUE ${task.name} has no split ${JSON.stringify(split)}; it has ${task.splits.join(', ')}`);
  const file = (await hubFile('nyu-mll/glue', `${task.name}/${split}-00000-of-00001.parquet`, { ...o, repoType: 'dataset' }))!;
  return loadDataFile(file, glueColumns(task));
}

export function glueColumns(task: GlueTask): ColumnOptions {
  return { textColumns: task.textColumns, labelColumn: 'label', labelNames: task.labelNames.length ? task.labelNames : undefined, isRegression: task.isRegression };
}

/** A local data file: .parquet, .csv, .tsv/.txt (tab-separated, unquoted as GLUE ships them), .jsonl/.json. */
export async function loadDataFile(file: string, o: ColumnOptions = {}): Promise<TextDataset> {
  const { rows, names, firstRow } = await readDataRows(file, o.labelColumn ?? 'label');
  return fromRows(rows, file, { ...o, labelNames: o.labelNames ?? names }, firstRow);
}

export type Row = Record<string, unknown>;

/**
 * A local data file's rows, and the class names a parquet file's `datasets` metadata gives `labelColumn` (a
 * ClassLabel, or a sequence of them); `firstRow` is the number messages use for rows[0] (a header is line 1).
 */
export async function readDataRows(file: string, labelColumn: string): Promise<{ rows: Row[]; names?: string[]; firstRow: number }> {
  const ext = path.extname(file).toLowerCase();
  // JSON Lines (.jsonl, and .json that is not one array) stream row by row, so one giant line is refused by its
  // size instead of exhausting memory.
  if (ext === '.jsonl' || (ext === '.json' && !(await startsWithArray(file)))) return { rows: await readJsonLines(file), firstRow: 1 };
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (e) {
    throw new InputError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let rows: Row[];
  let names: string[] | undefined;
  let firstRow = 1;  // the number users see for rows[0] in messages
  if (ext === '.parquet') {
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    try {
      const md = parquetMetadata(ab);
      names = labelNamesFromParquet(md.key_value_metadata, labelColumn);
      rows = (await parquetReadObjects({ file: ab, compressors })) as Row[];
    } catch (e) {
      throw new InputError(file, `not a readable parquet file (${(e as Error).message})`);
    }
  } else {
    const text = decodeUtf8(buf, file);
    if (ext === '.csv') {
      try {
        rows = parseCsv(text, { columns: (header: string[]) => uniqueHeader(header, file), bom: true, skip_empty_lines: true, relax_column_count: false }) as Row[];
      } catch (e) {
        if (e instanceof InputError) throw e;
        throw new InputError(file, `invalid CSV (${(e as Error).message})`);
      }
      firstRow = 2;
    } else if (ext === '.tsv' || ext === '.txt') {
      rows = parseTsv(text, file);
      firstRow = 2;
    } else if (ext === '.json') {
      // A JSON array of row objects, as `datasets` reads a .json file.
      let all: unknown;
      try {
        all = JSON.parse(text);
      } catch (e) {
        throw new InputError(file, `invalid JSON (${(e as Error).message}); expected an array of row objects or JSON Lines`);
      }
      rows = [];
      (all as unknown[]).forEach((r, i) => {
        if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new InputError(file, `row ${i + 1}: not a JSON object (expected an array of row objects)`);
        rows.push(r as Row);
      });
    } else {
      throw new InputError(file, `unknown data format ${JSON.stringify(ext)} (use .parquet, .csv, .tsv, .txt, .jsonl or .json)`);
    }
  }
  return { rows, names, firstRow };
}

/** The largest JSON Lines row accepted (bytes): far above any text-classification row, far below trouble. */
export const MAX_ROW_BYTES = 1 << 20;

function jsonRow(line: string, file: string, n: number): Row {
  try {
    const r = JSON.parse(line);
    if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new Error('not a JSON object');
    return { ...r, __line: n };
  } catch (e) {
    throw new InputError(file, `line ${n}: invalid JSON Lines row (${(e as Error).message})`);
  }
}

/** Whether the file's first non-blank character opens a JSON array (a .json file of rows, not JSON Lines). */
async function startsWithArray(file: string): Promise<boolean> {
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 4096 }) as AsyncIterable<Buffer>) {
      const first = chunk.toString('latin1').replace(/^\uFEFF|^\xEF\xBB\xBF/, '').trimStart();
      if (first) return first[0] === '[';
    }
  } catch {
    // unreadable: readJsonLines reports it with the reason
  }
  return false;
}

async function readJsonLines(file: string): Promise<Row[]> {
  const rows: Row[] = [];
  const dec = new TextDecoder('utf-8', { fatal: true });
  let parts: Buffer[] = [], size = 0, n = 1;
  const finish = () => {
    const bytes = Buffer.concat(parts, size);
    parts = []; size = 0;
    let line: string;
    try {
      line = dec.decode(bytes);
    } catch {
      throw new InputError(file, `line ${n}: invalid UTF-8`);
    }
    if (n === 1) line = line.replace(/^\uFEFF/, '');
    if (line.trim()) rows.push(jsonRow(line, file, n));
    n++;
  };
  try {
    for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); ; nl = chunk.indexOf(0x0a, start)) {
        const end = nl < 0 ? chunk.length : nl;
        size += end - start;
        if (size > MAX_ROW_BYTES) throw new InputError(file, `line ${n}: row larger than ${MAX_ROW_BYTES} bytes (1 MiB), the most a row may have`);
        parts.push(chunk.subarray(start, end));
        if (nl < 0) break;
        finish();
        start = nl + 1;
      }
    }
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (size > 0) finish();
  return rows;
}

function labelNamesFromParquet(kv: Array<{ key: string; value?: string }> | undefined, labelColumn: string): string[] | undefined {
  const hf = kv?.find((e) => e.key === 'huggingface')?.value;
  if (!hf) return undefined;
  try {
    const j = JSON.parse(hf);
    const feature = j?.info?.features?.[labelColumn];
    const names = feature?.names ?? feature?.feature?.names;  // ClassLabel, or Sequence(ClassLabel) (NER tags)
    return Array.isArray(names) && names.every((n: unknown) => typeof n === 'string') ? names : undefined;
  } catch {
    return undefined;
  }
}

function decodeUtf8(buf: Buffer, file: string): string {
  const dec = new TextDecoder('utf-8', { fatal: true });
  try {
    return dec.decode(buf);
  } catch {
    // Find the line for the message.
    let line = 1, start = 0;
    for (let i = 0; i <= buf.length; i++) {
      if (i === buf.length || buf[i] === 0x0a) {
        try {
          dec.decode(buf.subarray(start, i));
        } catch {
          throw new InputError(file, `line ${line}: invalid UTF-8`);
        }
        line++;
        start = i + 1;
      }
    }
    throw new InputError(file, 'invalid UTF-8');
  }
}

/** A column named twice would silently hide one of them (a duplicated label column trains on either). */
function uniqueHeader(header: string[], file: string): string[] {
  const seen = new Set<string>();
  for (const h of header) {
    if (seen.has(h)) throw new InputError(file, `line 1: column ${show(h)} appears twice in the header`);
    seen.add(h);
  }
  return header;
}

/** GLUE's TSVs are tab-separated without quoting (MRPC text contains bare quotes), as GLUE's own readers use them. */
function parseTsv(text: string, file: string): Row[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = uniqueHeader(lines[0].split('\t'), file);
  const rows: Row[] = [];
  for (let i = 1; i < lines.length; i++) {
    if (lines[i] === '') continue;
    const cells = lines[i].split('\t');
    if (cells.length !== header.length) throw new InputError(file, `line ${i + 1}: ${cells.length} fields, the header has ${header.length}`);
    const r: Row = { __line: i + 1 };
    header.forEach((h, j) => { r[h] = cells[j]; });
    rows.push(r);
  }
  return rows;
}

function fromRows(rows: Row[], file: string, o: ColumnOptions, firstRow: number): TextDataset {
  if (rows.length === 0) throw new InputError(file, 'no rows');
  const columns = Object.keys(rows[0]).filter((c) => c !== '__line');
  const text = o.textColumns ?? TEXT_PAIRS.find((p) => p.every((c) => c === undefined || columns.includes(c)))?.filter((c): c is string => !!c);
  if (!text || text.length === 0 || text.length > 2)
    throw new InputError(file, `cannot tell the text column(s) from ${JSON.stringify(columns)}; name them (textColumns / --text-columns)`);
  const labelCol = o.labelColumn ?? LABEL_NAMES.find((c) => columns.includes(c));
  const where = (i: number) => `row ${(rows[i].__line as number | undefined) ?? i + firstRow}`;
  const text1: string[] = [], text2: string[] | null = text.length === 2 ? [] : null;
  for (let i = 0; i < rows.length; i++) {
    for (let k = 0; k < text.length; k++) {
      const v = rows[i][text[k]];
      if (v === undefined) throw new InputError(file, `${where(i)}: missing column ${JSON.stringify(text[k])}`);
      if (typeof v !== 'string') throw new InputError(file, `${where(i)}: column ${JSON.stringify(text[k])} is not text`);
      if (v.trim() === '') throw new InputError(file, `${where(i)}: column ${JSON.stringify(text[k])} is empty`);
      // JSON escapes can spell half a surrogate pair ("\ud800"): not Unicode text, refused as the tokenizer does.
      if (!(v as unknown as { isWellFormed(): boolean }).isWellFormed()) {
        const at = v.search(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
        throw new InputError(file, `${where(i)}: column ${JSON.stringify(text[k])} has a lone surrogate (U+${v.charCodeAt(at).toString(16).toUpperCase()}) at position ${at}: not valid Unicode`);
      }
      (k === 0 ? text1 : text2!).push(v);
    }
  }
  let labels: Int32Array | Float32Array | null = null;
  let labelNames = o.labelNames ?? [];
  let isRegression = o.isRegression ?? false;
  if (o.ignoreLabels) {
    // predict: the model has its labels, and a file's labels (one class, unknown names) are not its concern
  } else if (labelCol !== undefined && columns.includes(labelCol)) {
    const raw = rows.map((r, i) => {
      const v = r[labelCol];
      if (v === undefined || v === null || v === '') throw new InputError(file, `${where(i)}: missing label in column ${JSON.stringify(labelCol)}`);
      return typeof v === 'bigint' ? Number(v) : v;
    });
    const numeric = raw.map((v) => (typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v.trim()) ? Number(v) : NaN));
    // As run_glue.py: float labels mean regression (when nobody said otherwise); "0" and "0.0" are one label.
    if (o.isRegression === undefined && !o.labelNames && numeric.every(Number.isFinite) && numeric.some((x) => !Number.isInteger(x))) isRegression = true;
    if (isRegression) {
      labels = new Float32Array(raw.length);
      raw.forEach((v, i) => {
        if (!Number.isFinite(numeric[i])) throw new InputError(file, `${where(i)}: label ${show(v)} is not a number`);
        labels![i] = numeric[i];
      });
      if (numeric.every((x) => x === -1)) labels = null;
    } else if (numeric.every((x) => x === -1)) {
      labels = null;  // GLUE test splits hide labels as -1
    } else {
      const key = (v: unknown, i: number) => (Number.isFinite(numeric[i]) ? String(numeric[i]) : String(v));
      if (!o.labelNames) {
        // As run_glue.py does for custom files: the sorted distinct labels are the classes.
        const distinct = [...new Set(raw.map(key))];
        const allNumbers = distinct.every((d) => Number.isFinite(Number(d)));
        labelNames = allNumbers ? distinct.map(Number).sort((x, y) => x - y).map(String) : distinct.sort();
        // Training a new head needs two classes; evaluating one file's rows against them does not.
        if (labelNames.length < 2 && o.requireLabels)
          throw new InputError(file, `column ${JSON.stringify(labelCol)} has a single label (${show(labelNames[0])}) in all ${raw.length} rows: a classifier needs at least 2 classes`);
      }
      // Known class names first (the model's label2id, or the training file's classes); a bare integer is a class
      // id only when the class names are not themselves numbers (GLUE files store ids 0..n-1 for named classes).
      const byName = new Map(labelNames.map((n, i) => [n, i]));
      const namesAreNumbers = labelNames.every((n) => Number.isFinite(Number(n)));
      const ids = new Int32Array(raw.length);
      raw.forEach((v, i) => {
        let id = byName.get(String(v)) ?? byName.get(key(v, i));
        if (id === undefined && !namesAreNumbers && Number.isInteger(numeric[i]) && numeric[i] >= 0 && numeric[i] < labelNames.length) id = numeric[i];
        if (id === undefined)
          throw new InputError(file, `${where(i)}: label ${show(v)} is not one of the ${labelNames.length} classes (${labelNames.map((n, j) => `${j}=${n}`).join(', ')})`);
        ids[i] = id;
      });
      labels = ids;
    }
  } else if (o.labelColumn !== undefined) {
    throw new InputError(file, `no label column ${JSON.stringify(o.labelColumn)} (columns: ${columns.map((c) => JSON.stringify(c)).join(', ')})`);
  } else if (o.requireLabels) {
    throw new InputError(file, `no label column: none of ${LABEL_NAMES.map((c) => JSON.stringify(c)).join(', ')} among the columns ` +
      `${columns.map((c) => JSON.stringify(c)).join(', ')}; name it with --label-column (labelColumn)`);
  }
  return { source: file, text1, text2, labels, labelNames, isRegression };
}
