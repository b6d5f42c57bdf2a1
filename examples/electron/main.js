// Main process: a window, and a utilityProcess worker that does the training; messages are relayed both ways.
import { app, BrowserWindow, ipcMain, utilityProcess } from 'electron';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

app.whenReady().then(() => {
  const win = new BrowserWindow({ width: 900, height: 700, webPreferences: { preload: path.join(here, 'preload.cjs'), contextIsolation: true, sandbox: true } });
  const worker = utilityProcess.fork(path.join(here, 'worker.js'));
  worker.on('message', (m) => win.webContents.send('bert', m));
  ipcMain.on('bert', (_e, m) => worker.postMessage(m));
  win.on('closed', () => worker.kill());
  win.loadFile(path.join(here, 'index.html'));
});
app.on('window-all-closed', () => app.quit());
