// The error taxonomy. UserError: something the user can fix (a flag, a file, an argument, the Hub cache); the CLI
// prints its one line and exits 2. Any other error (a built-in TypeError from our own code included) is a
// failure of ours or of the machine: exit 1, stack with --debug.
export class UserError extends Error {
  override name = 'UserError';
  readonly exitCode = 2;
}

/** A flag or option value is wrong. */
export class UsageError extends UserError {
  override name = 'UsageError';
}

/** A file the user gave (or the Hub served) is unusable: names the file and the reason. */
export class InputError extends UserError {
  override name = 'InputError';
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
