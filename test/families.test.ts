// The families beyond BERT end to end: their tokenizers against transformers' fast tokenizer (byte-level BPE with
// RoBERTa's post-processor and with ModernBERT's [CLS] [SEP] template, Unigram with XLM-RoBERTa's template and with
// DeBERTa-v3's [CLS] [SEP] and token types; pairs, truncation, several scripts), and
// `node train.js --model <folder>` fine-tuning and evaluating a tiny checkpoint of each family, whose saved folder
// transformers reads back with the same outputs. (Every head's numbers against transformers: test/heads.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BertTokenizer } from '../src/tokenizer.js';
import { BertForSequenceClassification, BertPreTrainedModel } from '../src/model.js';
import { parseConfig } from '../src/config.js';
import { readSafetensors, writeSafetensors } from '../src/safetensors.js';
import { hfRef, runCli, tempDir } from './helpers.js';
import { makePairs, TINY_TRAIN_CONFIG, TOPICS, VOCAB } from './fixtures.js';

// Text in several scripts, accents, digits, punctuation, runs of spaces and an emoji.
const MULTILINGUAL = [
  'The quick brown fox jumps over the lazy dog.', 'Größe und Übermaß: 3,5 Äpfel!', "C'est déjà l'été à Paris.", 'Привет, как дела?',
  '日本語のテキストと漢字', 'naïve café — coöperate', 'numbers 12345 and 3.14', 'emoji 😀 here', '  spaced   out  ', 'ελληνικά γράμματα',
  'العربية نص', 'mixed CASE Words', 'tabs\tand\nnewlines',
];
const corpus = () => [...MULTILINGUAL, ...makePairs(200, 5).sentence1, ...makePairs(200, 6).sentence2];

const KINDS = { bpe: 'byte-level BPE (RoBERTa)', unigram: 'Unigram (XLM-RoBERTa)', 'bpe-cls': 'byte-level BPE with [CLS] [SEP] (ModernBERT)',
  'unigram-cls': 'Unigram with [CLS] [SEP] and token types (DeBERTa-v3)' } as const;
for (const kind of Object.keys(KINDS) as Array<keyof typeof KINDS>)
test(`${KINDS[kind]} tokenizer: the same ids and token types as transformers' fast tokenizer, single and pairs, with truncation`, async () => {
  const { dir, cleanup } = tempDir('family-tok-');
  try {
    await hfRef('make-tokenizer', { dir, kind, texts: corpus() });
    const tok = await BertTokenizer.fromPretrained(dir);
    const a = [...MULTILINGUAL, ...makePairs(30, 9).sentence1], b = [...MULTILINGUAL].reverse().concat(makePairs(30, 9).sentence2);
    for (const maxLength of [7, 12, 64]) {
      for (const pair of [false, true]) {
        const ref = await hfRef('tokenize-pairs', { dir, text1: a, text2: pair ? b : null, maxLength });
        const ours = tok.encodeBatch(a, pair ? b : null, { maxLength });
        for (let i = 0; i < a.length; i++) {
          const ids = Array.from(ours.ids.subarray(ours.offsets[i], ours.offsets[i + 1]));
          const types = Array.from(ours.typeIds.subarray(ours.offsets[i], ours.offsets[i + 1]));
          assert.deepEqual(ids, ref.ids[i], `${kind} ${pair ? 'pair' : 'single'} ${i} (max ${maxLength}): ${JSON.stringify([a[i], pair ? b[i] : null])}`);
          assert.deepEqual(types, ref.typeIds[i], `${kind} token types ${i}`);
        }
      }
    }
  } finally {
    cleanup();
  }
});

