/**
 * The facts the data plane needs from a leaf certificate, read with the
 * shared DER parser (`parseCertificate`), which sees the extensions exactly
 * (Node's `X509Certificate.ca` hides a CA:TRUE leaf without keyCertSign).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { parseCertificate, type CertificateFacts } from '@trellis/shared';

/** What the sidecar looks at in a peer's or its own leaf certificate. */
export interface LeafFacts {
  /** Lower-case hex serial without leading zeros or colons. */
  readonly serialHex: string;
  /** Every URI SAN, in order. */
  readonly uris: readonly string[];
  readonly ca: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 of the DER, lower-case hex (Envoy's XFCC `Hash`). */
  readonly sha256: string;
  /** Everything else the shared parser read. */
  readonly facts: CertificateFacts;
}

/** Parses `der` (or an already-parsed certificate) into LeafFacts. Throws on bad DER. */
export function leafFacts(input: Buffer | X509Certificate): LeafFacts {
  const der = input instanceof X509Certificate ? input.raw : input;
  const facts = parseCertificate(der);
  return Object.freeze({
    serialHex: facts.serialHex,
    uris: facts.subjectAltName.uris,
    ca: facts.basicConstraints.ca,
    notBefore: facts.notBefore,
    notAfter: facts.notAfter,
    sha256: createHash('sha256').update(der).digest('hex'),
    facts,
  });
}
