/**
 * The control plane's one TLS-material holder: its own SVID and the trust
 * bundle, swapped whole on rotation. It is a grpc-js CertificateProvider (the
 * discovery server rebuilds its secure context for new connections) and
 * tells other listeners (the admin HTTPS server) through {@link onUpdate}, so
 * both servers always present the same certificate and trust the same roots.
 * Existing connections keep theirs.
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
  private readonly updateListeners = new Set<() => void>();

  /** Replaces the trusted roots (PEM, concatenated). */
  setCa(rootsPem: string): void {
    this.ca = { caCertificate: Buffer.from(rootsPem) };
    for (const l of this.caListeners) l(this.ca);
    for (const l of this.updateListeners) l();
  }

  /** Replaces the serving certificate chain and its key (PEM). */
  setIdentity(chainPem: string, keyPem: string): void {
    this.identity = { certificate: Buffer.from(chainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.idListeners) l(this.identity);
    for (const l of this.updateListeners) l();
  }

  /** The material now, as node:tls options (cert = our chain, key, ca = trusted roots); null until both are set. */
  current(): { cert: Buffer; key: Buffer; ca: Buffer } | null {
    if (!this.ca || !this.identity) return null;
    return { cert: this.identity.certificate, key: this.identity.privateKey, ca: this.ca.caCertificate };
  }

  /** Calls `l` after every swap of either half (read {@link current} there). */
  onUpdate(l: () => void): void {
    this.updateListeners.add(l);
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
