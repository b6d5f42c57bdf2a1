// `npm run pack [-- --out DIR]`: the package tarballs an app installs, as sharp ships its binaries:
// - the main package (bert-trainer-node-<version>.tgz): JavaScript, types, the CLI, the sources and build scripts
//   for a build from source; no binaries. Its JavaScript dependencies are bundled (an install needs no registry), and
//   its optionalDependencies name the platform packages with the os/cpu/libc fields npm selects them by.
// - a platform package per prebuild in prebuilds/ (npm run prebuild): @bert-trainer-node/linux-x64 (CPU) and
//   @bert-trainer-node/linux-x64-cuda (the CUDA build, taken only where an NVIDIA driver is: src/native.ts), holding
//   the addon and exactly the libraries it loads, `strip --strip-unneeded` (debug symbols out; test/install.test.ts
//   checks the outputs are unchanged), with prebuild.json's sizes for the loader's damage check. Its tarball is
//   written here as npm pack writes one (package/ prefix, portable headers, npm's fixed mtime) but at gzip level 6:
//   npm pack's level 9 took 54 s against 28 s here, for a tarball 0.2% smaller (104.4 against 104.6 MB).
//   `--gzip-level N` (0-9) sets it: test/install.test.ts packs at 1 (~10 s; the files inside are the same).
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tar from 'tar';
import { platformPackage } from '../src/native.js';
import { root } from './paths.js';

const argv = process.argv.slice(2);
const option = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const out = path.resolve(option('--out') ?? path.join(root, 'build-pack'));
const staging = path.join(out, 'staging');
const gzipLevel = Number(option('--gzip-level') ?? 6);
if (!Number.isInteger(gzipLevel) || gzipLevel < 0 || gzipLevel > 9) {
  console.error(`npm run pack: --gzip-level must be an integer from 0 to 9, got ${option('--gzip-level')}`);
  process.exit(2);
}
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } });
const pack = (dir: string) => npm(['pack', '--pack-destination', out, '--ignore-scripts', '--json'], dir);
const tarballs: Array<{ file: string; bytes: number; unpacked: number }> = [];
const record = (json: string) => {
  const [info] = JSON.parse(json) as Array<{ filename: string; size: number; unpackedSize: number }>;
  const file = path.join(out, info.filename);  // npm's name for it: @scope/name-v -> scope-name-v.tgz
  tarballs.push({ file, bytes: statSync(file).size, unpacked: info.unpackedSize });
};

// Platform packages, one per prebuild.
const prebuilds = existsSync(path.join(root, 'prebuilds')) ? readdirSync(path.join(root, 'prebuilds')) : [];
const optional: Record<string, string> = {};
for (const dir of prebuilds) {
  const m = /^(\w+)-(\w+?)(-cuda)?$/.exec(dir);
  if (!m || !existsSync(path.join(root, 'prebuilds', dir, 'prebuild.json'))) continue;
  const [, platform, arch, cuda] = m;
  const name = platformPackage(cuda ? 'cuda' : 'cpu', platform, arch);
  const dest = path.join(staging, name.replace('/', '+'));
  mkdirSync(dest, { recursive: true });
  const manifest = JSON.parse(readFileSync(path.join(root, 'prebuilds', dir, 'prebuild.json'), 'utf8'));
  for (const f of manifest.files as Array<{ file: string }>) {
    copyFileSync(path.join(root, 'prebuilds', dir, f.file), path.join(dest, f.file));
    // Symbols only a debugger reads go; the dynamic symbol table the loader links against stays.
    if (platform === 'linux') execFileSync('strip', ['--strip-unneeded', path.join(dest, f.file)]);
  }
  const files = manifest.files.map((f: { file: string }) => ({ file: f.file, bytes: statSync(path.join(dest, f.file)).size }));
  writeFileSync(path.join(dest, 'prebuild.json'), JSON.stringify({ ...manifest, files, bytes: files.reduce((a: number, f: { bytes: number }) => a + f.bytes, 0), stripped: true }, null, 2) + '\n');
  writeFileSync(path.join(dest, 'package.json'), JSON.stringify({
    name, version: pkg.version, description: `${pkg.name}'s prebuilt addon and libtorch ${manifest.torch} libraries for ${platform}-${arch}${cuda ? ' with CUDA (taken only where an NVIDIA driver is)' : ''}`,
    license: pkg.license, os: [platform], cpu: [arch], ...(platform === 'linux' ? { libc: ['glibc'] } : {}), files: ['*.node', '*.so*', 'prebuild.json'],
  }, null, 2) + '\n');
  const entries = readdirSync(dest).sort();
  const file = path.join(out, `${name.replace(/^@/, '').replace('/', '-')}-${pkg.version}.tgz`);  // npm pack's name
  tar.c({ sync: true, file, cwd: dest, prefix: 'package/', portable: true, gzip: { level: gzipLevel }, mtime: new Date('1985-10-26T08:15:00.000Z') }, entries);
  tarballs.push({ file, bytes: statSync(file).size, unpacked: entries.reduce((a, f) => a + statSync(path.join(dest, f)).size, 0) });
  if (!cuda) optional[name] = pkg.version;  // the CUDA package is installed by hand (no field can require a driver)
}

// The main package: what package.json's `files` lists, the JavaScript dependencies bundled.
const main = path.join(staging, 'main');
mkdirSync(main, { recursive: true });
for (const f of pkg.files as string[]) cpSync(path.join(root, f), path.join(main, f), { recursive: true });
// The production dependency tree as installed here (npm ls: every path of it), copied into the package.
const installed = npm(['ls', '--omit=dev', '--all', '--parseable'], root).trim().split('\n').filter((p) => p !== root && p.startsWith(path.join(root, 'node_modules')));
for (const p of installed) cpSync(p, path.join(main, path.relative(root, p)), { recursive: true });
const { devDependencies: _dev, scripts, ...rest } = pkg;
writeFileSync(path.join(main, 'package.json'), JSON.stringify({
  ...rest, scripts: { install: scripts.install }, bundleDependencies: Object.keys(pkg.dependencies), optionalDependencies: optional,
}, null, 2) + '\n');
record(pack(main));
rmSync(staging, { recursive: true, force: true });
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
for (const t of tarballs) console.log(`${path.relative(process.cwd(), t.file)}  ${mb(t.bytes)} (unpacked ${mb(t.unpacked)})`);
if (!Object.keys(optional).length) console.log('no prebuild in prebuilds/: run `npm run prebuild` first for a platform package');
