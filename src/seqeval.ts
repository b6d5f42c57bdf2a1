// Entity-level precision, recall and F1 of tag sequences, as the seqeval package computes them in its default
// (conlleval-compatible) mode, which is what run_ner.py reports through `evaluate.load("seqeval")`: IOB1/IOB2/IOE/
// IOBES tags, an entity a maximal chunk of one type; micro-averaged over entities; token accuracy beside them.

type Chunk = string;  // "type start end", over the sentences flattened with an "O" between them

/** seqeval.metrics.sequence_labeling.get_entities: (type, start, end) of each chunk. */
export function getEntities(sentences: string[][]): Array<[string, number, number]> {
  const seq = sentences.flatMap((s) => [...s, 'O']);
  const chunks: Array<[string, number, number]> = [];
  let prevTag = 'O', prevType = '', begin = 0;
  for (let i = 0; i <= seq.length; i++) {
    const chunk = i < seq.length ? seq[i] : 'O';
    const tag = chunk[0] ?? 'O';
    const type = chunk.slice(1).split('-').slice(1).join('-') || chunk.slice(1).split('-').pop() || '_';
    if (endOfChunk(prevTag, tag, prevType, type)) chunks.push([prevType, begin, i - 1]);
    if (startOfChunk(prevTag, tag, prevType, type)) begin = i;
    prevTag = tag;
    prevType = type;
  }
  return chunks;
}

function endOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (prevTag === 'E' || prevTag === 'S') return true;
  if ((prevTag === 'B' || prevTag === 'I') && (tag === 'B' || tag === 'S' || tag === 'O')) return true;
  return prevTag !== 'O' && prevTag !== '.' && prevType !== type;
}

function startOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (tag === 'B' || tag === 'S') return true;
  if ((prevTag === 'E' || prevTag === 'S' || prevTag === 'O') && (tag === 'E' || tag === 'I')) return true;
  return tag !== 'O' && tag !== '.' && prevType !== type;
}

export interface SeqevalScores {
  overall_precision: number;
  overall_recall: number;
  overall_f1: number;
  overall_accuracy: number;
  /** Per entity type: precision, recall, f1 and the number of true entities (evaluate's "seqeval" result). */
  types: Record<string, { precision: number; recall: number; f1: number; number: number }>;
}

/** evaluate.load("seqeval").compute(predictions, references): the sentences' tags, side by side. */
export function seqeval(predictions: string[][], references: string[][]): SeqevalScores {
  if (predictions.length !== references.length) throw new RangeError(`${predictions.length} predicted sentences for ${references.length} references`);
  let right = 0, total = 0;
  predictions.forEach((p, i) => {
    if (p.length !== references[i].length) throw new RangeError(`sentence ${i}: ${p.length} predicted tags for ${references[i].length}`);
    for (let k = 0; k < p.length; k++) { total++; if (p[k] === references[i][k]) right++; }
  });
  const key = ([t, s, e]: [string, number, number]): Chunk => `${t} ${s} ${e}`;
  const pred = getEntities(predictions), truth = getEntities(references);
  const predSet = new Set(pred.map(key)), trueSet = new Set(truth.map(key));
  const div = (a: number, b: number) => (b === 0 ? 0 : a / b);  // seqeval's zero_division: 0
  const prf = (correct: number, nPred: number, nTrue: number) => {
    const precision = div(correct, nPred), recall = div(correct, nTrue);
    return { precision, recall, f1: div(2 * precision * recall, precision + recall) };
  };
  const correct = [...predSet].filter((c) => trueSet.has(c));
  const types: SeqevalScores['types'] = {};
  for (const type of [...new Set([...truth, ...pred].map((c) => c[0]))].sort()) {
    const nTrue = truth.filter((c) => c[0] === type).length, nPred = pred.filter((c) => c[0] === type).length;
    types[type] = { ...prf(correct.filter((c) => c.split(' ')[0] === type).length, nPred, nTrue), number: nTrue };
  }
  const all = prf(correct.length, predSet.size, trueSet.size);
  return { overall_precision: all.precision, overall_recall: all.recall, overall_f1: all.f1, overall_accuracy: div(right, total), types };
}

/**
 * run_ner.py's compute_metrics for the Trainer: the scored tokens' tags (labels not -100; the first piece of each
 * word by default) per example, then seqeval. `returnEntityLevelMetrics`: every type's precision, recall, f1 and
 * number too (as `${type}_${name}`), with overall_precision ... overall_accuracy; else precision, recall, f1 and
 * accuracy.
 */
export function nerMetrics(labelNames: string[], o: { returnEntityLevelMetrics?: boolean } = {}) {
  return (p: { predictions: ArrayLike<number>; labelIds: ArrayLike<number> | null; dataset: { enc: { offsets: Int32Array; length: number } } }): Record<string, number> => {
    if (!p.labelIds) throw new TypeError('token classification metrics need the tokens\' labels');
    const labelIds = p.labelIds;
    const preds: string[][] = [], refs: string[][] = [];
    const { offsets, length } = p.dataset.enc;
    for (let r = 0; r < length; r++) {
      const pr: string[] = [], rf: string[] = [];
      for (let t = offsets[r]; t < offsets[r + 1]; t++) {
        if (labelIds[t] === -100) continue;
        pr.push(labelNames[p.predictions[t]]);
        rf.push(labelNames[labelIds[t]]);
      }
      preds.push(pr);
      refs.push(rf);
    }
    const s = seqeval(preds, refs);
    if (!o.returnEntityLevelMetrics) return { precision: s.overall_precision, recall: s.overall_recall, f1: s.overall_f1, accuracy: s.overall_accuracy };
    const out: Record<string, number> = {};
    for (const [type, m] of Object.entries(s.types)) for (const [k, v] of Object.entries(m)) out[`${type}_${k}`] = v;
    return { ...out, overall_precision: s.overall_precision, overall_recall: s.overall_recall, overall_f1: s.overall_f1, overall_accuracy: s.overall_accuracy };
  };
}
