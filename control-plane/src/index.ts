/** @trellis/control-plane public API. */
export { CaError, CaErrorCode } from './ca/ca-error';
export type { CaErrorCodeValue } from './ca/ca-error';
export { loadCertificateAuthority, CertificateAuthority, ISSUED_CHANNEL } from './ca/certificate-authority';
export type { IssueRequest, IssuedSvid, CertificateAuthorityDeps } from './ca/certificate-authority';
export { createFileSigner } from './ca/signer';
export type { Signer } from './ca/signer';
export { CA_KEY_TYPES, SIGNATURE_ALGORITHMS } from './ca/key-types';
export type { CaKeyType, SignatureAlgorithm } from './ca/key-types';
export { initCertificateAuthority, writeIntermediateCsr, importIntermediate } from './ca/ca-setup';
export type { InitOptions, IntermediateCsrOptions, CaSetupResult } from './ca/ca-setup';
export { CA_FILES } from './ca/ca-dir';
export { parseCsr } from './ca/csr';
export type { ParsedCsr } from './ca/csr';
export { SVID_TTL, CLOCK_SKEW_SECONDS, svidValidity, checkCsrIdentity } from './ca/svid-profile';
export type { SvidValidity } from './ca/svid-profile';
export type { AuditRecord, AuditSink } from './ca/audit-log';
export * from './policy';
