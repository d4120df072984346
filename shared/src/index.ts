/**
 * @trellis/shared: the pure core every Trellis package builds on.
 * Nothing here opens a socket, touches the file system or starts a timer.
 */
export { TrellisError, UsageError, hasErrorCode } from './errors/trellis-error';
export { createLogger, silentLogger } from './observability/logger';
export type { Logger, LogLevel, LogSink, LoggerOptions } from './observability/logger';
export {
  SpiffeIdError,
  SpiffeIdErrorCode,
  MAX_SPIFFE_ID_BYTES,
  parseSpiffeId,
  isSpiffeId,
  parseTrustDomain,
  formatSpiffeId,
  spiffeIdFromParts,
  trustDomainSpiffeId,
  isMemberOf,
  kubernetesSpiffeId,
  parseKubernetesSpiffeId,
  isKubernetesNamespace,
  isKubernetesServiceAccount,
} from './identity/spiffe-id';
export type { SpiffeId, SpiffeIdErrorCodeValue, KubernetesIdentity } from './identity/spiffe-id';
