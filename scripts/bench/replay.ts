// Our side of the `replay` workload (see replay_ref.py): does ours train as PyTorch does, or only run as fast?
// `prepare`: the model as ours initialises it for a seed (its new classifier head), saved as a folder transformers
// reads (with and without dropout), and the row order of each epoch as ours shuffles it, for PyTorch to replay.
// `dropout`: the training-mode loss of fixed batches, drawn many times (each draw new dropout masks), weights fixed:
// its mean and spread over draws must be PyTorch's if ours' dropout draws what torch's does.
import fs from 'node:fs';
import path from 'node:path';
import { BertForSequenceClassification } from '../../src/model.js';
import { shuffledOrder } from '../../src/collator.js';
import { loadGlue } from '../../src/datasets.js';
import { fileSource } from '../../src/hub.js';

const [mode, spec] = [process.argv[2], JSON.parse(process.argv[3])];

const DROPOUT_KEYS = ['hidden_dropout_prob', 'attention_probs_dropout_prob', 'classifier_dropout'];
const readConfig = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));

/** A copy of a model folder's files with its config's dropout probabilities taken from `dropout`. */
function copyWithDropout(from: string, to: string, dropout: Record<string, number | null>): void {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) if (fs.statSync(path.join(from, f)).isFile()) fs.copyFileSync(path.join(from, f), path.join(to, f));
  fs.writeFileSync(path.join(to, 'config.json'), JSON.stringify({ ...readConfig(to), ...dropout }, null, 2));
}

if (mode === 'prepare') {
  const { dir, model, seed, epochs } = spec as { dir: string; model: string; seed: number; epochs: number };
  const m = await BertForSequenceClassification.fromPretrained(model, { device: 'cpu', seed });
  const init = path.join(dir, 'init');
  fs.mkdirSync(init, { recursive: true });
  await m.save(init);
  await m.dispose();
  const src = await fileSource(model);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json']) {
    const file = await src.get(f, true);
    if (file) fs.copyFileSync(file, path.join(init, f));
  }
  copyWithDropout(init, path.join(dir, 'init-nodrop'), Object.fromEntries(DROPOUT_KEYS.map((k) => [k, 0])));
  const rows = (await loadGlue('mrpc', 'train')).text1.length;
  const orders = Array.from({ length: epochs }, (_, e) => Array.from(shuffledOrder(rows, seed, e)));
  fs.writeFileSync(path.join(dir, 'orders.json'), JSON.stringify(orders));
  console.log(JSON.stringify({ rows }));
} else if (mode === 'dropout') {
  // `trained`: a model trained without dropout (its loss is no longer flat at ln 2); `model` gets its weights with
  // the dropout of `init` (the pretrained config's), and PyTorch's side reads the same folder.
  const { init, trained, model, batches, draws, threads, seed } = spec as { init: string; trained: string; model: string; batches: string; draws: number; threads: number; seed: number };
  const pretrained = readConfig(init);
  copyWithDropout(trained, model, Object.fromEntries(DROPOUT_KEYS.map((k) => [k, pretrained[k] ?? null])));
  const m = await BertForSequenceClassification.fromPretrained(model, { device: 'cpu', threads, seed });
  await m.seed(seed);
  const bs = JSON.parse(fs.readFileSync(batches, 'utf8')) as { input_ids: number[][]; token_type_ids: number[][]; attention_mask: number[][]; labels: number[] }[];
  const losses: number[][] = [];
  for (let k = 0; k < draws; k++) {
    const row: number[] = [];
    for (const b of bs) {
      const batch = { shape: [b.input_ids.length, b.input_ids[0].length] as [number, number], inputIds: Int32Array.from(b.input_ids.flat()),
        attentionMask: Int32Array.from(b.attention_mask.flat()), tokenTypeIds: Int32Array.from(b.token_type_ids.flat()), labels: Int32Array.from(b.labels) };
      row.push(await m.trainStep(batch, { lossScale: 1, sync: true }));
    }
    await m.zeroGrad();  // gradients are not the point: no step is taken
    losses.push(row);
  }
  await m.dispose();
  console.log(JSON.stringify({ losses }));
} else {
  throw new Error(`mode must be prepare or dropout, got ${mode}`);
}
