// Every GLUE config as the Hub dataset nyu-mll/glue publishes it: text columns, labels, metric.
export interface GlueTask {
  name: string;
  textColumns: [string] | [string, string];
  /** Class names in id order; empty for regression (stsb). */
  labelNames: string[];
  isRegression: boolean;
  /** The split evaluated during training. */
  validationSplit: string;
  splits: string[];
}

const t = (name: string, textColumns: GlueTask['textColumns'], labelNames: string[], splits = ['train', 'validation', 'test'], validationSplit = 'validation'): GlueTask =>
  ({ name, textColumns, labelNames, isRegression: labelNames.length === 0, validationSplit, splits });

export const GLUE_TASKS: Record<string, GlueTask> = {
  cola: t('cola', ['sentence'], ['unacceptable', 'acceptable']),
  sst2: t('sst2', ['sentence'], ['negative', 'positive']),
  mrpc: t('mrpc', ['sentence1', 'sentence2'], ['not_equivalent', 'equivalent']),
  qqp: t('qqp', ['question1', 'question2'], ['not_duplicate', 'duplicate']),
  stsb: t('stsb', ['sentence1', 'sentence2'], []),
  mnli: t('mnli', ['premise', 'hypothesis'], ['entailment', 'neutral', 'contradiction'],
    ['train', 'validation_matched', 'validation_mismatched', 'test_matched', 'test_mismatched'], 'validation_matched'),
  qnli: t('qnli', ['question', 'sentence'], ['entailment', 'not_entailment']),
  rte: t('rte', ['sentence1', 'sentence2'], ['entailment', 'not_entailment']),
  wnli: t('wnli', ['sentence1', 'sentence2'], ['not_entailment', 'entailment']),
  ax: t('ax', ['premise', 'hypothesis'], ['entailment', 'neutral', 'contradiction'], ['test'], 'test'),
};

export function glueTask(name: string): GlueTask {
  const task = GLUE_TASKS[name];
  if (!task) throw new RangeError(`unknown GLUE task ${JSON.stringify(name)}; known: ${Object.keys(GLUE_TASKS).join(', ')}`);
  return task;
}

/** The metric names `evaluate.load("glue", task)` returns. */
export function glueMetricNames(task: string): string[] {
  if (task === 'cola') return ['matthews_correlation'];
  if (task === 'stsb') return ['pearson', 'spearmanr'];
  if (task === 'mrpc' || task === 'qqp') return ['accuracy', 'f1'];
  return ['accuracy'];
}
