// Every flag of `node train.js`, once: its name, type, default, help and the TrainingArguments field it sets.
// yargs' options, the TrainingArguments a command passes on, number checks and the flag named in an error message
// all come from this table, so adding a flag is one line here.
import { GLUE_TASKS } from './glue.js';
import { DEFAULT_ARGS, HUB_STRATEGIES, LR_SCHEDULERS, NON_FINITE_LOSS, REPORT_TO, STRATEGIES, type TrainingArguments } from './training-args.js';
import { UsageError } from './errors.js';
import { OPTIMIZERS } from './model.js';
import { DEFAULT_BUCKET_CAP_MB, DEFAULT_DDP_TIMEOUT } from './distributed.js';

export type Command = 'train' | 'predict' | 'evaluate' | 'ner' | 'mlm' | 'qa' | 'swag' | 'export';

interface Flag {
  name: string;
  type: 'string' | 'number' | 'boolean';
  describe: string;
  /** The TrainingArguments field it sets; its default is then DEFAULT_ARGS' value. */
  field?: keyof TrainingArguments;
  /** A default of its own (flags without a field), or per command. */
  default?: unknown;
  defaultFor?: Partial<Record<Command, unknown>>;
  choices?: readonly string[];
  /** May be given several times (collected into an array). */
  array?: boolean;
  commands: readonly Command[];
}

const ALL: readonly Command[] = ['train', 'predict', 'evaluate', 'ner', 'mlm', 'qa', 'swag'];
const GLUE: readonly Command[] = ['train', 'predict', 'evaluate'];
/** Training commands: sequence classification (GLUE or files) and run_ner.py's token classification. */
const TRAIN: readonly Command[] = ['train', 'ner', 'mlm', 'qa', 'swag'];
const DDP: readonly Command[] = ['train'];

