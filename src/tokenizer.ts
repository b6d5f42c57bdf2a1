// Tokenization as `tokenizer(s1, s2, truncation=True)` does it with the fast tokenizers of the BERT family: the
// model of tokenizer.json (@huggingface/tokenizers: WordPiece, byte-level BPE for RoBERTa, Unigram for XLM-RoBERTa),
// or WordPiece built from vocab.txt for older repos; the special tokens and token types of its post-processor
// ([CLS] a [SEP] b [SEP] for BERT, <s> a </s></s> b </s> for RoBERTa, a template); longest_first truncation exactly
// as the Rust `tokenizers` crate computes it. BERT's normalizer and pre-tokenizer run ported (src/bert-pretokenizer.ts).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { bertPipeline, bertWords, bertWordSpans } from './bert-pretokenizer.js';
import { InputError } from './errors.js';
import { readJson, writeFileAtomic } from './fsutil.js';
import { fileSource, type HubOptions } from './hub.js';

/** A whole split, tokenized: sequence i is ids[offsets[i] .. offsets[i+1]). */
export interface EncodedDataset {
  ids: Int32Array;
  typeIds: Uint8Array;
  offsets: Int32Array;
  length: number;
}

export interface EncodeOptions {
  /** Truncate to this many tokens, special tokens included. Default: the tokenizer's model_max_length. */
  maxLength?: number;
  truncation?: boolean;
}

/** A post-processor's layout: special token ids and the sequences (A, B), each with its token type. */
export type TemplateItem = { special: number; type: number } | { seq: 'A' | 'B'; type: number };
interface Template { single: TemplateItem[]; pair: TemplateItem[] }

export class BertTokenizer {
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
  private cache = new Map<string, Int32Array>();
  private readonly template: Template;
  /** Byte-level BPE (RoBERTa): a pre-split word is encoded with a space before it, as add_prefix_space=True does. */
  private readonly byteLevel: boolean;
  private readonly metaspace: { replacement: string; prepend: boolean } | null;  // SentencePiece's pre-tokenizer
  /** tokenizer.json's added tokens by id: their text is their own (not through the model's alphabet). */
  private readonly addedTokenText: Map<number, string>;
  /** The byte-level post-processor's offset rules (RobertaProcessing's or ByteLevel's trim_offsets, add_prefix_space). */
  private readonly byteLevelOffsetRules: { trim: boolean; addPrefix: boolean };