/** A tiny pretrained-style checkpoint of `modelType` (no classifier), with its tokenizer, in its config class's names. */
async function makeFamilyModel(dir: string, modelType: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  let config: Record<string, unknown>;
  if (modelType === 'roberta' || modelType === 'xlm-roberta') {
    const t = await hfRef('make-tokenizer', { dir, kind: modelType === 'roberta' ? 'bpe' : 'unigram', texts: corpus(), maxLength: 64 });
    config = { ...TINY_TRAIN_CONFIG, model_type: modelType, vocab_size: t.vocabSize, pad_token_id: t.padId, type_vocab_size: 1, max_position_embeddings: 66 };
  } else if (modelType === 'modernbert') {
    // A window of 8 on every other layer: the pairs here are 12-20 tokens long, so local layers are local.
    const t = await hfRef('make-tokenizer', { dir, kind: 'bpe-cls', texts: corpus(), maxLength: 64 });
    config = { model_type: 'modernbert', vocab_size: t.vocabSize, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 48,
      max_position_embeddings: 64, pad_token_id: t.padId, cls_token_id: t.clsId, sep_token_id: t.sepId, bos_token_id: t.clsId, eos_token_id: t.sepId,
      local_attention: 8, global_attn_every_n_layers: 2 };
  } else if (modelType === 'deberta-v2') {
    // DeBERTa-v3's shape: a Unigram tokenizer with [CLS] [SEP], relative positions in buckets, shared keys.
    const t = await hfRef('make-tokenizer', { dir, kind: 'unigram-cls', texts: corpus(), maxLength: 64 });
    config = { model_type: 'deberta-v2', vocab_size: t.vocabSize, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 48,
      max_position_embeddings: 64, pad_token_id: t.padId, type_vocab_size: 0, relative_attention: true, position_buckets: 16, share_att_key: true,
      pos_att_type: 'p2c|c2p', norm_rel_ebd: 'layer_norm', position_biased_input: false };
  } else {
    const tokConfig = { do_lower_case: true, model_max_length: 64, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]' };
    await fs.writeFile(path.join(dir, 'vocab.txt'), VOCAB.join('\n') + '\n');
    await fs.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokConfig));
    config = modelType === 'electra' ? { ...TINY_TRAIN_CONFIG, model_type: 'electra', embedding_size: 16 }
      : { model_type: 'distilbert', vocab_size: VOCAB.length, dim: 32, n_layers: 2, n_heads: 4, hidden_dim: 37, max_position_embeddings: 64 };
  }
  const m = await BertForSequenceClassification.fromConfig(parseConfig(config, `${modelType} config`), { device: 'cpu', seed: 3 });
  await m.save(dir);
  await m.dispose();
  // As a pretrained checkpoint: the encoder only, its class named as the family's masked LM.
  const file = path.join(dir, 'model.safetensors');
  const base = `${{ 'xlm-roberta': 'roberta', modernbert: 'model', 'deberta-v2': 'deberta' }[modelType] ?? modelType}.`;
  await writeSafetensors(file, (await readSafetensors(file)).tensors.filter((t) => t.name.startsWith(base)), { format: 'pt' });
  const cfg = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
  cfg.architectures = [`${{ roberta: 'Roberta', 'xlm-roberta': 'XLMRoberta', electra: 'Electra', distilbert: 'DistilBert', modernbert: 'ModernBert', 'deberta-v2': 'DebertaV2' }[modelType]}ForMaskedLM`];
  delete cfg.id2label; delete cfg.label2id; delete cfg.problem_type;
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
}

/** Pairs whose label is whether the first sentence names an animal: quick to learn for a tiny random model. */
async function pairsCsv(dir: string, name: string, n: number, seed: number): Promise<string> {
  const p = makePairs(n, seed), file = path.join(dir, name);
  const rows = p.sentence1.map((s, i) => `"${s}","${p.sentence2[i]}",${TOPICS.slice(0, 4).some((t) => s.split(' ').includes(t)) ? 1 : 0}`);
  await fs.writeFile(file, `sentence1,sentence2,label\n${rows.join('\n')}\n`);
  return file;
}

