// Extractive question answering as transformers' run_qa.py (with its utils_qa.py) does it: SQuAD-format examples,
// contexts cut into overlapping windows of max_seq_length with doc_stride tokens of overlap (the fast tokenizer's
// truncation="only_second" with return_overflowing_tokens), answer spans as start/end token positions (the [CLS]
// position when the answer is not in the window), n-best post-processing of the start/end logits back to context
// text, and the official SQuAD exact-match and F1 (v2: unanswerable questions, answered by "").
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputError, show } from './errors.js';
import { readDataRows } from './datasets.js';
import type { TokenizedDataset } from './data.js';
import type { BertTokenizer } from './tokenizer.js';

export interface QaExample { id: string; question: string; context: string; answers: { text: string[]; answer_start: number[] } }

/**
 * Examples from a local file: the Hub's flat rows (.jsonl, .json, .parquet: id, question, context, answers with
 * text and answer_start lists), or the official nested SQuAD JSON (data[].paragraphs[].qas[]).
 */
export async function loadQaFile(file: string, o: { questionColumn?: string; contextColumn?: string; answerColumn?: string } = {}): Promise<QaExample[]> {
  const q = o.questionColumn ?? 'question', c = o.contextColumn ?? 'context', a = o.answerColumn ?? 'answers';
  if (path.extname(file).toLowerCase() === '.json') {
    const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => { throw new InputError(file, `cannot read (${e.code ?? e.message})`); });
    let j: unknown;
    try { j = JSON.parse(text); } catch { j = undefined; }
    const data = (j as { data?: unknown })?.data;
    if (Array.isArray(data)) {
      const out: QaExample[] = [];
      for (const article of data as Array<{ paragraphs?: Array<{ context: string; qas: Array<{ id: string; question: string; answers?: Array<{ text: string; answer_start: number }> }> }> }>)
        for (const p of article.paragraphs ?? [])
          for (const qa of p.qas ?? [])
            out.push({ id: String(qa.id), question: qa.question, context: p.context, answers: { text: (qa.answers ?? []).map((x) => x.text), answer_start: (qa.answers ?? []).map((x) => x.answer_start) } });
      return check(out, file);
    }
  }
  const { rows, firstRow } = await readDataRows(file, a);
  return check(rows.map((r, i) => {
    const ans = r[a] as { text?: unknown; answer_start?: unknown } | undefined;
    if (typeof r[q] !== 'string' || typeof r[c] !== 'string')
      throw new InputError(file, `row ${(r.__line as number | undefined) ?? i + firstRow}: needs text columns ${show(q)} and ${show(c)}`);
    const list = (v: unknown) => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
    return { id: String(r.id ?? i), question: r[q] as string, context: r[c] as string,
      answers: { text: list(ans?.text).map(String), answer_start: list(ans?.answer_start).map((x) => Number(x)) } };
  }), file);
}

function check(examples: QaExample[], file: string): QaExample[] {
  examples.forEach((e, i) => {
    if (e.answers.text.length !== e.answers.answer_start.length) throw new InputError(file, `example ${show(e.id)}: ${e.answers.text.length} answer texts for ${e.answers.answer_start.length} starts`);
    e.answers.answer_start.forEach((s, k) => {
      const len = Array.from(e.context).length;
      if (!Number.isInteger(s) || s < 0 || s + Array.from(e.answers.text[k]).length > len)
        throw new InputError(file, `example ${show(e.id)} (${i + 1}): answer ${k + 1} starts at ${show(s)}, outside its context of ${len} characters`);
    });
  });
  return examples;
}

/** The windows of every example, as run_qa's prepare_*_features produce them (one feature a window). */
export interface QaFeatures extends TokenizedDataset {
  /** Per feature: its example's index. */
  exampleIndex: Int32Array;
  /** Per token of enc.ids: [start, end) in the context (code points), or [-1, -1] outside the context. */
  contextOffsets: Int32Array;
  /** Training: [start, end] token positions per feature (0, the [CLS] position, when the answer is not there). */
  positions?: Int32Array;
}

/**
 * tokenizer(question.lstrip(), context, truncation="only_second", max_length, stride=docStride,
 * return_overflowing_tokens=True, return_offsets_mapping=True): each window [CLS] question [SEP] context-part
 * [SEP]; windows start every (budget - docStride) context tokens, budget = maxSeqLength - question - 3. With
 * `train`, the answer's token span per window (run_qa's prepare_train_features).
 */
