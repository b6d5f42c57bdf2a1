// The page's only access to the app: three calls, no Node in the renderer.
const { contextBridge, ipcRenderer } = require('electron');

let next = 0;
contextBridge.exposeInMainWorld('bert', {
  train: (options) => ipcRenderer.send('bert', { type: 'train', options }),
  predict: (modelDir, sentence1, sentence2) => new Promise((resolve, reject) => {
    const id = ++next;
    const on = (_e, m) => {
      if (m.id !== id) return;
      ipcRenderer.off('bert', on);
      if (m.type === 'prediction') resolve(m.result); else reject(new Error(m.event.message));
    };
    ipcRenderer.on('bert', on);
    ipcRenderer.send('bert', { type: 'predict', id, modelDir, sentence1, sentence2 });
  }),
  onEvent: (cb) => ipcRenderer.on('bert', (_e, m) => { if (m.type === 'event') cb(m.event); }),
});
