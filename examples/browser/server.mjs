// A static server for the browser example: the page, transformers.js's web build and onnxruntime-web's wasm files
// from this checkout's node_modules (no CDN), and an exported model folder (`node train.js export`) under /models/.
// Loopback only. Usage: node examples/browser/server.mjs --model <exported folder> [--port 8080]
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const arg = (name, fallback) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : fallback; };
const model = arg('model');
if (!model || !existsSync(path.join(model, 'onnx'))) {
  console.error(`--model must be a folder written by \`node train.js export\` (with onnx/), got ${model ?? 'nothing'}`);
  process.exit(2);
}
const port = Number(arg('port', '8080'));
if (!Number.isInteger(port) || port < 0 || port > 65535) { console.error(`--port must be an integer in [0, 65535], got ${arg('port')}`); process.exit(2); }

const mounts = [
  ['/models/model/', path.resolve(model)],
  ['/transformers/', path.join(root, 'node_modules', '@huggingface', 'transformers', 'dist')],
  ['/ort/', path.join(root, 'node_modules', 'onnxruntime-web', 'dist')],
  ['/', here],
];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.onnx': 'application/octet-stream' };

const server = http.createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  const [prefix, dir] = mounts.find(([p]) => url.startsWith(p));
  const file = path.join(dir, url.slice(prefix.length) || 'index.html');
  // Cross-origin isolation lets onnxruntime-web use threads; nothing is served outside the mounted folders.
  const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  if (!(file.startsWith(dir + path.sep) || file === dir) || !existsSync(file) || !statSync(file).isFile()) {
    res.writeHead(404, headers).end('not found');
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  createReadStream(file).pipe(res);
});
server.listen(port, '127.0.0.1', () => console.log(`browser example at http://127.0.0.1:${server.address().port}/`));
