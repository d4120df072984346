/**
 * Human durations for flags and config: `90s`, `15m`, `1h`, `2h30m`, `500ms`,
 * `7d`. Units: ms, s, m, h, d; one or more `<integer><unit>` terms, no sign,
 * no spaces, no bare numbers (a bare `60` is ambiguous: seconds or minutes?).
 */
import { TrellisError } from '../errors/trellis-error';

/** Thrown by {@link parseDuration}; code `TRELLIS_DURATION_INVALID`. */
export class DurationError extends TrellisError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('TRELLIS_DURATION_INVALID', message, details);
  }
}

const UNIT_MS: Readonly<Record<string, number>> = Object.freeze({ ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 });
const TERM = /(\d+)(ms|s|m|h|d)/gy;

/**
 * Parses `text` into milliseconds. Throws DurationError naming `field`
 * (e.g. `--ttl`) and the accepted forms when the text is not a duration or
 * exceeds Number.MAX_SAFE_INTEGER milliseconds.
 */
export function parseDuration(text: string, field = 'duration'): number {
  if (typeof text !== 'string' || text === '') throw new DurationError(`${field}: empty duration (use e.g. 90s, 15m, 1h, 2h30m)`, { field });
  TERM.lastIndex = 0;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = TERM.exec(text)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = TERM.lastIndex;
  }
  if (pos !== text.length) {
    throw new DurationError(`${field}: "${text}" is not a duration (use integers with units ms, s, m, h, d, e.g. 90s, 15m, 1h, 2h30m)`, { field, value: text });
  }
  if (!Number.isSafeInteger(total)) throw new DurationError(`${field}: "${text}" is too large`, { field, value: text });
  return total;
}

/** Parses `text` into whole seconds; a duration with a sub-second remainder is refused. */
export function parseDurationSeconds(text: string, field = 'duration'): number {
  const ms = parseDuration(text, field);
  if (ms % 1000 !== 0) throw new DurationError(`${field}: "${text}" is not a whole number of seconds`, { field, value: text });
  return ms / 1000;
}

/** Formats milliseconds compactly, e.g. 5400000 → `1h30m`, 1500 → `1s500ms`, 0 → `0s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.floor(ms);
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
