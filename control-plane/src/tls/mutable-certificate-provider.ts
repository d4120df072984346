/**
 * A grpc-js CertificateProvider fed from memory: the control plane's own SVID
 * and the trust bundle are swapped whole on rotation, and grpc-js rebuilds its
 * secure context for new connections. Existing connections keep theirs.
 */
import type { experimental } from '@grpc/grpc-js';

type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdListener = experimental.IdentityCertificateUpdateListener;

/** Holds the latest identity and CA material and notifies grpc-js. */
export class MutableCertificateProvider implements CertificateProvider {
  private ca: experimental.CaCertificateUpdate | null = null;
  private identity: experimental.IdentityCertificateUpdate | null = null;
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();

  /** Replaces the trusted roots (PEM, concatenated). */
  setCa(rootsPem: string): void {
    this.ca = { caCertificate: Buffer.from(rootsPem) };
    for (const l of this.caListeners) l(this.ca);
  }

  /** Replaces the serving certificate chain and its key (PEM). */
  setIdentity(chainPem: string, keyPem: string): void {
    this.identity = { certificate: Buffer.from(chainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.idListeners) l(this.identity);
  }

  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    // Deferred: grpc-js registers its own watcher only after adding listeners,
    // so a synchronous call here would be lost and the server would refuse
    // every handshake.
    queueMicrotask(() => {
      if (this.ca && this.caListeners.has(l)) l(this.ca);
    });
  }
  removeCaCertificateListener(l: CaListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => {
      if (this.identity && this.idListeners.has(l)) l(this.identity);
    });
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.idListeners.delete(l);
  }
}
