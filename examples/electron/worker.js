// Runs in Electron's utilityProcess: the libtorch work never touches the main process's event loop.
import { predict, train } from './core.js';

process.parentPort.on('message', async ({ data: msg }) => {
  const reply = (m) => process.parentPort.postMessage(m);
  try {
    if (msg.type === 'train') await train(msg.options, (e) => reply({ type: 'event', event: e }));
    else if (msg.type === 'predict') reply({ type: 'prediction', id: msg.id, result: await predict(msg.modelDir, msg.sentence1, msg.sentence2) });
  } catch (e) {
    reply({ type: 'event', event: { type: 'error', message: e.message }, id: msg.id });
  }
});