export function prepareQaFeatures(examples: QaExample[], tok: BertTokenizer, o: { maxSeqLength: number; docStride: number; train: boolean; padToMaxLength?: boolean }): QaFeatures {
  const ids: number[] = [], typeIds: number[] = [], offsetsFlat: number[] = [], featureOffsets: number[] = [], exampleIndex: number[] = [], positions: number[] = [];
  examples.forEach((ex, e) => {
    const q = tok.encodeWithOffsets(ex.question.replace(/^\s+/, ''));
    const c = tok.encodeWithOffsets(ex.context);
    const budget = o.maxSeqLength - q.ids.length - tok.addedTokens(true);
    if (budget <= o.docStride)
      throw new InputError(`example ${show(ex.id)}`, `its question takes ${q.ids.length} tokens: with --max-seq-length ${o.maxSeqLength} the context gets ${budget} per window, which must be more than --doc-stride ${o.docStride}`);
    const starts: number[] = [];
    for (let s = 0; ; s += budget - o.docStride) {
      starts.push(s);
      if (Math.min(s + budget, c.ids.length) >= c.ids.length) break;
    }
    for (const s of starts) {
      const end = Math.min(s + budget, c.ids.length);
      featureOffsets.push(ids.length);
      exampleIndex.push(e);
      const push = (id: number, type: number, off: [number, number] | null) => { ids.push(id); typeIds.push(type); offsetsFlat.push(off ? off[0] : -1, off ? off[1] : -1); };
      // The post-processor's pair layout: [CLS] question [SEP] context [SEP] for BERT, <s> question </s></s> context </s> for RoBERTa.
      let qStart = -1, ctxStart = -1, ctxEnd = -1;
      for (const item of tok.pairLayout) {
        if ('special' in item) push(item.special, item.type, null);
        else if (item.seq === 'A') { qStart = ids.length; q.ids.forEach((id) => push(id, item.type, null)); }
        else { ctxStart = ids.length; for (let k = s; k < end; k++) push(c.ids[k], item.type, c.offsets[k]); ctxEnd = ids.length - 1; }
      }
      if (!o.train) continue;
      // prepare_train_features on the window's offset mapping as the tokenizer returns it ((0, 0) for special tokens
      // and padding, the question's own offsets for its tokens), loops and all: the first answer's token span, or
      // the [CLS] position when the window does not contain it.
      const first = featureOffsets[featureOffsets.length - 1], total = o.padToMaxLength ? o.maxSeqLength : ids.length - first;
      const raw = (t: number): [number, number] => {
        const g = first + t;
        if (g >= ctxStart && g <= ctxEnd) return c.offsets[s + g - ctxStart];
        if (g >= qStart && g < qStart + q.ids.length) return q.offsets[g - qStart];
        return [0, 0];
      };
      const cls = Math.max(0, ids.indexOf(tok.clsId, first) - first);
      let startPos = cls, endPos = cls;
      if (ex.answers.answer_start.length) {
        const startChar = ex.answers.answer_start[0], endChar = startChar + Array.from(ex.answers.text[0]).length;
        let ts = ctxStart - first, te = ctxEnd - first;
        if (raw(ts)[0] <= startChar && raw(te)[1] >= endChar) {
          while (ts < total && raw(ts)[0] <= startChar) ts++;
          while (raw(te)[1] >= endChar) te--;
          startPos = ts - 1;
          endPos = te + 1;
        }
      }
      positions.push(startPos, endPos);
    }
  });
  featureOffsets.push(ids.length);
  const enc = { ids: Int32Array.from(ids), typeIds: Uint8Array.from(typeIds), offsets: Int32Array.from(featureOffsets), length: featureOffsets.length - 1 };
  return { enc, labels: null, labelNames: [], isRegression: false, exampleIndex: Int32Array.from(exampleIndex), contextOffsets: Int32Array.from(offsetsFlat),
    ...(o.train ? { positions: Int32Array.from(positions) } : {}) };
}

/** The indexes of the n largest values, largest first (np.argsort(x)[-1 : -n - 1 : -1]). */
function topIndexes(x: ArrayLike<number>, n: number): number[] {
  return Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[b] - x[a] || b - a).slice(0, n);
}

export interface QaPrediction { id: string; prediction_text: string; no_answer_probability?: number; /** The answer's first character in the context (code points); absent for the null answer. */ answerStart?: number }

/**
 * utils_qa.py's postprocess_qa_predictions: per example, over its features' top start and end logits, the
 * best-scoring valid span (inside the context, end not before start, at most maxAnswerLength tokens), as context
 * text; with versionTwoWithNegative the null answer (the [CLS] score, the lowest over the features) wins when it
 * beats the best span by more than nullScoreDiffThreshold. `logits`: [start, end] per token of features.enc.ids, as
 * the Trainer's predictions of a question-answering model hold them.
 */
