// Property-based fuzzing of every file format the product reads, through the public API: mutated safetensors,
// config.json, tokenizer.json and dataset files. Each case must give a result or an InputError/HubError: no other
// exception, no crash, no hang; a header over the size limit is refused before it is allocated.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { parseSafetensors, MAX_HEADER_BYTES } from '../src/safetensors.js';
import { parseConfig } from '../src/config.js';
import { BertTokenizer } from '../src/tokenizer.js';
import { loadDataFile } from '../src/datasets.js';
import { BertForSequenceClassification } from '../src/model.js';
import { InputError } from '../src/errors.js';
import { HubError } from '../src/hub.js';
import { makeTinyModel } from './fixtures.js';
import { tempDir } from './helpers.js';

let work: { dir: string; cleanup: () => void }, model: string, weights: Buffer;
before(async () => {
  work = tempDir('fuzz-');
  model = await makeTinyModel(path.join(work.dir, 'm'));
  weights = readFileSync(path.join(model, 'model.safetensors'));
});
after(() => work.cleanup());

const expected = (e: unknown) => e instanceof InputError || e instanceof HubError;

/** A mutation of a byte buffer: truncation, bit flips, overwritten spans, or a rewritten header size. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('flip' as const), flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('size' as const), size: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
  fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function mutate(buf: Buffer, m: any): Buffer {
  const b = Buffer.from(buf);
  if (m.kind === 'truncate') return b.subarray(0, m.at % (b.length + 1));
  if (m.kind === 'flip') { for (const [i, bit] of m.flips) b[i % b.length] ^= 1 << bit; return b; }
  if (m.kind === 'size') { b.writeBigUInt64LE(m.size, 0); return b; }
  b.set(m.bytes.subarray(0, Math.max(0, b.length - (m.at % b.length))), m.at % b.length);
  return b;
}

test('mutated safetensors files parse or fail with InputError, never allocate a huge header', () => {
  let parsed = 0;
  fc.assert(fc.property(mutation, (m) => {
    const before = process.memoryUsage().rss;
    try {
      parseSafetensors(mutate(weights, m), 'fuzz.safetensors');
      parsed++;
    } catch (e) {
      if (!expected(e)) throw e;
    }
    assert.ok(process.memoryUsage().rss - before < 2 * MAX_HEADER_BYTES);
  }), { numRuns: 3000, seed: 42 });
  assert.ok(parsed > 0);
});

test('mutated safetensors files that parse still load or fail cleanly in the native model', async () => {
  const dir = path.join(work.dir, 'load');
  await fs.cp(model, dir, { recursive: true });
  await fc.assert(fc.asyncProperty(mutation, async (m) => {
    writeFileSync(path.join(dir, 'model.safetensors'), mutate(weights, m));
    try {
      const loaded = await BertForSequenceClassification.fromPretrained(dir, { device: 'cpu' });
      await loaded.dispose();
    } catch (e) {
      if (!expected(e)) throw e;
    }
  }), { numRuns: 150, seed: 7 });
});

test('random and mutated config.json values give a config or an InputError', () => {
  const base = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8'));
  const field = fc.constantFrom(...Object.keys(base), 'id2label', 'num_labels', 'problem_type', 'classifier_dropout');
  fc.assert(fc.property(fc.oneof(
    fc.jsonValue({ maxDepth: 6 }),
    fc.record({ k: field, v: fc.jsonValue({ maxDepth: 3 }) }).map(({ k, v }) => ({ ...base, [k]: v })),
  ), (raw) => {
    try {
      const c = parseConfig(raw, 'config.json');
      assert.ok(c.hidden_size % c.num_attention_heads === 0 && Object.keys(c.id2label).length >= 1);
    } catch (e) {
      if (!expected(e)) throw e;
    }
  }), { numRuns: 3000, seed: 1 });
  // 200,000-deep JSON parses in V8 (its parser does not recurse) and is then refused as a config.
  const deep = JSON.parse('{"hidden_act":' + '['.repeat(200000) + ']'.repeat(200000) + '}');
  assert.throws(() => parseConfig(deep, 'config.json'), InputError);
});

test('mutated tokenizer.json files load or fail with InputError', async () => {
  const dir = path.join(work.dir, 'tok');
  await fs.cp(model, dir, { recursive: true });
  const tj = readFileSync(path.join(model, 'tokenizer.json'));
  await fc.assert(fc.asyncProperty(mutation, async (m) => {
    writeFileSync(path.join(dir, 'tokenizer.json'), mutate(tj, m));
    try {
      const tok = await BertTokenizer.fromPretrained(dir);
      tok.encode('the cat', 'a dog');
    } catch (e) {
      if (!expected(e)) throw e;
    }
  }), { numRuns: 400, seed: 3 });
});

test('mutated dataset files load or fail with InputError naming the file', async () => {
  const csv = Buffer.from('sentence1,sentence2,label\n"a, b",c,1\nd,e,0\nf,"g ""h""",1\n');
  const tsv = Buffer.from('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta b\tc d\n0\t3\t4\te\tf\n');
  const jsonl = Buffer.from('{"sentence":"a b","label":1}\n{"sentence":"c","label":0}\n');
  for (const [name, buf] of [['f.csv', csv], ['f.tsv', tsv], ['f.jsonl', jsonl]] as const) {
    const file = path.join(work.dir, name);
    await fc.assert(fc.asyncProperty(mutation, async (m) => {
      writeFileSync(file, mutate(buf, m));
      try {
        const d = await loadDataFile(file);
        assert.equal(d.text1.length, d.labels?.length ?? d.text1.length);
      } catch (e) {
        if (!expected(e)) throw e;
        assert.ok((e as Error).message.startsWith(file));
      }
    }), { numRuns: 700, seed: 5 });
  }
});
