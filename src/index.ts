// Public API: the pieces the CLI uses, for Node and Electron apps.
export { BertForSequenceClassification } from './model.js';
export type { Batch, Device, LoadReport, ModelOptions, OptimizerStepOptions } from './model.js';
export { BertTokenizer, truncatedLengths } from './tokenizer.js';
export type { EncodedDataset, EncodeOptions } from './tokenizer.js';
export { Trainer, DEFAULT_ARGS, lrLambda, listCheckpoints } from './trainer.js';
export type { TrainingArguments, TrainerOptions, TrainerEvents, TrainOutput, TokenizedDataset, LogEntry } from './trainer.js';
export { loadGlue, loadDataFile } from './datasets.js';
export type { TextDataset, ColumnOptions } from './datasets.js';
export { tokenizeDataset } from './data.js';
export { collate, shuffledOrder, lengthGroupedOrder, batches } from './collator.js';
export { GLUE_TASKS, glueTask, glueMetricNames } from './glue.js';
export { accuracy, f1, matthewsCorrelation, pearson, spearman, glueMetric } from './metrics.js';
export { hubFile, cachedFile, hubCacheDir, fileSource, HubError } from './hub.js';
export { parseConfig, BERT_BASE_UNCASED } from './config.js';
export type { BertConfig } from './config.js';
export { readSafetensors, writeSafetensors, parseSafetensors, indexSafetensors } from './safetensors.js';
export { UsageError, InputError } from './errors.js';
export { addon as nativeAddon } from './native.js';
