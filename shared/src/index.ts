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
  kubernetesSpiffeId,
  parseKubernetesSpiffeId,
  isKubernetesNamespace,
  isKubernetesServiceAccount,
} from './identity/spiffe-id';
export type { SpiffeId, SpiffeIdErrorCodeValue, KubernetesIdentity } from './identity/spiffe-id';
export {
  SVID_TYPE_URL, TRUST_BUNDLE_TYPE_URL, PEER_AUTHENTICATION_TYPE_URL, AUTHORIZATION_POLICIES_TYPE_URL,
  REVOCATIONS_TYPE_URL, ENDPOINTS_TYPE_URL, ALL_TYPE_URLS, TYPE_SHORT_NAMES, isKnownTypeUrl, typeShortName,
} from './protocol/type-urls';
export type { TypeUrl } from './protocol/type-urls';
export { canonicalJson, contentVersion } from './protocol/content-version';
export { decodeResource, encodeResource, ProtocolError, SINGLETON_RESOURCE_NAME, MTLS_MODES, isMtlsMode, checkPeerAuthentication } from './protocol/resources';
export type {
  SvidResource, TrustBundleResource, PeerAuthenticationResource, AuthorizationPoliciesResource, RevocationsResource,
  EndpointsResource, Endpoint, ResourceBodies,
} from './protocol/resources';
export { AckTracker } from './protocol/ack-tracker';
export { INBOUND_PROTOCOLS, INBOUND_PROTOCOL_LIST, isInboundProtocol } from './protocol/inbound-protocol';
export type { InboundProtocol } from './protocol/inbound-protocol';
export { INJECTION_STATUS_ANNOTATION, parseInjectionStatus } from './protocol/injection-status';
export type { InjectionStatus, ParsedInjectionStatus } from './protocol/injection-status';
export {
  decodeDiscoveryRequest,
  decodeDiscoveryResponse,
  decodeErrorDetail,
  decodeNode,
  decodeResourceMessage,
  encodeDiscoveryRequest,
  encodeDiscoveryResponse,
  encodeErrorDetail,
  encodeNode,
  encodeResourceMessage,
} from './protocol/discovery-messages';
export type {
  DiscoveryRequestInit,
  DiscoveryRequestMessage,
  DiscoveryResponseInit,
  DiscoveryResponseMessage,
  ErrorDetailMessage,
  NodeMessage,
  ResourceMessage,
} from './protocol/discovery-messages';
export { BAD_MESSAGE_CODE } from './protocol/protobuf-wire';
export { BAD_REPORT_CODE, decodeSidecarReport, encodeSidecarReport, fitSidecarReport, OTHER_PEERS, SIDECAR_REPORT_LIMITS, UNAUTHENTICATED_PEER } from './protocol/sidecar-report';
export type { CallDirection, ReportedCalls, ReportedCertificate, ReportedRefusal, ReportedWorkload, SidecarReport } from './protocol/sidecar-report';
export type { SyncState, RequestVerdict, TypeSyncSnapshot } from './protocol/ack-tracker';
export { PROTO_ROOT, DISCOVERY_PROTO_FILE, DISCOVERY_SERVICE } from './protocol/proto-path';
export * as der from './x509/der';
export { DerError, DerErrorCode } from './x509/der';
export type { DerErrorCodeValue, Tlv, BitString } from './x509/der';
export * from './policy';
export { parseDuration, parseDurationSeconds, formatDuration, DurationError } from './util/duration';
export { isLoopbackHost } from './util/loopback-host';
export { parseHostPort, parsePort, formatHostPort } from './net/host-port';
export type { HostPort, HostPortOptions } from './net/host-port';
export { NO_CREDENTIAL_EXIT_CODE } from './util/exit-codes';
export { backoffDelayMs, DEFAULT_BACKOFF } from './util/backoff';
export type { BackoffOptions } from './util/backoff';
export { X509Error, X509ErrorCode } from './x509/x509-error';
export type { X509ErrorCodeValue } from './x509/x509-error';
export { pemBlocks, pemToDer, derToPem, certificatePems } from './x509/pem';
export { normaliseSerial, randomSerial, randomSerialHex, MAX_SERIAL_HEX_DIGITS } from './x509/serial';
export { samePublicKey, spkiDer } from './x509/public-key';
export type { PemBlock } from './x509/pem';
export { Oid } from './x509/oids';
export { parseCertificate, parseCertificates } from './x509/certificate-facts';
export type { CertificateFacts } from './x509/certificate-facts';
export { readExtensions, summariseExtensions } from './x509/extensions';
export type { BasicConstraintsFacts, KeyUsageFacts, ExtKeyUsageFacts, SubjectAltNameFacts, ExtensionFacts, ExtensionSummary } from './x509/extensions';
export { spkiKeyType } from './x509/spki';
export {
  buildWorkloadCsr, encodeCertificationRequest, encodeCertificationRequestInfo, encodeExtension, intermediateCaExtensions, uriSanExtension, ECDSA_WITH_SHA256_DER,
} from './x509/certification-request';
export type { CertificationRequestContent } from './x509/certification-request';
export type { KeyType } from './x509/spki';
export {
  SvidError, SvidErrorCode, validateLeafSvid, validateSigningCertificate, validateSvidChain,
  assertSvidChain,
} from './identity/x509-svid';
export type { SvidErrorCodeValue, SvidVerdict, SigningCertVerdict, SvidRejection, SvidCheckOptions } from './identity/x509-svid';
export { splitSubjectAltNameText, uriSansOfPeerCertificate, peerCertificateChainDer, spiffeIdOfUriSans, trustDomainOfCaUriSans } from './identity/uri-san';
export type { PeerCertificateChain, PeerCertificateSans, UriSanRefusal, UriSanSpiffeId } from './identity/uri-san';
export { TRELLIS_NAMESPACE, controlPlaneSpiffeId, defaultAdminSpiffeId, injectorSpiffeId } from './identity/well-known-ids';
export { JOIN_TOKEN_PREFIX, isJoinToken, joinTokenSpiffeId } from './identity/join-token-format';
export { parseX509SvidPem } from './identity/x509-svid-pem';
export type { X509SvidMaterial } from './identity/x509-svid-pem';
export { createTrustBundle, parsePemBundle, parseSpiffeBundle, formatPemBundle, formatSpiffeBundle, ROOT_CERT_CONFIGMAP } from './x509/trust-bundle';
export type { TrustBundle, TrustBundleOptions, JwtAuthority, IgnoredBundleEntry } from './x509/trust-bundle';
export { verifyCertificatePath, PathErrorCode } from './x509/path-validation';
export type { PathValidationOptions, PathVerdict, PathErrorCodeValue } from './x509/path-validation';
export { verifyX509Svid, verifyPeerCertificateSvid } from './identity/x509-svid-verify';
export type { X509SvidVerification, X509SvidVerifyOptions, TrustBundleSet } from './identity/x509-svid-verify';
export { RENEWAL_TYPE_URL } from './protocol/type-urls';
export type { RenewalResource } from './protocol/resources';
export { readClientHello, MAX_CLIENT_HELLO_BYTES } from './tls/client-hello';
export type { ClientHelloFacts, ClientHelloRead } from './tls/client-hello';
export {
  DEFAULT_KEY_EXCHANGE,
  GROUP_CODEPOINTS,
  groupName,
  groupOfCodepoint,
  groupsList,
  HYBRID_GROUP,
  isHybridGroup,
  isKeyExchangePolicy,
  KEY_EXCHANGE_POLICIES,
  selectGroup,
} from './tls/key-exchange';
export type { GroupSelection, KeyExchangePolicy } from './tls/key-exchange';
export { SSL_OP_NO_RX_CERTIFICATE_COMPRESSION, SSL_OP_NO_TX_CERTIFICATE_COMPRESSION, withoutCertificateCompression } from './tls/certificate-compression';
