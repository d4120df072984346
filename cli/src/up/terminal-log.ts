/**
 * What `trellis up` shows on the terminal of the JSON log lines its children
 * and its own runner write: warnings and errors only, one readable line each
 * (`[payments/sidecar] warning: msg (code=..., fix=...)`), never the JSON.
 * Everything else stays in the log files under `<state-dir>/logs/`; with
 * `--verbose` the terminal gets every line as before. Pure: line in, line out.
 */
import type { LogSink } from '@trellis/shared';

/** Fields worth a place on the terminal line, in this order (the rest is in the log file). */
const SHOWN_FIELDS = ['code', 'error', 'child', 'reason', 'fix', 'message', 'serverCode'];

/**
 * The terminal line for one log line from `source`, or undefined when it
 * belongs only in the log file: JSON lines below warn, and any line that is
 * not a JSON log record (an app's own output).
 */
export function terminalLine(source: string, line: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  let rec: Record<string, unknown>;
  try {
    const parsed = JSON.parse(line) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
    rec = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const level = rec['level'];
  if (level !== 'warn' && level !== 'error') return undefined;
  const details = SHOWN_FIELDS.filter((k) => rec[k] !== undefined && rec[k] !== null).map((k) => `${k}=${describe(rec[k])}`);
  return `[${source}] ${level === 'warn' ? 'warning' : 'error'}: ${String(rec['msg'] ?? '')}${details.length ? ` (${details.join(', ')})` : ''}`;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && 'message' in v) {
    const e = v as { message: unknown; code?: unknown };
    return e.code ? `${String(e.message)} [${String(e.code)}]` : String(e.message);
  }
  return JSON.stringify(v);
}

/** A log sink that writes the terminal form of each JSON line (warnings and errors) to `out`. */
export function terminalSink(out: NodeJS.WritableStream, source: string): LogSink {
  return {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) {
        const t = line === '' ? undefined : terminalLine(source, line);
        if (t !== undefined) out.write(t + '\n');
      }
    },
  };
}
