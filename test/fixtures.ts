// Tiny models, tokenizers and data generated on the spot, so tests need neither ../shared nor a network.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { BertForSequenceClassification } from '../src/model.js';
import { parseConfig } from '../src/config.js';
import { wordPieceFromVocab } from '../src/tokenizer.js';
import { readSafetensors, writeSafetensors } from '../src/safetensors.js';
import { TINY } from './helpers.js';

export const TOPICS = ['cat', 'dog', 'bird', 'fish', 'car', 'bus', 'train', 'boat'];
const FILLER = ['the', 'a', 'saw', 'likes', 'near', 'big', 'small', 'red', 'blue', 'runs', 'fast', 'slow', 'today', 'again', 'and', 'with', 'green', 'old'];
export const VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '.', ',', ...TOPICS, ...FILLER, '##s', '##ed', '##ing'];

export const TINY_TRAIN_CONFIG = {
  vocab_size: VOCAB.length, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 37,
  max_position_embeddings: 64, type_vocab_size: 2, model_type: 'bert',
};

/** A BERT checkpoint folder: config.json, model.safetensors, vocab.txt, tokenizer.json, tokenizer_config.json. */
export async function makeTinyModel(dir: string, seed = 7, extra: Record<string, unknown> = {}): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const config = parseConfig({ ...TINY_TRAIN_CONFIG, ...extra }, 'tiny config');
  const m = await BertForSequenceClassification.fromConfig(config, { device: 'cpu', seed });
  await m.save(dir);
  await m.dispose();
  // Keep only the encoder, as a pretrained checkpoint (bert-base-uncased) has no classifier head.
  const file = path.join(dir, 'model.safetensors');
  const { tensors } = await readSafetensors(file);
  await writeSafetensors(file, tensors.filter((t) => !t.name.startsWith('classifier.')), { format: 'pt' });
  const cfg = JSON.parse(await fs.readFile(path.join(dir, 'config.json'), 'utf8'));
  cfg.architectures = ['BertForMaskedLM'];
  delete cfg.id2label; delete cfg.label2id; delete cfg.problem_type;
  await fs.writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const tokConfig = { do_lower_case: true, model_max_length: 64, cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: '[MASK]', tokenizer_class: 'BertTokenizer' };
  await fs.writeFile(path.join(dir, 'vocab.txt'), VOCAB.join('\n') + '\n');
  await fs.writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokConfig));
  await fs.writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(wordPieceFromVocab(VOCAB.join('\n'), 'vocab', tokConfig)));
  return dir;
}

/** Sentence pairs with a learnable rule: label 1 when both sentences name the same topic. */
export function makePairs(n: number, seed = 1) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = <T>(a: T[]) => a[Math.floor(rnd() * a.length)];
  const sentence = (topic: string) => {
    const words = [pick(FILLER), topic, pick(FILLER), pick(FILLER)];
    if (rnd() < 0.5) words.push(pick(FILLER), pick(FILLER));
    return words.join(' ') + ' .';
  };
  const sentence1: string[] = [], sentence2: string[] = [], label: number[] = [];
  for (let i = 0; i < n; i++) {
    const t1 = pick(TOPICS), same = rnd() < 0.5, t2 = same ? t1 : pick(TOPICS.filter((t) => t !== t1));
    sentence1.push(sentence(t1));
    sentence2.push(sentence(t2));
    label.push(same ? 1 : 0);
  }
  return { sentence1, sentence2, label };
}

export function glueParquet(rows: { sentence1: string[]; sentence2: string[]; label: number[] }): ArrayBuffer {
  const features = { sentence1: { dtype: 'string', _type: 'Value' }, sentence2: { dtype: 'string', _type: 'Value' },
    label: { names: ['not_equivalent', 'equivalent'], _type: 'ClassLabel' }, idx: { dtype: 'int32', _type: 'Value' } };
  return parquetWriteBuffer({
    columnData: [
      { name: 'sentence1', data: rows.sentence1, type: 'STRING' },
      { name: 'sentence2', data: rows.sentence2, type: 'STRING' },
      { name: 'label', data: rows.label.map(BigInt), type: 'INT64' },
      { name: 'idx', data: rows.label.map((_, i) => i), type: 'INT32' },
    ],
    kvMetadata: [{ key: 'huggingface', value: JSON.stringify({ info: { features } }) }],
  });
}

/** An HF home whose hub cache holds nyu-mll/glue mrpc (tiny) and the tiny model as `tiny/bert`. */
export async function makeHfHome(home: string, o: { train?: number; validation?: number } = {}): Promise<string> {
  const hub = path.join(home, 'hub');
  const commit = createHash('sha1').update('glue').digest('hex');
  const glue = path.join(hub, 'datasets--nyu-mll--glue');
  await fs.mkdir(path.join(glue, 'snapshots', commit, 'mrpc'), { recursive: true });
  await fs.mkdir(path.join(glue, 'refs'), { recursive: true });
  await fs.writeFile(path.join(glue, 'refs', 'main'), commit);
  const splits = { train: makePairs(o.train ?? 96, 1), validation: makePairs(o.validation ?? 40, 2), test: makePairs(20, 3) };
  splits.test.label = splits.test.label.map(() => -1);
  for (const [split, rows] of Object.entries(splits))
    await fs.writeFile(path.join(glue, 'snapshots', commit, 'mrpc', `${split}-00000-of-00001.parquet`), Buffer.from(glueParquet(rows)));
  const mcommit = createHash('sha1').update('tiny').digest('hex');
  const model = path.join(hub, 'models--tiny--bert');
  await makeTinyModel(path.join(model, 'snapshots', mcommit));
  await fs.mkdir(path.join(model, 'refs'), { recursive: true });
  await fs.writeFile(path.join(model, 'refs', 'main'), mcommit);
  return home;
}