export const FLAGS: readonly Flag[] = [
  { name: 'model', type: 'string', default: 'bert-base-uncased', defaultFor: { predict: DEFAULT_ARGS.outputDir, evaluate: DEFAULT_ARGS.outputDir, export: DEFAULT_ARGS.outputDir },
    describe: 'Hub repo id or local checkpoint folder (export: a saved model folder)', commands: [...ALL, 'export'] },
  { name: 'task', type: 'string', describe: `GLUE task (${Object.keys(GLUE_TASKS).join(', ')}; default mrpc). With --train-file/--validation-file it sets ` +
    'the files\' label names, regression or not, and the metric; without it they come from the files (float labels: regression)', commands: GLUE },
  { name: 'train-file', type: 'string', describe: 'local training data (.parquet, .csv, .tsv, .jsonl, .json) instead of GLUE', commands: TRAIN },
  { name: 'validation-file', type: 'string', describe: 'local validation data', commands: ['train', 'evaluate', 'ner', 'mlm', 'qa', 'swag'] },
  { name: 'text-columns', type: 'string', describe: 'comma-separated text column(s) of local files (default: inferred)', commands: ['train'] },
  { name: 'label-column', type: 'string', describe: 'label column of local files (default: inferred)', commands: ['train'] },
  { name: 'output-dir', type: 'string', field: 'outputDir', defaultFor: { predict: undefined, export: undefined }, describe: 'output_dir: checkpoints, the final model and results ' +
    '(predict: write predict_results_<task>.txt there, as run_glue.py, instead of printing; export: the ONNX folder, default <model>-onnx)',
    commands: ['train', 'predict', 'ner', 'mlm', 'qa', 'swag', 'export'] },
  { name: 'quantize', type: 'boolean', default: false, describe: 'predict, evaluate: every Linear in int8 (dynamic quantization as torch quantize_dynamic; CPU); ' +
    'export: also write onnx/model_quantized.onnx (int8 weights; transformers.js dtype "q8")', commands: ['predict', 'evaluate', 'export'] },
  { name: 'epochs', type: 'number', field: 'numTrainEpochs', describe: 'num_train_epochs', commands: TRAIN },
  { name: 'learning-rate', type: 'number', field: 'learningRate', describe: 'learning_rate (AdamW)', commands: TRAIN },
  { name: 'batch-size', type: 'number', field: 'perDeviceTrainBatchSize', describe: 'per_device_train_batch_size', commands: TRAIN },
  { name: 'eval-batch-size', type: 'number', field: 'perDeviceEvalBatchSize', describe: 'per_device_eval_batch_size', commands: ALL },
  { name: 'max-length', type: 'number', describe: 'truncate to this many tokens (default: tokenizer model_max_length, capped by the model)', commands: GLUE },
  { name: 'warmup-ratio', type: 'number', field: 'warmupRatio', describe: 'warmup_ratio', commands: TRAIN },
  { name: 'warmup-steps', type: 'number', field: 'warmupSteps', describe: 'warmup_steps (overrides --warmup-ratio)', commands: TRAIN },
  { name: 'lr-scheduler', type: 'string', field: 'lrSchedulerType', choices: LR_SCHEDULERS, describe: 'lr_scheduler_type', commands: TRAIN },
  { name: 'lr-scheduler-kwargs', type: 'string', field: 'lrSchedulerKwargs', describe: 'lr_scheduler_kwargs as JSON, e.g. \'{"min_lr_rate":0.1}\' (cosine_with_min_lr), \'{"num_decay_steps":100}\' (warmup_stable_decay)', commands: TRAIN },
  { name: 'optim', type: 'string', field: 'optim', choices: OPTIMIZERS, describe: 'optim: the optimizer', commands: TRAIN },
  { name: 'optim-args', type: 'string', field: 'optimArgs', describe: 'optim_args, e.g. "momentum=0.9" for sgd', commands: TRAIN },
  { name: 'label-smoothing-factor', type: 'number', field: 'labelSmoothingFactor', describe: 'label_smoothing_factor (training and evaluation loss)', commands: TRAIN },
  { name: 'weight-decay', type: 'number', field: 'weightDecay', describe: 'weight_decay (not on biases and LayerNorm)', commands: TRAIN },
  { name: 'adam-beta1', type: 'number', field: 'adamBeta1', describe: 'adam_beta1', commands: TRAIN },
  { name: 'adam-beta2', type: 'number', field: 'adamBeta2', describe: 'adam_beta2', commands: TRAIN },
  { name: 'adam-epsilon', type: 'number', field: 'adamEpsilon', describe: 'adam_epsilon', commands: TRAIN },
  { name: 'max-grad-norm', type: 'number', field: 'maxGradNorm', describe: 'max_grad_norm (0: no clipping)', commands: TRAIN },
  { name: 'gradient-accumulation-steps', type: 'number', field: 'gradientAccumulationSteps', describe: 'gradient_accumulation_steps', commands: TRAIN },
  { name: 'max-steps', type: 'number', field: 'maxSteps', describe: 'stop after this many optimizer steps (-1: use epochs)', commands: TRAIN },
  { name: 'eval-strategy', type: 'string', field: 'evalStrategy', choices: STRATEGIES, describe: 'eval_strategy', commands: TRAIN },
  { name: 'eval-steps', type: 'number', field: 'evalSteps', describe: 'with --eval-strategy steps (default: logging steps)', commands: TRAIN },
  { name: 'logging-steps', type: 'number', field: 'loggingSteps', describe: 'logging_steps', commands: TRAIN },
  { name: 'save-strategy', type: 'string', field: 'saveStrategy', choices: STRATEGIES, describe: 'save_strategy', commands: TRAIN },
  { name: 'save-steps', type: 'number', field: 'saveSteps', describe: 'save_steps', commands: TRAIN },
  { name: 'save-total-limit', type: 'number', field: 'saveTotalLimit', describe: 'keep at most this many checkpoints', commands: TRAIN },
  { name: 'seed', type: 'number', field: 'seed', describe: 'seed (initialisation of new weights, shuffling, dropout)', commands: TRAIN },
  { name: 'group-by-length', type: 'boolean', field: 'groupByLength', describe: 'group_by_length', commands: TRAIN },
  { name: 'pad-to-multiple-of', type: 'number', field: 'padToMultipleOf', describe: 'pad batches to a multiple of this length', commands: TRAIN },
  { name: 'on-non-finite-loss', type: 'string', field: 'onNonFiniteLoss', choices: NON_FINITE_LOSS, describe: 'a NaN/infinite loss stops the run, or its update is skipped', commands: TRAIN },
  { name: 'bf16', type: 'boolean', field: 'bf16', describe: 'bfloat16 autocast for forward passes (TrainingArguments bf16); weights and optimizer stay fp32', commands: ALL },
  { name: 'report-to', type: 'string', array: true, field: 'reportTo', choices: REPORT_TO, describe: 'report_to: tensorboard writes event files into --logging-dir', commands: TRAIN },
  { name: 'logging-dir', type: 'string', field: 'loggingDir', describe: 'logging_dir (default: <output-dir>/runs/<date>_<host>; a resumed run keeps its own)', commands: TRAIN },
  { name: 'dashboard', type: 'string', describe: 'serve a live page of the run on this port (0 or no value: a free one); printed at start', commands: TRAIN },
  { name: 'dashboard-host', type: 'string', describe: 'address the dashboard listens on (default 127.0.0.1: this machine only; anything else exposes it)', commands: TRAIN },
  { name: 'load-best-model-at-end', type: 'boolean', field: 'loadBestModelAtEnd', describe: 'keep the best checkpoint and load it at the end (saves must match evaluations)', commands: TRAIN },
  { name: 'metric-for-best-model', type: 'string', field: 'metricForBestModel', describe: 'eval metric for the best model (default with --load-best-model-at-end: loss)', commands: TRAIN },
  { name: 'greater-is-better', type: 'boolean', field: 'greaterIsBetter', describe: 'default: true unless the metric ends with "loss"', commands: TRAIN },
  { name: 'early-stopping-patience', type: 'number', describe: 'stop after this many evaluations without improvement (EarlyStoppingCallback; needs --load-best-model-at-end)', commands: TRAIN },
  { name: 'early-stopping-threshold', type: 'number', default: 0, describe: 'the improvement that counts (EarlyStoppingCallback early_stopping_threshold)', commands: TRAIN },
  { name: 'restore-callback-states-from-checkpoint', type: 'boolean', field: 'restoreCallbackStatesFromCheckpoint', describe: 'on a resume, restore early stopping\'s counter from the checkpoint', commands: TRAIN },
  { name: 'eval-on-start', type: 'boolean', field: 'evalOnStart', describe: 'eval_on_start: evaluate once before training', commands: TRAIN },
  { name: 'logging-first-step', type: 'boolean', field: 'loggingFirstStep', describe: 'logging_first_step: log step 1 too', commands: TRAIN },
  { name: 'do-predict', type: 'boolean', describe: 'after training, predict the test split(s) (or --test-file) into predict_results_<task>.txt as run_glue.py', commands: ['train'] },
  { name: 'test-file', type: 'string', describe: 'local data to predict with --do-predict (labels, if any, are ignored)', commands: ['train'] },
  { name: 'push-to-hub', type: 'boolean', field: 'pushToHub', describe: 'push_to_hub: upload the model, tokenizer, results and a model card at the end', commands: TRAIN },
  { name: 'hub-model-id', type: 'string', field: 'hubModelId', describe: 'hub_model_id: "name" or "namespace/name" (default: the output folder\'s name)', commands: TRAIN },
  { name: 'hub-token', type: 'string', field: 'hubToken', describe: 'hub_token (default: HF_TOKEN); never written to training_args.json', commands: TRAIN },
  { name: 'hub-private-repo', type: 'boolean', field: 'hubPrivateRepo', describe: 'hub_private_repo: create the repo private', commands: TRAIN },
  { name: 'hub-strategy', type: 'string', field: 'hubStrategy', choices: HUB_STRATEGIES, describe: 'hub_strategy: end, or every_save (each checkpoint too)', commands: TRAIN },
  { name: 'resume-from-checkpoint', type: 'string', describe: 'a checkpoint folder, or "latest" for the newest in --output-dir', commands: TRAIN },
  { name: 'device', type: 'string', default: 'auto', describe: 'auto, cpu, cuda or cuda:N (with several processes: cpu, or each rank on cuda:LOCAL_RANK)', commands: ALL },
  { name: 'nproc-per-node', type: 'number', describe: 'start this many data-parallel workers on this machine, as torchrun --nproc-per-node (CPU: Gloo; CUDA: NCCL, one GPU each)', commands: DDP },
  { name: 'nnodes', type: 'number', default: 1, describe: 'machines in the job (torchrun --nnodes); run the same command on each with its --node-rank', commands: DDP },
  { name: 'node-rank', type: 'number', default: 0, describe: 'this machine\'s index in the job (torchrun --node-rank)', commands: DDP },
  { name: 'master-addr', type: 'string', default: '127.0.0.1', describe: 'address of node 0, where rank 0 hosts the rendezvous (torchrun --master-addr)', commands: DDP },
  { name: 'master-port', type: 'number', describe: 'rendezvous port on node 0 (default: a free port with one node, else 29500)', commands: DDP },
  { name: 'ddp-timeout', type: 'number', default: DEFAULT_DDP_TIMEOUT, describe: 'ddp_timeout: seconds a rendezvous or collective waits for the other ranks before failing', commands: DDP },
  { name: 'ddp-bucket-cap-mb', type: 'number', default: DEFAULT_BUCKET_CAP_MB, describe: 'ddp_bucket_cap_mb: gradient all-reduce bucket size', commands: DDP },
  { name: 'threads', type: 'number', describe: 'libtorch intra-op threads (default: libtorch\'s choice)', commands: ALL },
  { name: 'json', type: 'boolean', default: false, describe: 'one JSON object per line instead of tables', commands: [...ALL, 'export'] },
  { name: 'revision', type: 'string', default: 'main', describe: 'Hub revision of the model (branch, tag, commit or refs/pr/N)', commands: ALL },
  { name: 'sentence1', type: 'string', array: true, describe: 'first sentence(s)', commands: ['predict'] },
  { name: 'sentence2', type: 'string', array: true, describe: 'second sentence(s), one per --sentence1', commands: ['predict'] },
  { name: 'file', type: 'string', describe: 'a data file of rows to classify (.csv, .tsv, .jsonl, .json, .parquet)', commands: ['predict'] },
  { name: 'text-column-name', type: 'string', describe: 'column of word lists (run_ner text_column_name; default "tokens", else the first column)', commands: ['ner'] },
  { name: 'label-column-name', type: 'string', describe: 'column of tag lists (run_ner label_column_name; default "ner_tags", else the second column)', commands: ['ner'] },
  { name: 'label-all-tokens', type: 'boolean', default: false, describe: 'label every piece of a word, not only the first (B- becomes I- after the first)', commands: ['ner'] },
  { name: 'return-entity-level-metrics', type: 'boolean', default: false, describe: 'report precision, recall, f1 and number per entity type too', commands: ['ner'] },
  { name: 'max-seq-length', type: 'number', describe: 'truncate to this many tokens (run_ner max_seq_length; default: tokenizer model_max_length, capped by the model)', commands: ['ner', 'mlm', 'qa', 'swag'] },
  { name: 'line-by-line', type: 'boolean', default: false, describe: 'each non-empty line is one example (run_mlm line_by_line); else all lines are joined and cut into blocks of --max-seq-length', commands: ['mlm'] },
  { name: 'whole-word-mask', type: 'boolean', default: false, describe: 'mask whole words (runs of tokens with no gap between them), as DataCollatorForLanguageModeling(whole_word_mask=True)', commands: ['mlm'] },
  { name: 'mlm-probability', type: 'number', default: 0.15, describe: 'share of tokens masked (80% [MASK], 10% random, 10% unchanged)', commands: ['mlm'] },
  { name: 'validation-split-percentage', type: 'number', default: 5, describe: 'without --validation-file: the first this many percent of the training lines are the validation split', commands: ['mlm'] },
  { name: 'question', type: 'string', describe: 'question answering: the question (with --context)', commands: ['predict'] },
  { name: 'context', type: 'string', describe: 'question answering: the text to find the answer in', commands: ['predict'] },
  { name: 'top-k', type: 'number', default: 5, describe: 'fill-mask: the likeliest tokens shown per mask', commands: ['predict'] },
  { name: 'doc-stride', type: 'number', describe: 'tokens of overlap between the windows a long context is cut into (run_qa doc_stride; default 128)', commands: ['qa', 'predict', 'evaluate'] },
  { name: 'n-best-size', type: 'number', default: 20, describe: 'start and end candidates per window in post-processing', commands: ['qa'] },
  { name: 'max-answer-length', type: 'number', default: 30, describe: 'longest answer in tokens', commands: ['qa'] },
  { name: 'version-2-with-negative', type: 'boolean', default: false, describe: 'some questions have no answer (SQuAD v2): the null answer competes', commands: ['qa'] },
  { name: 'null-score-diff-threshold', type: 'number', default: 0, describe: 'with --version-2-with-negative: the null answer wins when it beats the best span by more than this', commands: ['qa'] },
  { name: 'pad-to-max-length', type: 'boolean', default: true, describe: 'pad every window to --max-seq-length (run_qa\'s default; --no-pad-to-max-length pads each batch to its longest)', commands: ['qa'] },
  { name: 'question-column-name', type: 'string', describe: 'default "question"', commands: ['qa'] },
  { name: 'context-column-name', type: 'string', describe: 'default "context"', commands: ['qa'] },
  { name: 'answer-column-name', type: 'string', describe: 'default "answers" (text and answer_start lists)', commands: ['qa'] },
  { name: 'split', type: 'string', describe: 'GLUE split (evaluate: default the task\'s validation split; predict: e.g. test)', commands: ['evaluate', 'predict'] },
];

