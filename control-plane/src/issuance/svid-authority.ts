/**
 * What the discovery layer needs from the CA (control-plane/src/ca): sign a
 * CSR for an authorised SPIFFE ID and tell the trust bundle. The CA's
 * `CertificateAuthority` satisfies this structurally; tests may pass their own.
 */

/** The result of one signing, as the CA returns it: the one model of an issued SVID in the control plane. */
export interface IssuedSvid {
  /** The serial in the one form (shared x509/serial.ts). */
  serialHex: string;
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
  leafPem: string;
  /** Leaf first, then the intermediate(s). */
  chainPem: string;
}

/** The CA as seen by the control plane. */
export interface SvidAuthority {
  readonly trustDomain: string;
  /**
   * Signs `csr` for `spiffeId`. Fails closed: the CSR's URI SAN must be empty
   * or exactly `spiffeId`, and a CA certificate is never issued
   * (TRELLIS_CA_CSR_IDENTITY_MISMATCH otherwise).
   */
  issue(req: { csr: Buffer; spiffeId: string; ttlSeconds?: number; requester: string }): IssuedSvid | Promise<IssuedSvid>;
  /** Every trusted root (PEM). */
  trustBundle(): { rootsPem: string[] };
  /** Re-reads the CA dir when it changed (an activated intermediate, a rotated root); optional. */
  refresh?(): Promise<boolean>;
}

/** Optional expiry view used for the `trellis_ca_*_expiry_seconds` gauges. */
export interface CaExpiry {
  intermediateNotAfter?: Date;
  rootNotAfter?: Date;
}
