// One-off check that a checkpoint this product wrote gives the same predictions in Python transformers:
// `node dist/scripts/compare-predictions.js <model-dir> [task]` (GLUE validation split via HF_HOME).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BertForSequenceClassification, BertTokenizer, loadGlue, tokenizeDataset, Trainer } from '../src/index.js';
import { projectPython, root } from './paths.js';

const [dir, task = 'mrpc'] = process.argv.slice(2);
const val = await loadGlue(task, 'validation');
const tok = await BertTokenizer.fromPretrained(dir);
const model = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu' });
const ours = await new Trainer({ model, tokenizer: tok }).predict(await tokenizeDataset(val, tok));
await model.dispose();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'cmp-'));
writeFileSync(path.join(tmp, 'pairs.json'), JSON.stringify(val.text1.map((a, i) => [a, val.text2?.[i] ?? null])));
const python = projectPython();
const py = JSON.parse(execFileSync(python, [path.join(root, 'test', 'python', 'predict_ref.py'), path.resolve(dir), path.join(tmp, 'pairs.json')], { cwd: os.tmpdir(), maxBuffer: 1 << 28 }).toString().trim().split('\n').pop()!);
rmSync(tmp, { recursive: true, force: true });
let diff = 0, maxLogit = 0;
const nl = model.numLabels;
py.predictions.forEach((p: number, i: number) => {
  if (p !== ours.predictions[i]) diff++;
  py.logits[i].forEach((v: number, j: number) => { maxLogit = Math.max(maxLogit, Math.abs(v - ours.logits[i * nl + j])); });
});
console.log(`${dir}: ${val.text1.length} ${task} validation rows; transformers missing keys ${JSON.stringify(py.missing)}, unexpected ${JSON.stringify(py.unexpected)}; ` +
  `${diff} differing predictions; max logit difference ${maxLogit.toExponential(2)}`);
process.exitCode = diff === 0 && py.missing.length === 0 && py.unexpected.length === 0 ? 0 : 1;
