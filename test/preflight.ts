// Run by `npm test` before the suites: says at the top which tests will skip on this machine and the one command that
// enables them, so a machine set up with the README's two commands never silently tests less than CI (.ci/run
// installs both).
import { chromium } from './helpers.js';
import { addon } from '../src/native.js';

const missing: Array<{ what: string; tests: string; pkg: string }> = [];
if (!chromium()) missing.push({ what: 'Chromium', tests: 'the dashboard and Electron-example browser tests', pkg: 'chromium' });
if (!addon().runtime().distributedBackends.includes('gloo'))
  missing.push({ what: "Gloo's headers (the addon was built without them)", tests: 'the multi-process (DDP) tests', pkg: 'libgloo-dev' });
if (missing.length) {
  const rebuild = missing.some((m) => m.pkg === 'libgloo-dev') ? ' && npm run rebuild' : '';
  console.log(`npm test: this machine lacks ${missing.map((m) => m.what).join(' and ')}, so ${missing.map((m) => m.tests).join(' and ')} will be SKIPPED.\n` +
    `To run them: apt-get install -y ${missing.map((m) => m.pkg).join(' ')}${rebuild}   (.ci/run does this)\n`);
}
