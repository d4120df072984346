/**
 * The root of every error Trellis throws on purpose.
 *
 * Callers match on `code`, never on the message: codes are stable and listed in
 * docs/errors.md, messages may be reworded. Each package family subclasses this
 * once (SpiffeIdError, SvidError, CaError, PolicyError, ...) so `instanceof`
 * can tell the family and `code` the exact cause. A family is declared in
 * one line, `class CaError extends TrellisError<CaErrorCodeValue> {}`, so
 * its constructor accepts only the family's own codes.
 */
export class TrellisError<C extends string = string> extends Error {
  /** Stable, documented identifier, e.g. `TRELLIS_SPIFFE_ID_BAD_SCHEME`. */
  readonly code: C;
  /** Structured context for logs and JSON output (never secrets). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: C, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.details = Object.freeze({ ...details });
  }

  /** A JSON-friendly view for logs and `-o json` output. */
  toJSON(): { name: string; code: C; message: string; details: Readonly<Record<string, unknown>> } {
    return { name: this.name, code: this.code, message: this.message, details: this.details };
  }
}

/** True when `err` is a TrellisError (or subclass) carrying `code`. */
export function hasErrorCode(err: unknown, code: string): boolean {
  return err instanceof TrellisError && err.code === code;
}

/**
 * A command line that cannot be understood (unknown flag, missing argument).
 * The CLI prints it with the command's usage and exits 2.
 */
export class UsageError extends TrellisError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('TRELLIS_USAGE', message, details);
  }
}
