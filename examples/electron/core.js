// The app's training and prediction, with no Electron in it: worker.js runs it in a utilityProcess (off the main
// process's event loop); test/electron-example.test.ts runs it under plain Node.
import { BertForSequenceClassification, BertTokenizer, loadDataFile, tokenizeDataset, Trainer } from 'bert-trainer-node';

/** Fine-tunes `model` on a local file (CSV/TSV/JSONL/parquet with sentence1, sentence2, label), saving into `outputDir`. */
export async function train({ model: modelName, dataFile, outputDir, epochs = 3, learningRate = 5e-5, device = 'auto' }, emit) {
  const rows = await loadDataFile(dataFile);
  const tok = await BertTokenizer.fromPretrained(modelName);
  const data = await tokenizeDataset(rows, tok);
  const model = await BertForSequenceClassification.fromPretrained(modelName, { labels: rows.labelNames, device });
  try {
    const trainer = new Trainer({
      model, tokenizer: tok, trainDataset: data,
      args: { outputDir, numTrainEpochs: epochs, learningRate, loggingSteps: 1, saveStrategy: 'no', evalStrategy: 'no' },
      events: {
        progress: (p) => emit({ type: 'progress', step: p.step, maxSteps: p.maxSteps, epoch: p.epoch }),
        log: (e) => { if ('loss' in e) emit({ type: 'loss', step: e.step, loss: e.loss }); },
      },
    });
    const result = await trainer.train();
    await model.save(outputDir);
    await tok.save(outputDir);
    emit({ type: 'done', globalStep: result.globalStep, trainingLoss: result.trainingLoss, outputDir });
    return result;
  } finally {
    await model.dispose();
  }
}

/** Label, label name and probabilities for one sentence pair, from a saved model folder. */
export async function predict(modelDir, sentence1, sentence2) {
  const tok = await BertTokenizer.fromPretrained(modelDir);
  const model = await BertForSequenceClassification.fromPretrained(modelDir, { device: 'auto' });
  try {
    const enc = tok.encode(sentence1, sentence2 || null);
    const n = enc.inputIds.length;
    const { logits } = await model.forward({ shape: [1, n], inputIds: Int32Array.from(enc.inputIds), tokenTypeIds: Int32Array.from(enc.tokenTypeIds) });
    const max = Math.max(...logits), exp = Array.from(logits, (v) => Math.exp(v - max)), sum = exp.reduce((a, b) => a + b, 0);
    const probabilities = exp.map((v) => v / sum), label = probabilities.indexOf(Math.max(...probabilities));
    return { label, labelName: model.config.id2label[String(label)], probabilities };
  } finally {
    await model.dispose();
  }
}
