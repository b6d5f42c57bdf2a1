// GLUE metrics defined as evaluate's glue metric computes them (scikit-learn / scipy semantics, edge cases included).
import { glueMetricNames } from './glue.js';

type Nums = ArrayLike<number>;

export function accuracy(pred: Nums, ref: Nums): number {
  let ok = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === ref[i]) ok++;
  return pred.length ? ok / pred.length : 0;
}

/** Binary F1 of class 1; 0 when there is no true or predicted positive (scikit-learn's zero_division default). */
export function f1(pred: Nums, ref: Nums): number {
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i] === 1 && ref[i] === 1) tp++;
    else if (pred[i] === 1) fp++;
    else if (ref[i] === 1) fn++;
  }
  const denom = 2 * tp + fp + fn;
  return denom === 0 ? 0 : (2 * tp) / denom;
}

/** Multiclass Matthews correlation (scikit-learn's formula); 0 when undefined. */
export function matthewsCorrelation(pred: Nums, ref: Nums): number {
  const classes = [...new Set([...Array.from(pred), ...Array.from(ref)])];
  const idx = new Map(classes.map((c, i) => [c, i]));
  const k = classes.length;
  const t = new Float64Array(k), p = new Float64Array(k);
  let c = 0;
  const s = pred.length;
  for (let i = 0; i < s; i++) {
    t[idx.get(ref[i])!]++;
    p[idx.get(pred[i])!]++;
    if (pred[i] === ref[i]) c++;
  }
  let tp = 0, pp = 0, tt = 0;
  for (let j = 0; j < k; j++) { tp += t[j] * p[j]; pp += p[j] * p[j]; tt += t[j] * t[j]; }
  const cov_ytyp = c * s - tp, cov_ypyp = s * s - pp, cov_ytyt = s * s - tt;
  if (cov_ypyp * cov_ytyt === 0) return 0;
  return cov_ytyp / Math.sqrt(cov_ytyt * cov_ypyp);
}

/** scipy.stats.pearsonr's statistic; NaN for constant input, as scipy returns. */
export function pearson(x: Nums, y: Nums): number {
  const n = x.length;
  if (n < 2) return NaN;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
  mx /= n; my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return NaN;
  const r = sxy / Math.sqrt(sxx * syy);
  return Math.max(-1, Math.min(1, r));
}

/** Ranks with ties averaged (scipy.stats.rankdata 'average'), 1-based. */
export function rankdata(x: Nums): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Float64Array(x.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && x[order[j + 1]] === x[order[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[order[k]] = avg;
    i = j + 1;
  }
  return r;
}

export function spearman(x: Nums, y: Nums): number {
  return pearson(rankdata(x), rankdata(y));
}

/** evaluate.load("glue", task).compute(predictions, references). */
export function glueMetric(task: string, predictions: Nums, references: Nums): Record<string, number> {
  const names = glueMetricNames(task);
  const out: Record<string, number> = {};
  for (const n of names) {
    if (n === 'accuracy') out.accuracy = accuracy(predictions, references);
    if (n === 'f1') out.f1 = f1(predictions, references);
    if (n === 'matthews_correlation') out.matthews_correlation = matthewsCorrelation(predictions, references);
    if (n === 'pearson') out.pearson = pearson(predictions, references);
    if (n === 'spearmanr') out.spearmanr = spearman(predictions, references);
  }
  return out;
}
