// Whether an existing build folder must be configured anew before building. cmake-js `build` configures only a new
// folder, so a dependency found missing once stays missing in CMakeCache.txt after it is installed.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Gloo's headers: GLOO_INCLUDE_DIR, else the system's (Debian's libgloo-dev). */
export function glooHeaderPresent(env = process.env) {
  return existsSync(path.join(env.GLOO_INCLUDE_DIR || '/usr/include', 'gloo', 'config.h'));
}

/** `cacheText`: the build folder's CMakeCache.txt (undefined: none, so cmake-js configures anyway). */
export function needsReconfigure(cacheText, { requested = false, glooPresent = glooHeaderPresent() } = {}) {
  if (cacheText === undefined) return false;
  return requested || (/^GLOO_INCLUDE_DIR:PATH=.*-NOTFOUND$/m.test(cacheText) && glooPresent);
}

export function readCache(buildDir) {
  const f = path.join(buildDir, 'CMakeCache.txt');
  return existsSync(f) ? readFileSync(f, 'utf8') : undefined;
}