for (const modelType of ['roberta', 'xlm-roberta', 'electra', 'distilbert', 'modernbert', 'deberta-v2'])
test(`node train.js --model <a ${modelType} folder> fine-tunes and evaluates; transformers reads the result back`, async () => {
  const { dir, cleanup } = tempDir(`family-${modelType}-`);
  try {
    const model = path.join(dir, modelType), out = path.join(dir, 'out');
    await makeFamilyModel(model, modelType);
    const r = await runCli(['--model', model, '--train-file', await pairsCsv(dir, 'train.csv', 160, 1), '--validation-file', await pairsCsv(dir, 'val.csv', 60, 2), '--epochs', '10',
      '--learning-rate', '2e-3', '--batch-size', '8', '--threads', '1', '--device', 'cpu', '--output-dir', out, '--save-strategy', 'no', '--json'], { HF_HUB_OFFLINE: '1' });
    assert.equal(r.code, 0, r.stderr);
    const results = JSON.parse(await fs.readFile(path.join(out, 'all_results.json'), 'utf8'));
    const saved = JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8'));
    console.log(`${modelType}: eval accuracy ${results.eval_accuracy}, loss ${results.eval_loss}; saved as ${saved.architectures[0]}`);
    assert.ok(results.eval_accuracy > 0.8, JSON.stringify(results));
    assert.equal(saved.model_type, modelType);
    if (modelType === 'distilbert') assert.ok(saved.dim === 32 && saved.hidden_size === undefined, 'DistilBERT keeps its own field names');

    // The saved folder through AutoModelForSequenceClassification: its class, no missing or unexpected keys, our logits.
    const tok = await BertTokenizer.fromPretrained(out);
    const pairs = makePairs(4, 11);
    const enc = tok.encodeBatch(pairs.sentence1, pairs.sentence2);
    const seq = Math.max(...Array.from({ length: 4 }, (_, i) => enc.offsets[i + 1] - enc.offsets[i]));
    const inputIds = new Int32Array(4 * seq).fill(tok.padId), attentionMask = new Int32Array(4 * seq), tokenTypeIds = new Int32Array(4 * seq);
    for (let i = 0; i < 4; i++)
      for (let j = enc.offsets[i]; j < enc.offsets[i + 1]; j++) {
        const k = i * seq + j - enc.offsets[i];
        inputIds[k] = enc.ids[j]; attentionMask[k] = 1; tokenTypeIds[k] = enc.typeIds[j];
      }
    const ours = await BertPreTrainedModel.fromPretrained(out, { device: 'cpu', threads: 1 });
    const logits = (await ours.forward({ shape: [4, seq], inputIds, attentionMask, tokenTypeIds })).logits!;
    await ours.dispose();
    const check = await hfRef('head-check-saved', { dir: out, architecture: saved.architectures[0],
      batch: { shape: [4, seq], inputIds: [...inputIds], attentionMask: [...attentionMask], tokenTypeIds: [...tokenTypeIds], labels: [0, 1, 0, 1] } });
    assert.equal(check.class, saved.architectures[0]);
    assert.deepEqual([check.missing, check.unexpected, check.mismatched], [[], [], []]);
    const d = Math.max(...Array.from(logits, (v, i) => Math.abs(v - check.logits[i])));
    assert.ok(d <= 1e-5, `transformers' logits differ by ${d}`);
  } finally {
    cleanup();
  }
});

// The families with attention of their own (rotary and window masks; relative-position scores) under --bf16, on both
// CPU paths: oneDNN's prepacked bf16 weights where it has bf16 kernels, and plain autocast as on a CPU without them
// (ONEDNN_MAX_CPU_ISA=AVX2 with ATen's AVX2 kernels, as test/trainer.test.ts forces it for BERT).
for (const modelType of ['modernbert', 'deberta-v2'])
test(`node train.js --bf16 trains and evaluates a ${modelType} checkpoint on both CPU paths (prepacked bf16, and AVX2's plain autocast)`, async () => {
  const { dir, cleanup } = tempDir(`family-bf16-${modelType}-`);
  try {
    const model = path.join(dir, modelType);
    await makeFamilyModel(model, modelType);
    const train = await pairsCsv(dir, 'train.csv', 64, 1), val = await pairsCsv(dir, 'val.csv', 24, 2);
    const paths: Array<Record<string, string>> = [{}, { ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' }];
    for (const env of paths) {
      const r = await runCli(['--model', model, '--train-file', train, '--validation-file', val, '--epochs', '2', '--bf16', '--learning-rate', '2e-3', '--batch-size', '8',
        '--threads', '1', '--device', 'cpu', '--output-dir', path.join(dir, `out-${Object.keys(env).length}`), '--save-strategy', 'no', '--logging-steps', '4', '--json'],
      { HF_HUB_OFFLINE: '1', ...env });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      const losses = lines.filter((l) => 'loss' in l && 'step' in l).map((l) => l.loss), evals = lines.filter((l) => 'eval_loss' in l);
      console.log(`${modelType} --bf16 ${JSON.stringify(env)}: training loss ${losses.map((l: number) => l.toFixed(3)).join(', ')}; eval loss ${evals.map((e) => e.eval_loss.toFixed(3)).join(', ')}`);
      assert.equal(evals.length, 2);
      assert.ok(losses.length > 0 && [...losses, ...evals.map((e) => e.eval_loss)].every(Number.isFinite), r.stdout);
    }
  } finally {
    cleanup();
  }
});