  constructor(private readonly tok: Tokenizer, readonly config: Record<string, unknown>, readonly files: Record<string, unknown>, private readonly tokJson: Record<string, unknown> = {}) {
    const defaults = tokJson.model && (tokJson.model as Record<string, unknown>).type === 'WordPiece' ? ['[CLS]', '[SEP]', '[PAD]'] : ['<s>', '</s>', '<pad>'];
    const id = (key: string, fallback: string) => {
      const t = typeof config[key] === 'string' ? (config[key] as string) : fallback;
      const v = tok.token_to_id(t);
      if (v === undefined) throw new InputError('tokenizer', `special token ${t} (${key}) is not in the vocabulary`);
      return v;
    };
    this.clsId = id('cls_token', defaults[0]);
    this.sepId = id('sep_token', defaults[1]);
    this.padId = id('pad_token', defaults[2]);
    this.template = templateOf(tokJson.post_processor, this.clsId, this.sepId);
    this.byteLevel = JSON.stringify(tokJson.pre_tokenizer ?? null).includes('"ByteLevel"');
    const meta = /"type":"Metaspace"[^}]*/.exec(JSON.stringify(tokJson.pre_tokenizer ?? null))?.[0];
    this.metaspace = meta ? { replacement: /"replacement":"([^"]+)"/.exec(meta)?.[1] ?? '\u2581', prepend: !/"prepend_scheme":"never"|"add_prefix_space":false/.test(meta) } : null;
    this.addedTokenText = new Map(((Array.isArray(tokJson.added_tokens) ? tokJson.added_tokens : []) as Array<{ id: number; content: string }>).map((t) => [t.id, t.content]));
    const pp = JSON.stringify(tokJson.post_processor ?? null);
    this.byteLevelOffsetRules = { trim: /"type":"(RobertaProcessing|ByteLevel)"[^}]*"trim_offsets":true/.test(pp), addPrefix: /"add_prefix_space":true/.test(pp) };
  }

  /** The post-processor's layout of a pair: special tokens and the two sequences, each with its token type. */
  get pairLayout(): readonly TemplateItem[] { return this.template.pair; }

  /** Tokens added around the text(s): 2 for BERT's single sequence, 3 for its pairs (RoBERTa's pairs: 4). */
  addedTokens(pair: boolean): number { return (pair ? this.template.pair : this.template.single).filter((t) => 'special' in t).length; }

  /** Ids the post-processor adds and padding: what masked-language modelling never masks. */
  get specialIds(): Set<number> {
    const ids = new Set([this.padId]);
    for (const t of [...this.template.single, ...this.template.pair]) if ('special' in t) ids.add(t.special);
    return ids;
  }

  /** The sequence(s) laid out as the post-processor lays them out: ids and token types. */
  private assemble(a: Int32Array, b: Int32Array | null, ids: Int32Array, typeIds: Uint8Array, at: number): number {
    let p = at;
    for (const item of b ? this.template.pair : this.template.single) {
      if ('special' in item) { ids[p] = item.special; typeIds[p++] = item.type; continue; }
      const s = item.seq === 'A' ? a : b!;
      ids.set(s, p);
      typeIds.fill(item.type, p, p + s.length);
      p += s.length;
    }
    return p;
  }

  /** A token id's string (fill-mask shows the candidates by name). */
  idToToken(id: number): string { return this.tok.id_to_token(id) ?? `[${id}]`; }
  tokenToId(token: string): number | undefined { return this.tok.token_to_id(token) ?? undefined; }

  /** The [MASK] token's id (masked-language modelling needs it; classification does not). */
  get maskId(): number {
    const t = typeof this.config.mask_token === 'string' ? (this.config.mask_token as string) : '[MASK]';
    const v = this.tok.token_to_id(t);
    if (v === undefined) throw new InputError('tokenizer', `the mask token ${t} is not in the vocabulary: masked-language modelling needs one`);
    return v;
  }

  /** model_max_length from tokenizer_config.json (transformers' "very large" default when absent). */
  get modelMaxLength(): number {
    const v = this.config.model_max_length;
    return typeof v === 'number' && v > 0 ? v : Number.MAX_SAFE_INTEGER;
  }

  /** One more than the largest id the tokenizer can produce: the model's vocab_size must be at least this. */
  get idLimit(): number { let m = -1; for (const id of this.tok.get_vocab(true).values()) m = Math.max(m, id); return m + 1; }
  /** The folder or repo id it was loaded from, for messages. */
  source = 'tokenizer';

  static async fromPretrained(nameOrPath: string, o: HubOptions = {}): Promise<BertTokenizer> {
    const src = await fileSource(nameOrPath, o);
    const configFile = await src.get('tokenizer_config.json', true);
    const config = configFile ? (await readJson(configFile)) as Record<string, unknown> : {};
    if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new InputError(configFile!, 'not a JSON object');
    const jsonFile = await src.get('tokenizer.json', true);
    const files: Record<string, unknown> = { 'tokenizer_config.json': config };
    let tokJson: Record<string, unknown>;
    if (jsonFile) {
      tokJson = (await readJson(jsonFile)) as Record<string, unknown>;
      if (typeof tokJson !== 'object' || tokJson === null || typeof tokJson.model !== 'object')
        throw new InputError(jsonFile, 'not a tokenizer.json (no "model" object)');
      files['tokenizer.json'] = tokJson;
    } else {
      const vocabFile = await src.get('vocab.txt', true);
      if (!vocabFile) throw new InputError(src.label, 'no tokenizer.json and no vocab.txt: cannot build a tokenizer');
      const vocab = await fs.readFile(vocabFile, 'utf8');
      files['vocab.txt'] = vocab;
      tokJson = wordPieceFromVocab(vocab, vocabFile, config);
    }
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(tokJson, config);
    } catch (e) {
      throw new InputError(jsonFile ?? src.label, `unusable tokenizer (${(e as Error).message})`);
    }
    const t = new BertTokenizer(tok, config, files, tokJson);
    t.source = jsonFile ?? configFile ?? src.label;
    t.usePortedPipeline(tokJson);
    return t;
  }

  private pipeline: { lowercase: boolean } | null = null;
  private special: { pattern: RegExp; ids: Map<string, number> } | null = null;

  /**
   * BERT's normalizer and pre-tokenizer run in src/bert-pretokenizer.ts (the Rust crate's exact behaviour); the
   * package keeps WordPiece. Added tokens are matched on the raw text first, as the Rust crate does; configurations
   * the port does not cover (other normalizers, added tokens that are normalized or strip spaces) stay on the package.
   */
  private usePortedPipeline(tokJson: Record<string, unknown>) {
    const pipeline = bertPipeline(tokJson);
    const added = (Array.isArray(tokJson.added_tokens) ? tokJson.added_tokens : []) as Array<Record<string, unknown>>;
    if (!pipeline || !this.tok.model || added.some((a) => a.normalized !== false || a.lstrip || a.rstrip || a.single_word || typeof a.content !== 'string' || !a.content)) return;
    const contents = added.map((a) => a.content as string).sort((x, y) => y.length - x.length);
    this.special = contents.length
      ? { pattern: new RegExp(contents.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g'), ids: new Map(added.map((a) => [a.content as string, a.id as number])) }
      : null;
    this.pipeline = pipeline;
  }

  private wordPieceIds(text: string, out: number[]) {
    const words = bertWords(text, this.pipeline!.lowercase);
    if (!words.length) return;
    const model = this.tok.model!;
    for (const t of model(words)) out.push(model.tokens_to_ids.get(t) ?? model.unk_token_id!);
  }

  /**
   * Token ids of one text without special tokens, and each token's [start, end) in the text in code points (Python's
   * indices: what return_offsets_mapping gives), for extractive question answering. BERT's normalizer only.
   */
  encodeWithOffsets(text: string): { ids: number[]; offsets: Array<[number, number]> } {
    if (!this.pipeline && this.byteLevel) return this.byteLevelOffsets(text);
    if (!this.pipeline && this.metaspace) return this.metaspaceOffsets(text);
    if (!this.pipeline) throw new InputError('tokenizer', 'character offsets need BERT\'s normalizer and pre-tokenizer, a byte-level BPE or a Metaspace (SentencePiece) pre-tokenizer; this tokenizer.json has none of them');
    const model = this.tok.model!;
    const ids: number[] = [], offsets: Array<[number, number]> = [];
    const cpIndex = (i: number) => Array.from(text.slice(0, i)).length;  // UTF-16 index -> code points
    const words = (part: string, at: number) => {
      for (const w of bertWordSpans(part, this.pipeline!.lowercase)) {
        const pieces = model([w.word]);
        let pos = 0;
        for (const piece of pieces) {
          const id = model.tokens_to_ids.get(piece) ?? model.unk_token_id!;
          ids.push(id);
          if (id === model.unk_token_id || pieces.length === 1) { offsets.push([at + w.start, at + w.end]); continue; }
          const len = piece.startsWith('##') && pos > 0 ? piece.length - 2 : piece.length;
          offsets.push([at + w.origin[pos], at + w.origin[pos + len - 1] + 1]);
          pos += len;
        }
      }
    };
    let last = 0;
    if (this.special) {
      for (const m of text.matchAll(this.special.pattern)) {
        words(text.slice(last, m.index), cpIndex(last));
        ids.push(this.special.ids.get(m[0])!);
        offsets.push([cpIndex(m.index!), cpIndex(m.index! + m[0].length)]);
        last = m.index! + m[0].length;
      }
    }
    words(last ? text.slice(last) : text, cpIndex(last));
    return { ids, offsets };
  }

  /**
   * encodeWithOffsets for byte-level BPE (RoBERTa's, ModernBERT's): each token's bytes (its characters through
   * GPT-2's byte alphabet; an added token's own text) laid end to end are the text's UTF-8, so byte positions give
   * the characters; a prefix space the pre-tokenizer adds is no character of the text. Offsets are trimmed of
   * leading and trailing spaces where the post-processor does it (RobertaProcessing's or ByteLevel's trim_offsets),
   * as tokenizers' process_offsets does.
   */
  private byteLevelOffsets(text: string): { ids: number[]; offsets: Array<[number, number]> } {
    const ids = Array.from(this.tok.encode(text, { add_special_tokens: false }).ids as ArrayLike<number>, Number);
    const utf8 = Buffer.from(text, 'utf8');
    const charOf = new Int32Array(utf8.length + 1);  // the code point each byte belongs to
    let c = -1;
    for (let i = 0; i < utf8.length; i++) { if ((utf8[i] & 0xc0) !== 0x80) c++; charOf[i] = c; }
    charOf[utf8.length] = c + 1;
    const alphabet = byteAlphabet();
    const added = this.addedTokenText;
    const bytesOf = ids.map((id) => {
      const content = added.get(id);
      if (content !== undefined) return Buffer.from(content, 'utf8');
      return Uint8Array.from(Array.from(this.idToToken(id), (ch) => alphabet.get(ch) ?? 0));
    });
    const total = bytesOf.reduce((n, b) => n + b.length, 0);
    if (total !== utf8.length && total !== utf8.length + 1)
      throw new InputError('tokenizer', 'character offsets: this tokenizer.json changes the text before its byte-level BPE (a normalizer); offsets are not computed for it here yet');
    const { trim, addPrefix } = this.byteLevelOffsetRules;
    let pos = total - utf8.length === 1 ? -1 : 0;  // a prefix space the pre-tokenizer added precedes the text
    const offsets: Array<[number, number]> = bytesOf.map((b, i) => {
      const start = pos, end = pos + b.length;
      pos = end;
      let cs = start < 0 ? 0 : charOf[start], ce = end <= 0 ? 0 : charOf[end - 1] + 1;
      if (trim && !added.has(ids[i])) {
        let lead = 0, trail = 0;
        while (lead < b.length && b[lead] === 0x20) lead++;
        while (trail < b.length && b[b.length - 1 - trail] === 0x20) trail++;
        if (lead === 1 && addPrefix && (i === 0 || cs === 0)) lead = 0;  // the space it added is not trimmed
        if (start < 0 && lead > 0) lead--;  // the added space is already outside the text
        cs = Math.min(cs + lead, ce);
        if (trail > 0 && ce >= trail) ce = Math.max(ce - trail, cs);
      }
      return [cs, ce];
    });
    return { ids, offsets };
  }

  /**
   * encodeWithOffsets for a Metaspace (SentencePiece) tokenizer (XLM-RoBERTa's, DeBERTa-v3's Unigram): the normalized
   * text with each space as the replacement character, and one more in front where the pre-tokenizer prepends it, is
   * what the tokens spell end to end (an unknown token spans up to where the next one's text begins). Positions go
   * back to the original text through an alignment of the text with its normalized form, character by character
   * (NFKC's changes, and spaces a normalizer collapses, map to the characters they came from).
   */
  private metaspaceOffsets(text: string): { ids: number[]; offsets: Array<[number, number]> } {
    const ids = Array.from(this.tok.encode(text, { add_special_tokens: false }).ids as ArrayLike<number>, Number);
    const { replacement, prepend } = this.metaspace!;
    const normalizer = (this.tok as unknown as { normalizer?: { normalize(t: string): string } | null }).normalizer;
    const norm = (t: string) => (normalizer ? normalizer.normalize(t) : t);
    const original = Array.from(text), normalized = Array.from(norm(text));
    // origin[j]: the original character normalized character j came from.
    const origin: number[] = [];
    const fail = () => new InputError('tokenizer', 'character offsets: the normalizer changes this text in a way not aligned here (the offsets would be wrong)');
    for (let i = 0, j = 0; i < original.length || j < normalized.length;) {
      const piece = i < original.length ? Array.from(norm(original[i])) : [];
      if (piece.length && piece.every((ch, k) => normalized[j + k] === ch)) { piece.forEach(() => origin.push(i)); j += piece.length; i++; continue; }
      if (i < original.length && (piece.length === 0 || /\s/.test(original[i]))) { i++; continue; }  // removed, or a collapsed space
      if (j < normalized.length && i > 0 && /\s/.test(normalized[j])) { origin.push(i - 1); j++; continue; }
      throw fail();
    }
    const lead = prepend && normalized[0] !== ' ' && normalized[0] !== replacement ? 1 : 0;
    const spelled = (lead ? replacement : '') + normalized.map((ch) => (ch === ' ' ? replacement : ch)).join('');
    const chars = Array.from(spelled);
    // Each spelled character's original: a prepended replacement is aligned with the first character, as tokenizers
    // aligns it (a token of it alone spans that character).
    const from = chars.map((_, x) => (x < lead ? origin[0] ?? 0 : origin[x - lead]));
    const unk = (this.tokJson.model as { unk_id?: number } | undefined)?.unk_id;
    const textOf = (id: number) => Array.from(this.addedTokenText.get(id) ?? this.idToToken(id));
    const startsAt = (k: number, t: string[]) => t.every((ch, x) => chars[k + x] === ch);
    let k = 0;
    const offsets: Array<[number, number]> = ids.map((id, n) => {
      let len: number;
      if (id === unk) {
        // Up to where the next known token's text begins (or the end).
        const next = ids.slice(n + 1).find((x) => x !== unk);
        len = 1;
        if (next === undefined) len = chars.length - k;
        else while (k + len < chars.length && !startsAt(k + len, textOf(next))) len++;
      } else {
        const t = textOf(id);
        if (!startsAt(k, t)) throw fail();
        len = t.length;
      }
      const span: [number, number] = len > 0 ? [from[k], from[k + len - 1] + 1] : [from[k] ?? original.length, from[k] ?? original.length];
      k += len;
      return span;
    });
    if (k !== chars.length) throw fail();
    return { ids, offsets };
  }

  /** Token ids of one text without special tokens, computed once per distinct text. */
  encodeText(text: string): Int32Array {
    let ids = this.cache.get(text);
    if (!ids) {
      if (this.pipeline) {
        const out: number[] = [];
        let last = 0;
        if (this.special) {
          for (const m of text.matchAll(this.special.pattern)) {
            this.wordPieceIds(text.slice(last, m.index), out);
            out.push(this.special.ids.get(m[0])!);
            last = m.index! + m[0].length;
          }
        }
        this.wordPieceIds(last ? text.slice(last) : text, out);
        ids = Int32Array.from(out);
      } else {
        ids = Int32Array.from(this.tok.encode(text, { add_special_tokens: false }).ids);
      }
      this.cache.set(text, ids);
    }
    return ids;
  }

  /** One example, as tokenizer(a, b, truncation=True, max_length=...) returns it. */
  encode(a: string, b?: string | null, o: EncodeOptions = {}): { inputIds: number[]; tokenTypeIds: number[]; attentionMask: number[] } {
    const d = this.encodeBatch([a], b == null ? null : [b], o);
    const ids = Array.from(d.ids);
    return { inputIds: ids, tokenTypeIds: Array.from(d.typeIds), attentionMask: ids.map(() => 1) };
  }

  /** A whole split into flat typed arrays (the collator slices them). */
  encodeBatch(text1: string[], text2: string[] | null, o: EncodeOptions = {}): EncodedDataset {
    const truncation = o.truncation ?? true;
    const maxLength = o.maxLength ?? this.modelMaxLength;
    const added = this.addedTokens(text2 !== null);
    if (truncation && (!Number.isInteger(maxLength) || maxLength < added))
      throw new RangeError(`maxLength must be an integer >= ${added} (room for the special tokens), got ${maxLength}`);
    const n = text1.length;
    const lens = new Int32Array(n * 2);
    let total = 0;
    for (let i = 0; i < n; i++) {
      let n1 = this.encodeText(text1[i]).length;
      let n2 = text2 ? this.encodeText(text2[i]).length : 0;
      if (truncation) [n1, n2] = truncatedLengths(n1, n2, text2 !== null, maxLength, added);
      lens[2 * i] = n1;
      lens[2 * i + 1] = n2;
      total += n1 + n2 + added;
    }
    const ids = new Int32Array(total), typeIds = new Uint8Array(total), offsets = new Int32Array(n + 1);
    let p = 0;
    for (let i = 0; i < n; i++) {
      offsets[i] = p;
      const a = this.encodeText(text1[i]).subarray(0, lens[2 * i]);
      const b = text2 ? this.encodeText(text2[i]).subarray(0, lens[2 * i + 1]) : null;
      p = this.assemble(a, b, ids, typeIds, p);
    }
    offsets[n] = p;
    return { ids, typeIds, offsets, length: n };
  }

  /**
   * Pre-split words (tokenizer(words, is_split_into_words=True, truncation=True)): each word's pieces in order,
   * [CLS] ... [SEP], and `wordIds`, aligned with `ids`, giving each token's word index (-1 for special tokens), as
   * BatchEncoding.word_ids() does. A word that yields no piece has no token.
   */
  encodeWords(words: string[][], o: EncodeOptions = {}): EncodedDataset & { wordIds: Int32Array } {
    const maxLength = o.maxLength ?? this.modelMaxLength;
    if ((o.truncation ?? true) && (!Number.isInteger(maxLength) || maxLength < 2)) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`);
    const limit = (o.truncation ?? true) ? maxLength - this.addedTokens(false) : Infinity;
    const ids: number[] = [], typeIds: number[] = [], wordIds: number[] = [], offsets = new Int32Array(words.length + 1);
    words.forEach((ws, i) => {
      offsets[i] = ids.length;
      for (const item of this.template.single) {
        if ('special' in item) { ids.push(item.special); typeIds.push(item.type); wordIds.push(-1); continue; }
        let n = 0;
        for (let w = 0; w < ws.length && n < limit; w++) {
          for (const id of this.encodeText(this.byteLevel ? ` ${ws[w]}` : ws[w])) {
            if (n++ >= limit) break;
            ids.push(id); typeIds.push(item.type); wordIds.push(w);
          }
        }
      }
    });
    offsets[words.length] = ids.length;
    return { ids: Int32Array.from(ids), typeIds: Uint8Array.from(typeIds), offsets, length: words.length, wordIds: Int32Array.from(wordIds) };
  }

  /** Releases the per-text cache (it only speeds up repeated texts). */
  clearCache(): void { this.cache.clear(); }

  /** tokenizer.json's object: the file's, or the one built from vocab.txt (what the ONNX export writes). */
  tokenizerJson(): Record<string, unknown> { return this.tokJson; }
  /** tokenizer_config.json's object. */
  tokenizerConfig(): Record<string, unknown> { return this.config; }

  /** The files save() writes next to a checkpoint. */
  async save(dir: string): Promise<void> {
    for (const [name, content] of Object.entries(this.files))
      await writeFileAtomic(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2) + '\n');
  }
}

/**
 * tokenizers' TruncationStrategy::LongestFirst for (n1, n2) content tokens and a limit that includes the special
 * tokens: balance both sequences, the longer keeping the odd token.
 */
export function truncatedLengths(n1: number, n2: number, pair: boolean, maxLength: number, added = pair ? 3 : 2): [number, number] {
  const limit = maxLength - added;
  if (n1 + n2 <= limit) return [n1, n2];
  if (!pair) return [Math.min(n1, limit), 0];
  let swap = false;
  let a = n1, b = n2;
  if (a > b) { swap = true; [a, b] = [b, a]; }
  if (a > limit) b = a;
  else b = Math.max(a, limit - a);
  if (a + b > limit) {
    a = Math.floor(limit / 2);
    b = a + (limit % 2);
  }
  if (swap) [a, b] = [b, a];
  return [Math.min(n1, a), Math.min(n2, b)];
}

/**
 * The layout of tokenizer.json's post_processor: BertProcessing ([CLS] A [SEP] B [SEP], B's tokens and last [SEP]
 * type 1), RobertaProcessing (<s> A </s></s> B </s>, every type 0), TemplateProcessing (its own items), inside a
 * Sequence too; none: [CLS] A [SEP] with the tokenizer's own ids.
 */
function templateOf(pp: unknown, cls: number, sep: number): Template {
  const p = pp as Record<string, unknown> | null | undefined;
  const idOf = (pair: unknown, fallback: number) => (Array.isArray(pair) && typeof pair[1] === 'number' ? pair[1] : fallback);
  if (p && p.type === 'Sequence' && Array.isArray(p.processors)) {
    const inner = (p.processors as Array<Record<string, unknown>>).find((x) => ['BertProcessing', 'RobertaProcessing', 'TemplateProcessing'].includes(x.type as string));
    return templateOf(inner, cls, sep);
  }
  if (p && p.type === 'RobertaProcessing') {
    const c = idOf(p.cls, cls), s = idOf(p.sep, sep);
    return { single: [{ special: c, type: 0 }, { seq: 'A', type: 0 }, { special: s, type: 0 }],
      pair: [{ special: c, type: 0 }, { seq: 'A', type: 0 }, { special: s, type: 0 }, { special: s, type: 0 }, { seq: 'B', type: 0 }, { special: s, type: 0 }] };
  }
  if (p && p.type === 'TemplateProcessing') {
    const specials = (p.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
    const items = (list: unknown): TemplateItem[] => (Array.isArray(list) ? list : []).flatMap((x: Record<string, { id: string; type_id?: number }>) => {
      if (x.Sequence) return [{ seq: x.Sequence.id === 'B' ? 'B' : 'A', type: x.Sequence.type_id ?? 0 } as TemplateItem];
      const ids = specials[x.SpecialToken?.id ?? '']?.ids ?? [];
      return ids.map((id) => ({ special: id, type: x.SpecialToken.type_id ?? 0 }));
    });
    return { single: items(p.single), pair: items(p.pair) };
  }
  const c = p && p.type === 'BertProcessing' ? idOf(p.cls, cls) : cls, s = p && p.type === 'BertProcessing' ? idOf(p.sep, sep) : sep;
  return { single: [{ special: c, type: 0 }, { seq: 'A', type: 0 }, { special: s, type: 0 }],
    pair: [{ special: c, type: 0 }, { seq: 'A', type: 0 }, { special: s, type: 0 }, { seq: 'B', type: 1 }, { special: s, type: 1 }] };
}

/** The tokenizer.json that BertTokenizerFast builds from vocab.txt + tokenizer_config.json. */
export function wordPieceFromVocab(vocabText: string, file: string, config: Record<string, unknown>): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const lines = vocabText.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const t = line.replace(/\r$/, '');
    if (!(t in vocab)) vocab[t] = i;
  });
  if (Object.keys(vocab).length === 0) throw new InputError(file, 'empty vocabulary');
  const special = ['unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'].map((k, j) =>
    typeof config[k] === 'string' ? (config[k] as string) : ['[UNK]', '[SEP]', '[PAD]', '[CLS]', '[MASK]'][j]);
  for (const s of special) if (!(s in vocab)) throw new InputError(file, `special token ${s} is missing from the vocabulary`);
  const lower = config.do_lower_case !== false;
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: special.map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: config.tokenize_chinese_chars !== false, strip_accents: config.strip_accents ?? null, lowercase: lower },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: [special[1], vocab[special[1]]], cls: [special[3], vocab[special[3]]] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: special[0], continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

let byteAlphabetMap: Map<string, number> | undefined;
/** GPT-2's bytes_to_unicode, inverted: each byte-level character's byte. */
function byteAlphabet(): Map<string, number> {
  if (byteAlphabetMap) return byteAlphabetMap;
  const bs: number[] = [];
  for (const [a, b] of [[33, 126], [161, 172], [174, 255]]) for (let x = a; x <= b; x++) bs.push(x);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  byteAlphabetMap = new Map(bs.map((b, i) => [String.fromCodePoint(cs[i]), b]));
  return byteAlphabetMap;
}
