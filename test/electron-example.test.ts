// examples/electron without Electron (its binary cannot be downloaded here): the app's core trains and predicts
// under plain Node, and its page runs in headless Chromium fed the same events by a stand-in for preload.cjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { makePairs, makeTinyModel } from './fixtures.js';
import { chromium, root, tempDir } from './helpers.js';

const example = path.join(root, 'examples', 'electron');
let work: { dir: string; cleanup: () => void };
const events: Array<Record<string, unknown>> = [];
let prediction: { label: number; labelName: string; probabilities: number[] };
let trained: string;

before(async () => {
  work = tempDir('electron-example-');
  // The example depends on the library as `bert-trainer-node`: link it to this checkout (npm install would).
  const link = path.join(example, 'node_modules', 'bert-trainer-node');
  if (!existsSync(link)) { mkdirSync(path.dirname(link), { recursive: true }); symlinkSync(path.relative(path.dirname(link), root), link); }
});
after(() => work.cleanup());

test('the example app\'s core (what its utilityProcess runs) trains with progress and loss events, then predicts, under plain Node', async () => {
  const model = await makeTinyModel(path.join(work.dir, 'model'));
  const rows = makePairs(32, 4);
  const data = path.join(work.dir, 'train.csv');
  writeFileSync(data, 'sentence1,sentence2,label\n' + rows.sentence1.map((s, i) => `${s},${rows.sentence2[i]},${rows.label[i] ? 'same' : 'different'}`).join('\n') + '\n');
  trained = path.join(work.dir, 'trained');
  const core = await import(pathToFileURL(path.join(example, 'core.js')).href);
  const result = await core.train({ model, dataFile: data, outputDir: trained, epochs: 2, learningRate: 1e-3, device: 'cpu' }, (e: Record<string, unknown>) => events.push(e));
  const progress = events.filter((e) => e.type === 'progress');
  assert.equal(progress.length, result.globalStep);
  assert.ok(events.filter((e) => e.type === 'loss').length >= 2);
  assert.equal(events.at(-1)?.type, 'done');
  prediction = await core.predict(trained, 'the cat runs .', 'a cat saw the dog .');
  assert.ok(['different', 'same'].includes(prediction.labelName), JSON.stringify(prediction));
  assert.ok(Math.abs(prediction.probabilities.reduce((a: number, b: number) => a + b, 0) - 1) < 1e-6);
});

const browser = chromium();

test('the example\'s page shows progress, the loss curve and a prediction (headless Chromium, preload stand-in)', { skip: browser ? false : 'no Chromium installed (apt-get install chromium); .ci/run installs it' }, async () => {
  assert.ok(events.length && prediction, 'needs the previous test\'s run');
  const { default: puppeteer } = await import('puppeteer-core');
  const b = await puppeteer.launch({ executablePath: browser, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await b.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // What preload.cjs exposes, replaying the events the core emitted above.
    await page.evaluateOnNewDocument((recorded: unknown[], result: unknown) => {
      let cb: (e: unknown) => void = () => {};
      (window as unknown as { bert: object }).bert = {
        onEvent: (f: (e: unknown) => void) => { cb = f; },
        train: () => { recorded.forEach((e, i) => setTimeout(() => cb(e), 5 * i)); },
        predict: async () => result,
      };
    }, events, prediction);
    await page.setViewport({ width: 640, height: 760 });
    await page.goto(pathToFileURL(path.join(example, 'index.html')).href);
    await page.click('#train');
    await page.waitForFunction(() => Number((document.querySelector('#loss') as HTMLElement).dataset.points) >= 2 &&
      (document.querySelector('#status')?.textContent ?? '').startsWith('done'), { timeout: 30_000 });
    assert.equal(await page.$eval('#fill', (e) => (e as HTMLElement).style.width), '100%');
    await page.click('#predict');
    await page.waitForFunction((name: string) => (document.querySelector('#result')?.textContent ?? '').includes(name), { timeout: 10_000 }, prediction.labelName);
    const shot = process.env.ELECTRON_PAGE_SCREENSHOT ?? path.join(os.tmpdir(), 'bert-trainer-electron-page.png');  // kept after the test
    await page.screenshot({ path: shot });
    console.log(`screenshot of the example's page: ${shot}`);
    assert.deepEqual(errors, []);
  } finally {
    await b.close();
  }
});