const BY_FIELD = new Map(FLAGS.filter((f) => f.field).map((f) => [f.field!, f]));

/** The flag a TrainingArguments field is set by, as the user typed it: validateArgs names it in messages. */
export function flagOf(field: keyof TrainingArguments): string {
  const f = BY_FIELD.get(field);
  return f ? `--${f.name}` : field;
}

/** yargs options of one command. */
export function yargsOptions(command: Command): Record<string, object> {
  const out: Record<string, object> = {};
  for (const f of FLAGS) {
    if (!f.commands.includes(command)) continue;
    const def = f.defaultFor && command in f.defaultFor ? f.defaultFor[command] : f.field ? DEFAULT_ARGS[f.field] ?? undefined : f.default;
    out[f.name] = { type: f.type, describe: f.describe, ...(def !== undefined && def !== null ? { default: def } : {}), ...(f.choices ? { choices: f.choices } : {}), ...(f.array ? { array: true } : {}) };
  }
  return out;
}

/** Parsed flags, checked: no repeats (but array flags), numbers that are numbers. */
export function checkFlags(a: Record<string, unknown>, command: Command): void {
  for (const f of FLAGS) {
    if (!f.commands.includes(command)) continue;
    const v = a[f.name];
    if (Array.isArray(v) && !f.array) throw new UsageError(`--${f.name} was given more than once`);
    if (f.type === 'number' && v !== undefined && (typeof v !== 'number' || Number.isNaN(v)))
      throw new UsageError(`--${f.name} must be a number, got ${JSON.stringify(process.argv[process.argv.indexOf(`--${f.name}`) + 1] ?? v)}`);
  }
}

/** The TrainingArguments the flags set (flags not given keep DEFAULT_ARGS' values). */
export function trainingArgsOf(a: Record<string, unknown>, command: Command): Partial<TrainingArguments> {
  const args: Record<string, unknown> = {};
  for (const f of FLAGS) if (f.field && f.commands.includes(command) && a[f.name] !== undefined) args[f.field] = a[f.name];
  return args as Partial<TrainingArguments>;
}
