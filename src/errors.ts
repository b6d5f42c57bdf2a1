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
