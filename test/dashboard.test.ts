// The live dashboard in a real browser: a tiny run with --dashboard 0, its page opened in headless Chromium (Debian's
// `chromium`, driven by puppeteer-core), which must draw the loss curve from at least two logged points and show the
// evaluation accuracy in the epoch table; a screenshot is saved. Skips, saying so, where no Chromium is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { makeHfHome } from './fixtures.js';
import { chromium, root, tempDir } from './helpers.js';

const browser = chromium();

test('the dashboard page shows the loss curve and the eval accuracy while a run goes on', { skip: browser ? false : 'no Chromium installed (apt-get install chromium); .ci/run installs it' }, async () => {
  const { default: puppeteer } = await import('puppeteer-core');
  const work = tempDir('dash-test-');
  const home = await makeHfHome(path.join(work.dir, 'hf'));
  const child = spawn(process.execPath, [path.join(root, 'train.js'), '--model', 'tiny/bert', '--threads', '1', '--device', 'cpu', '--learning-rate', '1e-3',
    '--epochs', '5000', '--logging-steps', '2', '--save-strategy', 'no', '--output-dir', path.join(work.dir, 'out'), '--dashboard', '0', '--json'],
  { env: { ...process.env, HF_HOME: home, HF_HUB_OFFLINE: '1' } });
  child.stderr.resume();
  const exited = new Promise<number>((r) => child.on('exit', (c) => r(c ?? -1)));
  let b;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d) => {
        buf += d;
        const m = /\{"event":"dashboard","url":"([^"]+)"\}/.exec(buf);
        if (m) resolve(m[1]);
      });
      child.on('exit', () => reject(new Error(`the run ended before printing its dashboard URL: ${buf.slice(0, 500)}`)));
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/, 'loopback only by default');
    b = await puppeteer.launch({ executablePath: browser, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    const page = await b.newPage();
    await page.setViewport({ width: 1150, height: 820 });
    await page.goto(url);
    await page.waitForFunction(() => Number((document.querySelector('#loss-chart') as HTMLElement).dataset.points) >= 2 &&
      document.querySelector('#epoch-table tbody td.eval_accuracy') !== null, { timeout: 60_000 });
    const accuracy = await page.$eval('#epoch-table tbody td.eval_accuracy', (td) => Number(td.textContent));
    assert.ok(accuracy >= 0 && accuracy <= 1, String(accuracy));
    assert.match(await page.$eval('#status', (e) => e.textContent ?? ''), /step \d+ \/ 60000, epoch .* ETA/);
    assert.equal(await page.$eval('#summary', (e) => e.textContent), '(when the run ends)', 'the run must still be going');
    const drawn = await page.$eval('#loss-chart polyline', (e) => (e.getAttribute('points') ?? '').trim().split(/\s+/).length);
    assert.ok(drawn >= 2, `the loss curve has ${drawn} points`);
    const shot = process.env.DASHBOARD_SCREENSHOT ?? path.join(work.dir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(existsSync(shot));
  } finally {
    await b?.close();
    child.kill('SIGINT');
    await exited;
    work.cleanup();
  }
});
