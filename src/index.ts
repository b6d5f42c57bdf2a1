// Public API: the pieces the CLI uses, for Node and Electron apps.
export { BertPreTrainedModel, BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering, BertForMaskedLM, BertForMultipleChoice } from './model.js';
// transformers' Auto classes: the same classes, which build the head in the family config.json's model_type names.
export {
  BertPreTrainedModel as AutoModel, BertForSequenceClassification as AutoModelForSequenceClassification, BertForTokenClassification as AutoModelForTokenClassification,
  BertForQuestionAnswering as AutoModelForQuestionAnswering, BertForMaskedLM as AutoModelForMaskedLM, BertForMultipleChoice as AutoModelForMultipleChoice,
} from './model.js';
export type { Batch, Device, LoadReport, ModelOptions, ModelOutput, OptimizerOptions } from './model.js';
export { BertTokenizer, BertTokenizer as AutoTokenizer, truncatedLengths } from './tokenizer.js';
export type { EncodedDataset, EncodeOptions } from './tokenizer.js';
export { Trainer, listCheckpoints } from './trainer.js';
export type { TrainerOptions, TrainerEvents, TrainOutput, EvalPrediction } from './trainer.js';
export { DEFAULT_ARGS, validateArgs } from './training-args.js';
export type { TrainingArguments } from './training-args.js';
export { lrLambda } from './optimization.js';
export { EarlyStoppingCallback } from './trainer-callback.js';
export type { TrainerCallback, TrainerControl, TrainerState, LogEntry } from './trainer-callback.js';
export type { TokenizedDataset } from './data.js';
export { loadGlue, loadDataFile } from './datasets.js';
export type { TextDataset, ColumnOptions } from './datasets.js';
export { tokenizeDataset } from './data.js';
export { collate, shuffledOrder, lengthGroupedOrder, batches } from './collator.js';
export { GLUE_TASKS, glueTask, glueMetricNames } from './glue.js';
export { accuracy, f1, matthewsCorrelation, pearson, spearman, glueMetric } from './metrics.js';
export { hubFile, cachedFile, hubCacheDir, fileSource, HubError } from './hub.js';
export { parseConfig, BERT_BASE_UNCASED, ARCHITECTURES, FAMILIES, HEADS } from './config.js';
export type { BertConfig, Architecture, Head, ModelType } from './config.js';
export { readSafetensors, writeSafetensors, parseSafetensors, indexSafetensors } from './safetensors.js';
export { UserError, UsageError, InputError } from './errors.js';
export { addon as nativeAddon, addonSource, platformPackage } from './native.js';
export { exportOnnx, ONNX_FAMILIES, ONNX_HEADS } from './onnx.js';
export type { ExportOptions, ExportResult } from './onnx.js';
export { Dashboard, type DashboardEvent } from './dashboard.js';
export { TensorBoardWriter } from './tensorboard.js';
export { DistributedContext, torchrunEnv, shardBatches, DEFAULT_DDP_TIMEOUT, DEFAULT_BUCKET_CAP_MB } from './distributed.js';
export type { DistributedOptions, TorchrunEnv } from './distributed.js';
export { cpuInfo, type CpuInfo } from './cpu.js';
export { seqeval, nerMetrics } from './seqeval.js';
export { loadTokenDataFile, tokenizeTokenDataset } from './ner.js';
export { loadTextLines, tokenizeForMlm } from './mlm.js';
export { maskTokens } from './collator.js';
export { loadQaFile, prepareQaFeatures, postprocessQa, squadMetrics, normalizeAnswer } from './qa.js';
export { tokenizeChoices, exampleCount } from './data.js';