export function postprocessQa(examples: QaExample[], f: QaFeatures, logits: ArrayLike<number>,
  o: { nBestSize?: number; maxAnswerLength?: number; versionTwoWithNegative?: boolean; nullScoreDiffThreshold?: number } = {}): { predictions: QaPrediction[]; nbest: Record<string, Array<{ text: string; probability: number; start_logit: number; end_logit: number }>> } {
  const nBest = o.nBestSize ?? 20, maxLen = o.maxAnswerLength ?? 30;
  const byExample = examples.map(() => [] as number[]);
  f.exampleIndex.forEach((e, i) => byExample[e].push(i));
  const predictions: QaPrediction[] = [];
  const nbest: Record<string, Array<{ text: string; probability: number; start_logit: number; end_logit: number }>> = {};
  examples.forEach((ex, e) => {
    let minNull: { offsets: [number, number]; score: number; start_logit: number; end_logit: number } | undefined;
    const prelim: Array<{ offsets: [number, number]; score: number; start_logit: number; end_logit: number }> = [];
    for (const fi of byExample[e]) {
      const base = f.enc.offsets[fi], n = f.enc.offsets[fi + 1] - base;
      const s = Array.from({ length: n }, (_, t) => logits[2 * (base + t)]), en = Array.from({ length: n }, (_, t) => logits[2 * (base + t) + 1]);
      const nullScore = s[0] + en[0];
      if (!minNull || minNull.score > nullScore) minNull = { offsets: [0, 0], score: nullScore, start_logit: s[0], end_logit: en[0] };
      const off = (t: number) => (f.contextOffsets[2 * (base + t)] < 0 ? null : [f.contextOffsets[2 * (base + t)], f.contextOffsets[2 * (base + t) + 1]] as [number, number]);
      for (const si of topIndexes(s, nBest))
        for (const ei of topIndexes(en, nBest)) {
          if (si >= n || ei >= n || !off(si) || !off(ei)) continue;
          if (ei < si || ei - si + 1 > maxLen) continue;
          prelim.push({ offsets: [off(si)![0], off(ei)![1]], score: s[si] + en[ei], start_logit: s[si], end_logit: en[ei] });
        }
    }
    if (o.versionTwoWithNegative && minNull) prelim.push(minNull);
    let preds = prelim.map((p, i) => ({ p, i })).sort((a, b) => b.p.score - a.p.score || a.i - b.i).slice(0, nBest).map((x) => x.p);
    if (o.versionTwoWithNegative && minNull && !preds.includes(minNull)) preds.push(minNull);
    const chars = Array.from(ex.context);
    let withText = preds.map((p) => ({ ...p, text: chars.slice(p.offsets[0], p.offsets[1]).join('') }));
    const startOf = (p: { offsets: [number, number]; text: string }) => (p.text ? p.offsets[0] : undefined);
    if (!withText.length || (withText.length === 1 && withText[0].text === '')) withText = [{ offsets: [0, 0], text: 'empty', start_logit: 0, end_logit: 0, score: 0 }, ...withText];
    const mx = Math.max(...withText.map((p) => p.score)), exps = withText.map((p) => Math.exp(p.score - mx)), sum = exps.reduce((a, b) => a + b, 0);
    nbest[ex.id] = withText.map((p, i) => ({ text: p.text, probability: exps[i] / sum, start_logit: p.start_logit, end_logit: p.end_logit }));
    if (!o.versionTwoWithNegative) {
      predictions.push({ id: ex.id, prediction_text: withText[0].text, answerStart: startOf(withText[0]) });
      return;
    }
    let i = 0;
    while (i < withText.length - 1 && withText[i].text === '') i++;
    const best = withText[i];
    const diff = minNull!.score - best.start_logit - best.end_logit;
    const isNull = diff > (o.nullScoreDiffThreshold ?? 0);
    predictions.push({ id: ex.id, prediction_text: isNull ? '' : best.text, no_answer_probability: 0, answerStart: isNull ? undefined : startOf(best) });
  });
  return { predictions, nbest };
}

/** The official SQuAD evaluation's normalize_answer: lower case, no punctuation, no articles, single spaces. */
export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, '').replace(/\b(a|an|the)\b/g, ' ').split(/\s+/).filter(Boolean).join(' ');
}

function f1Score(prediction: string, truth: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean), t = normalizeAnswer(truth).split(' ').filter(Boolean);
  if (!p.length || !t.length) return Number(p.length === t.length);  // squad_v2: an empty answer scores only against an empty one
  const counts = new Map<string, number>();
  for (const w of t) counts.set(w, (counts.get(w) ?? 0) + 1);
  let same = 0;
  for (const w of p) { const c = counts.get(w) ?? 0; if (c > 0) { same++; counts.set(w, c - 1); } }
  if (!same) return 0;
  const precision = same / p.length, recall = same / t.length;
  return (2 * precision * recall) / (precision + recall);
}

/** exact_match and f1 (0-100), each the best over the example's answers ("" when it has none), averaged. */
export function squadMetrics(predictions: QaPrediction[], examples: QaExample[]): { exact_match: number; f1: number } {
  const byId = new Map(examples.map((e) => [e.id, e]));
  let em = 0, f1 = 0;
  for (const p of predictions) {
    const truths = byId.get(p.id)!.answers.text.length ? byId.get(p.id)!.answers.text : [''];
    em += Math.max(...truths.map((t) => Number(normalizeAnswer(p.prediction_text) === normalizeAnswer(t))));
    f1 += Math.max(...truths.map((t) => f1Score(p.prediction_text, t)));
  }
  return { exact_match: (100 * em) / predictions.length, f1: (100 * f1) / predictions.length };
}
