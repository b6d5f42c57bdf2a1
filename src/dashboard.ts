// A live page for one training run: an HTTP server (loopback only unless a host is given) serving one HTML page and
// a server-sent-events stream of the run's events (progress, logs, evaluations, the end). A page opened late gets
// everything so far first. An app can embed the same page and stream (the Electron example, for instance).
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import type { TrainingArguments } from './training-args.js';
import type { LogEntry, TrainerCallback, TrainerControl, TrainerState } from './trainer-callback.js';

export type DashboardEvent =
  | { type: 'start'; device: string; trainRows: number; evalRows: number; maxSteps?: number; args?: object }
  | { type: 'progress'; step: number; maxSteps: number; epoch: number; stepMs: number; elapsedS: number }
  | { type: 'log'; entry: Record<string, number> }
  | { type: 'end'; metrics: Record<string, number>; interrupted?: boolean }
  | { type: 'error'; message: string };

/** Loopback addresses: a dashboard bound elsewhere is reachable from the network (and has no authentication). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export class Dashboard {
  private server: http.Server | undefined;
  private clients = new Set<http.ServerResponse>();
  // Replayed to each new page: every log entry and the latest progress; step times as one array.
  private history: DashboardEvent[] = [];
  private progress: DashboardEvent | undefined;
  private stepMs: number[] = [];

  /** Starts serving; port 0 picks a free one. Returns the page's URL. */
  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    this.boundHost = host.toLowerCase();
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    const a = this.server.address() as AddressInfo;
    return `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  publish(e: DashboardEvent) {
    if (e.type === 'progress') { this.progress = e; this.stepMs.push(e.stepMs); } else this.history.push(e);
    const line = `data: ${JSON.stringify(e)}\n\n`;
    for (const c of this.clients) c.write(line);
  }

  async close() {
    for (const c of this.clients) c.end();
    this.clients.clear();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server = undefined;
  }

  private boundHost = '127.0.0.1';

  /**
   * DNS rebinding: a page on attacker.example whose name is re-pointed at 127.0.0.1 reaches this server as same-
   * origin, with "Host: attacker.example". Only hosts that name this machine are served: IP addresses, localhost,
   * this machine's name, and the host the server was told to bind.
   */
  private hostAllowed(header: string | undefined): boolean {
    if (!header) return false;
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d+)?$/.exec(header.trim());
    const name = (m?.[1] ?? m?.[2] ?? '').toLowerCase().replace(/\.$/, '');
    return !!name && (net.isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost') || name === os.hostname().toLowerCase() || name === this.boundHost);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = (req.url ?? '/').split('?')[0];
    if (!this.hostAllowed(req.headers.host)) { res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden: unknown Host header'); return; }
    if (req.method !== 'GET') { res.writeHead(405).end(); return; }
    if (url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(PAGE);
    } else if (url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`event: snapshot\ndata: ${JSON.stringify({ history: this.history, progress: this.progress, stepMs: this.stepMs })}\n\n`);
      this.clients.add(res);
      req.on('close', () => this.clients.delete(res));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  }
}

// The page: no external resources (works offline and inside an app); charts are drawn as SVG.
/** The loop's side of the page, as a TrainerCallback: each step's progress and every log entry (evaluations included). */
export class DashboardCallback implements TrainerCallback {
  private stepStart = 0;
  private readonly t0 = performance.now();
  constructor(private readonly dashboard: Dashboard) {}
  onStepBegin() { this.stepStart = performance.now(); }
  onStepEnd(_args: TrainingArguments, state: Readonly<TrainerState>) {
    const now = performance.now();
    this.dashboard.publish({ type: 'progress', step: state.global_step, maxSteps: state.max_steps, epoch: state.epoch, stepMs: now - this.stepStart, elapsedS: (now - this.t0) / 1000 });
  }
  onLog(_args: TrainingArguments, _state: Readonly<TrainerState>, _control: TrainerControl, entry: LogEntry) { this.dashboard.publish({ type: 'log', entry }); }
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Training run</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
 h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 15px; margin: 20px 0 6px; }
 #bar { height: 18px; background: #eee; border-radius: 4px; overflow: hidden; } #fill { height: 100%; width: 0; background: #3b82f6; }
 .charts { display: flex; gap: 16px; flex-wrap: wrap; } svg { background: #fafafa; border: 1px solid #ddd; }
 table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
 #status { color: #555; margin: 6px 0; } #summary { white-space: pre-wrap; font-family: monospace; }
</style></head><body>
<h1>Training run</h1>
<div id="bar"><div id="fill"></div></div>
<div id="status">waiting for the run...</div>
<div class="charts">
 <div><h2>Training loss</h2><svg id="loss-chart" width="340" height="200" data-points="0"></svg></div>
 <div><h2>Learning rate</h2><svg id="lr-chart" width="340" height="200" data-points="0"></svg></div>
 <div><h2>Step time (ms)</h2><svg id="step-chart" width="340" height="200" data-points="0"></svg></div>
</div>
<h2>Evaluation</h2>
<table id="epoch-table"><thead><tr><th>Epoch</th><th>Step</th><th>Training Loss</th><th>Validation Loss</th></tr></thead><tbody></tbody></table>
<h2>Summary</h2><div id="summary">(when the run ends)</div>
<script>
const logs = [], evals = [], steps = [];
let progress = null, lastLoss;
function chart(id, all, color) {
  const svg = document.getElementById(id), W = +svg.getAttribute('width'), H = +svg.getAttribute('height'), p = 30;
  svg.dataset.points = all.length;
  if (!all.length) { svg.innerHTML = ''; return; }
  const every = Math.ceil(all.length / 400), pts = every > 1 ? all.filter((_, i) => i % every === 0 || i === all.length - 1) : all;  // a long run: at most ~400 drawn
  const xs = pts.map((q) => q[0]), ys = pts.map((q) => q[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => p + (x - x0) / ((x1 - x0) || 1) * (W - 2 * p), Y = (y) => H - p - (y - y0) / ((y1 - y0) || 1) * (H - 2 * p);
  svg.innerHTML = '<polyline fill="none" stroke="' + color + '" stroke-width="1.5" points="' + pts.map((q) => X(q[0]).toFixed(1) + ',' + Y(q[1]).toFixed(1)).join(' ') + '"/>' +
    '<text x="' + p + '" y="14" font-size="11">' + y1.toPrecision(3) + '</text><text x="' + p + '" y="' + (H - 8) + '" font-size="11">' + y0.toPrecision(3) + ' (steps ' + x0 + '-' + x1 + ')</text>' +
    (pts.length <= 200 ? pts.map((q) => '<circle cx="' + X(q[0]).toFixed(1) + '" cy="' + Y(q[1]).toFixed(1) + '" r="2" fill="' + color + '"/>').join('') : '');
}
function fmt(s) { if (!isFinite(s)) return '?'; s = Math.round(s); return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's'; }
function render() {
  if (progress) {
    document.getElementById('fill').style.width = (100 * progress.step / progress.maxSteps).toFixed(1) + '%';
    const rate = progress.step / Math.max(progress.elapsedS, 1e-9);
    document.getElementById('status').textContent = 'step ' + progress.step + ' / ' + progress.maxSteps + ', epoch ' + progress.epoch.toFixed(2) +
      ', ' + rate.toFixed(2) + ' steps/s, elapsed ' + fmt(progress.elapsedS) + ', ETA ' + fmt((progress.maxSteps - progress.step) / rate);
  }
  chart('loss-chart', logs.filter((e) => 'loss' in e).map((e) => [e.step, e.loss]), '#d62728');
  chart('lr-chart', logs.filter((e) => 'learning_rate' in e).map((e) => [e.step, e.learning_rate]), '#2ca02c');
  chart('step-chart', steps.map((v, i) => [i + 1, v]), '#1f77b4');
  const keys = [...new Set(evals.flatMap((e) => Object.keys(e).filter((k) => k.startsWith('eval_') && !/runtime|per_second|eval_loss/.test(k))))];
  const head = document.querySelector('#epoch-table thead tr');
  head.innerHTML = '<th>Epoch</th><th>Step</th><th>Training Loss</th><th>Validation Loss</th>' + keys.map((k) => '<th>' + k.slice(5) + '</th>').join('');
  document.querySelector('#epoch-table tbody').innerHTML = evals.map((e) => '<tr><td>' + (+e.epoch).toFixed(2) + '</td><td>' + e.step + '</td><td>' +
    (e.trainLoss === undefined ? 'No log' : e.trainLoss.toFixed(4)) + '</td><td>' + e.eval_loss.toFixed(4) + '</td>' +
    keys.map((k) => '<td class="' + k + '">' + (e[k] === undefined ? '' : (+e[k]).toFixed(4)) + '</td>').join('') + '</tr>').join('');
}
function take(e) {
  if (e.type === 'progress') { progress = e; steps.push(e.stepMs); }
  else if (e.type === 'log') {
    const x = e.entry;
    if ('eval_loss' in x) evals.push(Object.assign({ trainLoss: lastLoss }, x)); else if ('loss' in x) { lastLoss = x.loss; logs.push(x); } else if ('train_runtime' in x) logs.push(x);
  } else if (e.type === 'start') document.querySelector('h1').textContent = 'Training on ' + e.device + ': ' + e.trainRows + ' training rows, ' + e.evalRows + ' validation rows';
  else if (e.type === 'end') document.getElementById('summary').textContent = (e.interrupted ? 'Interrupted. ' : 'Done. ') + JSON.stringify(e.metrics, null, 2);
  else if (e.type === 'error') document.getElementById('summary').textContent = 'Failed: ' + e.message;
}
// Events can come hundreds a second: redraw at most once per frame.
let pending = false;
function later() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; render(); }); } }
const source = new EventSource('events');
source.addEventListener('snapshot', (m) => { const s = JSON.parse(m.data); s.history.forEach(take); if (s.progress) progress = s.progress; steps.push(...s.stepMs); later(); });
source.onmessage = (m) => { take(JSON.parse(m.data)); later(); };
source.onerror = () => { document.getElementById('status').textContent += ' (disconnected: the run has ended or stopped)'; source.close(); };
</script></body></html>
`;
