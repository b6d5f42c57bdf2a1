// push_to_hub: the trained model, its tokenizer and config, the results and a model card, uploaded to a Hub model
// repo with @huggingface/hub's commit API (small files inline, weights through LFS), as Trainer.push_to_hub does.
// An upload only reads the local files: a failed one leaves them as they were.
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { commit, createRepo, HubApiError, whoAmI } from '@huggingface/hub';
import { hubEndpoint, hubToken, maskToken, validateRepoId } from './hub.js';
import { UsageError } from './errors.js';
import type { TrainingArguments } from './training-args.js';
import type { LogEntry } from './trainer-callback.js';


export interface PushOptions {
  /** "name" (under the token's user) or "namespace/name"; default: the output folder's name. */
  hubModelId?: string;
  /** Default: HF_TOKEN. */
  token?: string;
  private?: boolean;
  /** Default: HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
}

/** The files of a trained model folder that go to the Hub (checkpoints and hidden files stay local). */
const PUSHED = /^(model\.safetensors|config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|vocab\.txt|README\.md|training_args\.json|(all|train|eval)_results\.json|trainer_state\.json|predict_results_.*\.txt)$/;

/** The token an upload uses (the option, else HF_TOKEN), or a usage error saying where to put one. */
export function requireHubToken(o: { token?: string }): string {
  const token = hubToken(o);
  if (!token) throw new UsageError('--push-to-hub needs a token: --hub-token or HF_TOKEN (write access)');
  return token;
}

/** "namespace/name" for hubModelId, asking the Hub who the token belongs to when no namespace is given. */
export async function resolveRepoId(o: PushOptions, outputDir: string): Promise<string> {
  const id = o.hubModelId ?? path.basename(path.resolve(outputDir));
  if (id.includes('/')) {
    validateRepoId(id);
    return id;
  }
  const accessToken = requireHubToken(o);
  const me = await whoAmI({ accessToken, hubUrl: hubEndpoint(o) }).catch((e) => {
    throw new Error(`push to the Hub: cannot ask ${hubEndpoint(o)} whose token this is (${maskToken((e as Error).message, accessToken)}); name the repo as --hub-model-id namespace/name`);
  });
  const repo = `${me.name}/${id}`;
  validateRepoId(repo);
  return repo;
}

/**
 * Uploads `folder`'s model files to `repo` in one commit, creating the repo if needed (exist_ok, as the Trainer's
 * create_repo). Returns the commit's URL. Errors name the repo and say the local files are intact.
 */
export async function pushFolder(folder: string, repo: string, message: string, o: PushOptions): Promise<string | undefined> {
  const accessToken = requireHubToken(o), hubUrl = hubEndpoint(o);
  const fail = (e: unknown): never => {
    const status = e instanceof HubApiError ? ` (HTTP ${e.statusCode})` : '';
    throw new Error(`push to ${hubUrl}/${repo} failed${status}: ${maskToken((e as Error).message.split('\n')[0], accessToken)}; the local files in ${folder} are intact`);
  };
  try {
    await createRepo({ repo: { type: 'model', name: repo }, accessToken, hubUrl, private: o.private });
  } catch (e) {
    if (!(e instanceof HubApiError && e.statusCode === 409)) fail(e);  // 409: it exists already, which is fine
  }
  const names = (await fs.readdir(folder)).filter((n) => PUSHED.test(n)).sort();
  const operations = await Promise.all(names.map(async (n) => ({
    operation: 'addOrUpdate' as const, path: n, content: new Blob([await fs.readFile(path.join(folder, n))]),
  })));
  try {
    const out = await commit({ repo: { type: 'model', name: repo }, accessToken, hubUrl, title: message, operations, useXet: false });
    return out?.commit.url;
  } catch (e) {
    return fail(e);
  }
}

/** README.md as the Trainer's model card: metadata for the Hub, the results, the hyperparameters, the framework. */
export function modelCard(o: { repo: string; baseModel: string; task?: string; args: TrainingArguments; logHistory: LogEntry[]; torchVersion: string; packageVersion: string }): string {
  const evals = o.logHistory.filter((e) => 'eval_loss' in e);
  const last = evals[evals.length - 1] ?? {};
  const metrics = Object.keys(last).filter((k) => k.startsWith('eval_') && !/_(runtime|per_second)$/.test(k) && k !== 'eval_loss').map((k) => k.slice(5));
  const name = o.repo.split('/').pop()!;
  // A local folder is no Hub id: the card names it without claiming a base_model link.
  const onHub = /^[\w.-]+(\/[\w.-]+)?$/.test(o.baseModel) && !existsSync(o.baseModel);
  const yaml = [
    '---', 'library_name: transformers', ...(onHub ? [`base_model: ${o.baseModel}`] : []), 'tags:', '- generated_from_trainer', '- bert-trainer-node',
    ...(o.task ? ['datasets:', '- glue'] : []), ...(metrics.length ? ['metrics:', ...metrics.map((m) => `- ${m}`)] : []),
    'model-index:', `- name: ${name}`, o.task ? '  results:' : '  results: []', ...(o.task ? [
      '  - task:', '      type: text-classification', '      name: Text Classification', '    dataset:', '      name: GLUE',
      `      type: glue`, `      config: ${o.task}`, `      split: validation`, `      args: ${o.task}`, '    metrics:',
      ...metrics.map((m) => `    - type: ${m}\n      value: ${last[`eval_${m}`]}\n      name: ${m[0].toUpperCase()}${m.slice(1)}`),
    ] : []), '---', ''];
  const table = ['| Training Loss | Epoch | Step | Validation Loss |' + metrics.map((m) => ` ${m} |`).join(''), '|---|---|---|---|' + metrics.map(() => '---|').join('')];
  let lastLoss = 'No log';
  for (const e of o.logHistory) {
    if ('loss' in e) lastLoss = String(e.loss);
    if ('eval_loss' in e) table.push(`| ${lastLoss} | ${e.epoch} | ${e.step} | ${e.eval_loss} |` + metrics.map((m) => ` ${e[`eval_${m}`]} |`).join(''));
  }
  const a = o.args;
  return [...yaml,
    `# ${name}`, '',
    `This model is a fine-tuned version of ${onHub ? `[${o.baseModel}](https://huggingface.co/${o.baseModel})` : `\`${path.basename(o.baseModel)}\``}${o.task ? ` on the GLUE ${o.task} dataset` : ''}, trained with bert-trainer-node (a Node.js port of the Hugging Face Trainer).`,
    ...(evals.length ? ['It achieves the following results on the evaluation set:', `- Loss: ${last.eval_loss}`, ...metrics.map((m) => `- ${m[0].toUpperCase()}${m.slice(1)}: ${last[`eval_${m}`]}`)] : []), '',
    '## Training hyperparameters', '',
    `- learning_rate: ${a.learningRate}`, `- train_batch_size: ${a.perDeviceTrainBatchSize}`, `- eval_batch_size: ${a.perDeviceEvalBatchSize}`, `- seed: ${a.seed}`,
    ...(a.gradientAccumulationSteps > 1 ? [`- gradient_accumulation_steps: ${a.gradientAccumulationSteps}`] : []),
    `- optimizer: ${a.optim}${a.optim.startsWith('adamw') ? ` with betas=(${a.adamBeta1},${a.adamBeta2}) and epsilon=${a.adamEpsilon}` : ''}${a.optimArgs ? ` and optimizer_args=${a.optimArgs}` : ''}`,
    `- lr_scheduler_type: ${a.lrSchedulerType}`, ...(a.warmupSteps || a.warmupRatio ? [`- lr_scheduler_warmup: ${a.warmupSteps || a.warmupRatio}`] : []),
    a.maxSteps > 0 ? `- training_steps: ${a.maxSteps}` : `- num_epochs: ${a.numTrainEpochs}`,
    ...(a.labelSmoothingFactor ? [`- label_smoothing_factor: ${a.labelSmoothingFactor}`] : []), ...(a.bf16 ? ['- mixed_precision_training: bf16 autocast'] : []), '',
    '## Training results', '', ...table, '',
    '## Framework versions', '', `- bert-trainer-node ${o.packageVersion}`, `- libtorch ${o.torchVersion}`, `- Node.js ${process.version}`, ''].join('\n');
}
