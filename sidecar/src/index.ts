/** @trellis/sidecar public API. */
export { SidecarError } from './errors';
export type { SidecarErrorCode } from './errors';
export { TlsMaterial, DEFAULT_TLS_CONTEXT_FACTORY } from './state/tls-material';
export type { TlsContextFactory, TlsMaterialDeps } from './state/tls-material';
export { SidecarState, readiness, makeCredentials, makeTrustBundle, makeRevocations } from './state/sidecar-state';
export type {
  Credentials,
  TrustAnchors,
  PeerAuthentication,
  AuthorizationState,
  RevocationList,
  ServiceEndpoints,
  SidecarSnapshot,
  SnapshotUpdate,
  SnapshotPart,
} from './state/sidecar-state';
export { leafFacts } from './identity/leaf-facts';
export type { LeafFacts } from './identity/leaf-facts';
export { verifyPeer, splitWorkloadSpiffeId } from './identity/peer-verifier';
export type { PeerVerdict, PeerRefusal, PeerContext } from './identity/peer-verifier';
export { nextRotation, retryDelay, DEFAULT_ROTATION } from './identity/next-rotation';
export type { RotationPolicy } from './identity/next-rotation';
export { IdentityManager } from './identity/identity-manager';
export type { IdentityManagerDeps, IdentityTimers } from './identity/identity-manager';
export { classifyFirstBytes } from './inbound/tls-detect';
export type { FirstBytes } from './inbound/tls-detect';
export { InboundListener } from './inbound/inbound-listener';
export { PendingHandshakes, DEFAULT_MAX_PENDING_HANDSHAKES, isSlot } from './inbound/pending-handshakes';
export type { HandshakeSlot, CapacityRefusal } from './inbound/pending-handshakes';
export type { InboundSpec, InboundDeps } from './inbound/inbound-listener';
export { INBOUND_PROTOCOLS } from './inbound/inbound-protocol';
export type { InboundProtocol, DeclaredAppProtocol } from './inbound/inbound-protocol';
export { ambiguousRequestHeaders, downstreamHeaders, downstreamTrailers, upstreamHeaders } from './inbound/http-forwarder';
export type { Forward, HttpForwarder } from './inbound/http-forwarder';
export { readRequestTarget } from './inbound/request-target';
export { gateRequest, DENIED_BODY } from './inbound/request-gate';
export type { Gate, GateDeps, GateInput, GateRefusal, HttpPeer } from './inbound/request-gate';
export { ambiguousH2Headers, h1RequestHeaders, h2RequestHeaders, h2ResponseFromH1, h2ResponseFromH2, h2TrailersFromH1, isGrpc, takesTrailers, GRPC_DENIED } from './http/h2-headers';
export { classifyHttpPreface, H2_PREFACE } from './http/h2-preface';
export type { HttpFirstBytes } from './http/h2-preface';
export type { RequestView, RequestRefusal } from './inbound/request-target';
export { OutboundListener, resolveTarget } from './outbound/outbound-listener';
export type { OutboundSpec, OutboundTarget, OutboundDeps } from './outbound/outbound-listener';
export { H2SessionPool } from './outbound/h2-session-pool';
export { SidecarMetrics } from './metrics/sidecar-metrics';
export type { Direction } from './metrics/sidecar-metrics';
export { ConnectionTracker } from './proxy/connection-tracker';
export { HeapShrinker } from './proxy/shrink-heap';
export type { HeapShrinkerDeps } from './proxy/shrink-heap';
export type { TrackedConnection } from './proxy/connection-tracker';
export { splice } from './proxy/splice';
export { decide, sharedAuthorizer, policiesFromWire } from './policy/authorizer';
export type { Authorizer, AuthzRequest, AuthzDecision, Workload } from './policy/authorizer';
export { startAdminServer } from './admin/admin-server';
export { startHealthServer, parseAppProbes } from './admin/health-server';
export type { AppProbe } from './admin/health-server';
export type { AdminSource } from './admin/admin-server';
export { Sidecar } from './sidecar';
export type { SidecarOptions, SidecarDeps, DataPath } from './sidecar';
export { nativeRelay, nativeRelayUnavailable, verifyCode, handshakeErrorCode } from './proxy/native-relay';
export type { NativeRelay, NativeDataPath, RelayContext, RelayEvent } from './proxy/native-relay';
export { parseSidecarConfig, parseInboundSpec, parseOutboundSpec, SETTINGS as SIDECAR_SETTINGS } from './config/sidecar-config';
export type { SidecarConfig, ConfigSources } from './config/sidecar-config';
export { wireDiscovery } from './control/discovery-wiring';
export type { DiscoverySource } from './control/discovery-wiring';
export { runSidecar } from './run-sidecar';
export type { RunSidecarDeps, DiscoveryRuntime, DiscoveryRuntimeOptions } from './run-sidecar';
export { DiscoveryClient } from './discovery/discovery-client';
export type { ClientCredentials } from './discovery/discovery-client';
export { GrpcBidiCall } from './discovery/grpc-bidi-call';
export { DiscoveryError, DiscoveryErrorCode } from './discovery/discovery-error';
