// Errors the CLI reports as one line with exit code 2 (bad input) instead of a stack trace.
export class UsageError extends Error {
  override name = 'UsageError';
  readonly exitCode = 2;
}

/** A file the user gave (or the Hub served) is unusable: names the file and the reason. */
export class InputError extends Error {
  override name = 'InputError';
  readonly exitCode = 2;
  constructor(readonly file: string, reason: string) {
    super(`${file}: ${reason}`);
  }
}

/** A value for an error message: short, and safe for hostile input (deep or huge JSON). */
export function show(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v !== null && typeof v === 'object') return 'an object';
  if (typeof v === 'number') return String(v);  // Infinity and NaN, not JSON's null
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
