// BertNormalizer + BertPreTokenizer exactly as Hugging Face's Rust `tokenizers` runs them (clean text, CJK spacing,
// per-code-point lowercasing and accent stripping, whitespace and punctuation splits), with the Rust crate's
// own Unicode tables (src/bert-unicode-tables.ts, generated from it) instead of Node's ICU, whose newer Unicode
// and whole-string lowercasing (final sigma) give other ids. WordPiece stays with @huggingface/tokenizers.
import { NORM_RANGES, PRE_RANGES, UNCASED } from './bert-unicode-tables.js';

let norm: Uint8Array | undefined, pre: Uint8Array | undefined, uncased: Map<number, string> | undefined;
function tables() {
  if (!norm) {
    const expand = (r: number[]) => { const t = new Uint8Array(0x110000); for (let i = 0; i < r.length; i += 3) t.fill(r[i + 2], r[i], r[i] + r[i + 1]); return t; };
    norm = expand(NORM_RANGES);
    pre = expand(PRE_RANGES);
    uncased = new Map(Object.entries(UNCASED).map(([k, v]) => [Number(k), v]));
  }
  return { norm, pre: pre!, uncased: uncased! };
}

/** The tokenizer.json normalizer/pre-tokenizer pairs this module reproduces; others keep the package's code. */
export function bertPipeline(tokJson: Record<string, unknown>): { lowercase: boolean } | null {
  const n = tokJson.normalizer as Record<string, unknown> | null, p = tokJson.pre_tokenizer as Record<string, unknown> | null;
  if (n?.type !== 'BertNormalizer' || p?.type !== 'BertPreTokenizer') return null;
  const lowercase = n.lowercase !== false, strip = n.strip_accents ?? lowercase;
  if (n.clean_text === false || n.handle_chinese_chars === false || strip !== lowercase) return null;  // tables measure these two settings
  return { lowercase };
}

/** Hangul syllables decompose by Unicode's fixed formula (NFD), into jamo that lowercasing leaves alone. */
function hangul(cp: number): string {
  const s = cp - 0xac00, t = s % 28;
  return String.fromCharCode(0x1100 + Math.floor(s / 588), 0x1161 + Math.floor((s % 588) / 28)) + (t ? String.fromCharCode(0x11a7 + t) : '');
}

/**
 * The words WordPiece sees for `text`. Lone surrogates (not Unicode text, which Python's tokenizer refuses too)
 * throw a RangeError naming their position.
 */
export function bertWords(text: string, lowercase: boolean): string[] {
  const normalized = normalize(text, lowercase);
  const words: string[] = [];
  splitWords(normalized, (a, b) => words.push(normalized.slice(a, b)));
  return words;
}

/**
 * bertWords with each word's place in `text`: [start, end) in code points (Python's string indices, which the
 * offset mappings of transformers' fast tokenizers count), and, per UTF-16 unit of the normalized word, the code
 * point of `text` it came from (accent stripping and lowercasing change lengths; offsets map back through this).
 */
export function bertWordSpans(text: string, lowercase: boolean): Array<{ word: string; start: number; end: number; origin: number[] }> {
  const origin: number[] = [];
  const normalized = normalize(text, lowercase, origin);
  const words: Array<{ word: string; start: number; end: number; origin: number[] }> = [];
  splitWords(normalized, (a, b) => words.push({ word: normalized.slice(a, b), start: origin[a], end: origin[b - 1] + 1, origin: origin.slice(a, b) }));
  return words;
}

/** BertNormalizer: clean text, CJK spacing, lowercasing and accent stripping. `origin` (when given) receives, per
 * UTF-16 unit of the result, the code-point index in `text` it came from. */
function normalize(text: string, lowercase: boolean, origin?: number[]): string {
  const t = tables();
  let normalized = '';
  let cpIndex = -1;
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    let ch: string;
    cpIndex++;
    if (cp >= 0xd800 && cp <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (cp > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff))
        throw new RangeError(`text has a lone surrogate (U+${cp.toString(16).toUpperCase()}) at position ${i}: not valid Unicode`);
      cp = 0x10000 + ((cp - 0xd800) << 10) + (next - 0xdc00);
      ch = text.slice(i, i + 2);
      i++;
    } else {
      ch = text[i];
    }
    const k = t.norm[cp];
    if (k === 2) continue;
    if (lowercase && k !== 1) ch = t.uncased.get(cp) ?? (cp >= 0xac00 && cp <= 0xd7a3 ? hangul(cp) : ch);
    const piece = k === 1 ? ' ' : k === 3 ? ` ${ch} ` : ch;
    normalized += piece;
    if (origin) for (let u = 0; u < piece.length; u++) origin.push(cpIndex);
  }
  return normalized;
}

/** BertPreTokenizer on normalized text: whitespace ends a word, punctuation is a word of its own. */
function splitWords(normalized: string, push: (start: number, end: number) => void): void {
  const t = tables();
  let start = -1;
  for (let i = 0; i < normalized.length; i++) {
    let cp = normalized.charCodeAt(i), w = 1;
    if (cp >= 0xd800 && cp <= 0xdbff) { cp = 0x10000 + ((cp - 0xd800) << 10) + (normalized.charCodeAt(i + 1) - 0xdc00); w = 2; }
    const k = t.pre[cp];
    if (k === 0) { if (start < 0) start = i; }
    else {
      if (start >= 0) { push(start, i); start = -1; }
      if (k === 2) push(i, i + w);
    }
    i += w - 1;
  }
  if (start >= 0) push(start, normalized.length);
}
