/**
 * @trellis/shared: the pure core every Trellis package builds on.
 * Nothing here opens a socket, touches the file system or starts a timer.
 */
export { TrellisError, UsageError, hasErrorCode } from './errors/trellis-error';
export { createLogger, silentLogger } from './observability/logger';
export type { Logger, LogLevel, LogSink, LoggerOptions } from './observability/logger';
