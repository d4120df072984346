/**
 * @trellis/injector-webhook: sidecar injection for Kubernetes.
 *
 * Pure core: `injectPod` (pod → JSONPatch + reason), `buildRedirectRules`
 * (app ports → iptables rules), `reviewAdmission` (AdmissionReview in → out),
 * `injectManifests` (offline, multi-document YAML). Adapters: the HTTPS
 * webhook server, serving-certificate sources, and the iptables applier.
 */
export { InjectorError } from './errors/injector-error';
export type { InjectorErrorCode } from './errors/injector-error';
export { DEFAULT_INJECTOR_CONFIG, buildInjectorConfig, parseInjectorConfig } from './config/injector-config';
export type { InjectorConfig, ResourceSpec } from './config/injector-config';
export {
  INJECT_KEY,
  ISTIO_INJECT_KEY,
  UPSTREAMS_ANNOTATION,
  EXCLUDE_INBOUND_ANNOTATION,
  STATUS_ANNOTATION,
  NATIVE_SIDECAR_ANNOTATION,
  NAMESPACE_LABEL,
  DEFAULT_CONTAINER_ANNOTATION,
  parseUpstreams,
  parsePortList,
  parseInjectFlag,
  parseBooleanAnnotation,
} from './inject/annotations';
export type { Upstream } from './inject/annotations';
export { decideInjection } from './inject/inject-decision';
export type { InjectionContext, InjectionDecision, InjectionReason } from './inject/inject-decision';
export { injectPod, serviceName } from './inject/inject-pod';
export type { InjectionResult, InjectionStatus } from './inject/inject-pod';
export { escapePointerToken, pointer, encodePatch, decodePatch } from './inject/json-patch';
export type { JsonPatchOp } from './inject/json-patch';
export { asPodLike } from './inject/pod-shape';
export type { PodLike, Container, ContainerPort, Probe, ObjectMeta } from './inject/pod-shape';
export { planInboundPorts } from './inject/port-plan';
export type { InboundPort } from './inject/port-plan';
export { portProtocol } from './inject/port-protocol';
export type { PortProtocol } from './inject/port-protocol';
export { planProbeRewrites, PROBE_KINDS } from './inject/probe-rewrite';
export type { AppProbe, ProbeRewrite } from './inject/probe-rewrite';
export {
  SIDECAR_CONTAINER_NAME,
  INIT_CONTAINER_NAME,
  TOKEN_VOLUME,
  CA_VOLUME,
  PODINFO_VOLUME,
  TOKEN_DIR,
  CA_DIR,
  PODINFO_DIR,
  sidecarArgs,
  sidecarContainer,
  initContainer,
  redirectArgs,
  sidecarVolumes,
} from './inject/sidecar-template';
export type { SidecarInputs } from './inject/sidecar-template';
export { INBOUND_CHAIN, OUTPUT_CHAIN, parseRedirectPorts, buildRedirectRules, renderRestore, jumpDeletions } from './redirect/redirect-rules';
export type { RedirectPlan, RedirectPort, IpFamily } from './redirect/redirect-rules';
export { applyRedirect, spawnRunner } from './redirect/apply-redirect';
export type { ApplyRedirectDeps, CommandRunner, RunResult } from './redirect/apply-redirect';
export { injectManifests, TEMPLATE_PATHS } from './offline/inject-manifests';
export type { InjectManifestsResult, ManifestReport } from './offline/inject-manifests';
export { ADMISSION_API_VERSION, reviewAdmission, admissionRequest } from './webhook/admission-review';
export { reviewPolicyAdmission, POLICY_GROUPS, POLICY_KINDS } from './webhook/policy-review';
export type { PolicyReviewOptions } from './webhook/policy-review';
export type { AdmissionResponse, ReviewOutcome } from './webhook/admission-review';
export { FileCertSource, validateServingPair } from './webhook/serving-cert';
export type { CertSource, ServingPair, FileCertSourceOptions } from './webhook/serving-cert';
export { MAX_BODY_BYTES, startWebhookServer } from './webhook/webhook-server';
export type { WebhookServer, WebhookServerDeps } from './webhook/webhook-server';
export { toStructuralSchema, policyCrd, policyCrds, PEER_AUTHENTICATION_RULES, MAX_PORT_LEVEL_MTLS } from './kubernetes/policy-crds';
export type { JsonSchema, CrdNames } from './kubernetes/policy-crds';
export { IssuedCertSource, renewalDelayMs } from './webhook/issued-cert-source';
export type { IssuedCertSourceDeps } from './webhook/issued-cert-source';
export { makeWebhookCa, issueServingCert, servingCertDecision } from './kubernetes/webhook-certificates';
export type { PemPair, ServingCertDecision, CertWindows } from './kubernetes/webhook-certificates';
export { SecretCertSource } from './kubernetes/secret-cert-source';
export type { SecretCertSourceOptions } from './kubernetes/secret-cert-source';
export { publishCaBundle, withCaBundle, DEFAULT_WEBHOOK_CONFIGS } from './kubernetes/ca-bundle-publisher';
export type { WebhookConfigRef } from './kubernetes/ca-bundle-publisher';
export { startSelfManagedTls } from './kubernetes/self-managed-tls';
export type { SelfManagedTls, SelfManagedTlsOptions } from './kubernetes/self-managed-tls';
