/**
 * Structured JSON logging with shared field names.
 *
 * One line per event: `{"time":…,"level":…,"component":…,"msg":…, ...fields}`.
 * Never pass a private key, a token or a full certificate as a field: log a
 * serial, a SPIFFE ID or a fingerprint instead.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The logging collaborator handed to components through their `deps`. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

/** Where log lines go; a writable stream or a test sink. */
export interface LogSink {
  write(line: string): unknown;
}

export interface LoggerOptions {
  component: string;
  sink: LogSink;
  level?: LogLevel;
  /** Clock for the `time` field; tests pin it. */
  now?: () => Date;
}

/** Creates a JSON-lines logger writing to `sink`. */
export function createLogger(options: LoggerOptions, base: Record<string, unknown> = {}): Logger {
  const min = LEVEL_RANK[options.level ?? 'info'];
  const now = options.now ?? (() => new Date());
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVEL_RANK[level] < min) return;
    const line = { time: now().toISOString(), level, component: options.component, msg, ...base, ...fields };
    options.sink.write(JSON.stringify(line, errorReplacer) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(options, { ...base, ...fields }),
  };
}

/** A logger that drops everything (for library use without logging). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? { message: value.message } : { code, message: value.message };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}