/**
 * Word-level NER rows (run_ner.py's layout: "tokens" and "ner_tags" as tag names): animals and vehicles are
 * entities, an adjective before one opens it (B- then I-), the rest is O. Learnable by a tiny model.
 */
export function makeNerRows(n: number, seed = 1): Array<{ tokens: string[]; ner_tags: string[] }> {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = <T>(a: T[]) => a[Math.floor(rnd() * a.length)];
  const adjectives = ['big', 'small', 'red', 'blue', 'green', 'old'], verbs = ['saw', 'likes', 'runs', 'near', 'with', 'and'];
  const rows: Array<{ tokens: string[]; ner_tags: string[] }> = [];
  for (let i = 0; i < n; i++) {
    const tokens: string[] = [], tags: string[] = [];
    const entity = () => {
      const topic = pick(TOPICS), type = TOPICS.indexOf(topic) < 4 ? 'ANIMAL' : 'VEHICLE';
      if (rnd() < 0.4) { tokens.push(pick(adjectives), topic); tags.push(`B-${type}`, `I-${type}`); } else { tokens.push(topic); tags.push(`B-${type}`); }
    };
    tokens.push(pick(['the', 'a'])); tags.push('O');
    entity();
    tokens.push(pick(verbs)); tags.push('O');
    if (rnd() < 0.7) entity(); else { tokens.push(pick(['today', 'again', 'fast'])); tags.push('O'); }
    tokens.push('.'); tags.push('O');
    rows.push({ tokens, ner_tags: tags });
  }
  return rows;
}

/**
 * SQuAD-format examples (flat rows, as the Hub's squad files): a context of sentences "the X saw the Y ." with
 * distinct X, the question "X saw", the answer Y with its character start. Learnable by a tiny model.
 */
export function makeQaRows(n: number, seed = 1): Array<{ id: string; question: string; context: string; answers: { text: string[]; answer_start: number[] } }> {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const subjects = [...TOPICS].sort(() => rnd() - 0.5).slice(0, 3 + Math.floor(rnd() * 3));
    const sentences = subjects.map((x) => ({ x, y: TOPICS[Math.floor(rnd() * TOPICS.length)] }));
    let context = '';
    const starts: number[] = [];
    for (const { x, y } of sentences) {
      context += `the ${x} saw the `;
      starts.push(context.length);
      context += `${y} . `;
    }
    const k = Math.floor(rnd() * sentences.length);
    rows.push({ id: `q${i}`, question: `${sentences[k].x} saw`, context: context.trim(), answers: { text: [sentences[k].y], answer_start: [starts[k]] } });
  }
  return rows;
}

/** SWAG-format rows (sent1, sent2, ending0..3, label): "the X saw" / "the" + endings; the right one names X. */
export function makeSwagRows(n: number, seed = 1): Array<Record<string, string | number>> {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  return Array.from({ length: n }, () => {
    const x = TOPICS[Math.floor(rnd() * TOPICS.length)], label = Math.floor(rnd() * 4);
    const others = TOPICS.filter((t) => t !== x).sort(() => rnd() - 0.5);
    const row: Record<string, string | number> = { sent1: `the ${x} saw`, sent2: 'the', label };
    for (let c = 0; c < 4; c++) row[`ending${c}`] = `${c === label ? x : others[c]} .`;
    return row;
  });
}

// Each family's tiny configuration, in its config class's own field names.
export const ROBERTA = { ...TINY, type_vocab_size: 1, pad_token_id: 1, max_position_embeddings: 40 };
export const DISTILBERT = { vocab_size: 100, dim: 32, n_layers: 2, n_heads: 4, hidden_dim: 37, max_position_embeddings: 64, dropout: 0, attention_dropout: 0,
  qa_dropout: 0, seq_classif_dropout: 0, num_labels: 2 };
// ModernBERT: 3 layers, the first global, the others a window of 4 (|i - j| <= 2: the 9-token rows need it, and a
// padded row's last positions see no real token in it); then every bias and mean pooling.
export const MODERNBERT = { vocab_size: 100, hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4, intermediate_size: 37, max_position_embeddings: 64,
  pad_token_id: 0, bos_token_id: 2, eos_token_id: 3, cls_token_id: 2, sep_token_id: 3, local_attention: 4, global_rope_theta: 1000, local_rope_theta: 50 };
// DeBERTa: v3's shape (relative positions in buckets, shared keys, both score kinds, no absolute positions, the rel
// table LayerNorm'd); then v2's (unshared pos_key_proj/pos_query_proj, no buckets, absolute positions, token types,
// a smaller embedding projected).
export const DEBERTA_V3 = { ...TINY, type_vocab_size: 0, relative_attention: true, position_buckets: 8, max_relative_positions: -1, share_att_key: true,
  pos_att_type: 'p2c|c2p', norm_rel_ebd: 'layer_norm', position_biased_input: false, max_position_embeddings: 64 };
export const DEBERTA_V2 = { ...TINY, relative_attention: true, max_relative_positions: 6, pos_att_type: ['c2p', 'p2c'], share_att_key: false, embedding_size: 16 };
