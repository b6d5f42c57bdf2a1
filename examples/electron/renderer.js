// The page: window.bert comes from preload.cjs (in the test, from a stand-in fed the same events).
const $ = (id) => document.getElementById(id);
const losses = [];
function drawLoss() {
  const svg = $('loss'), W = 460, H = 160, p = 20;
  svg.dataset.points = String(losses.length);
  if (losses.length < 2) return;
  const x0 = losses[0][0], x1 = losses[losses.length - 1][0], ys = losses.map((l) => l[1]), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const X = (x) => p + ((x - x0) / ((x1 - x0) || 1)) * (W - 2 * p), Y = (y) => H - p - ((y - y0) / ((y1 - y0) || 1)) * (H - 2 * p);
  svg.innerHTML = `<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="${losses.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>` +
    `<text x="${p}" y="14" font-size="11">loss ${y1.toFixed(3)}</text><text x="${p}" y="${H - 5}" font-size="11">${y0.toFixed(3)}</text>`;
}
window.bert.onEvent((e) => {
  if (e.type === 'progress') {
    $('fill').style.width = `${((100 * e.step) / e.maxSteps).toFixed(1)}%`;
    $('status').textContent = `step ${e.step} / ${e.maxSteps}, epoch ${e.epoch.toFixed(2)}`;
  } else if (e.type === 'loss') {
    losses.push([e.step, e.loss]);
    drawLoss();
  } else if (e.type === 'done') {
    $('status').textContent = `done: ${e.globalStep} steps, training loss ${e.trainingLoss.toFixed(4)}, saved in ${e.outputDir}`;
  } else if (e.type === 'error') {
    $('status').textContent = `error: ${e.message}`;
  }
});
$('train').onclick = () => {
  losses.length = 0;
  window.bert.train({ model: $('model').value, dataFile: $('data').value, outputDir: $('out').value, epochs: 3 });
};
$('predict').onclick = async () => {
  try {
    const r = await window.bert.predict($('out').value, $('s1').value, $('s2').value);
    $('result').textContent = `${r.labelName} (${(100 * Math.max(...r.probabilities)).toFixed(1)}%)`;
  } catch (e) {
    $('result').textContent = `error: ${e.message}`;
  }
};
