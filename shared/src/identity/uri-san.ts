/**
 * URI SANs and the SPIFFE ID they carry: the one place that reads them.
 *
 * Two sources, one rule. A certificate parsed by our DER reader has its URI
 * SANs in `facts.subjectAltName.uris`; a TLS peer certificate from node:tls
 * has them only in the `subjectaltname` text, which Node writes as
 * `TYPE:value, TYPE:value` and JSON-quotes any value holding `,` `"` `\` `'`
 * or a control character (so a comma inside a value cannot forge another
 * entry). {@link uriSansOfPeerCertificate} reads that text the way Node's own
 * `tls.checkServerIdentity` does. Then {@link spiffeIdOfUriSans} applies
 * X509-SVID 2: exactly one URI SAN, and it is a valid SPIFFE ID (parsed by
 * `spiffe-id.ts`, never by a regular expression).
 *
 * Pure; fails closed: unreadable text yields no URIs, never a guess.
 */
import { parseSpiffeId, SpiffeIdError, type SpiffeId } from './spiffe-id';

/** The parts of a node:tls PeerCertificate this module reads. */
export interface PeerCertificateSans {
  /** Node's `subjectaltname` text, e.g. `URI:spiffe://td/x, DNS:a.b`. */
  readonly subjectaltname?: string | undefined;
}

/** A node:tls detailed PeerCertificate (`getPeerCertificate(true)`, or what `checkServerIdentity` receives). */
export interface PeerCertificateChain {
  readonly raw?: Buffer;
  readonly issuerCertificate?: PeerCertificateChain;
}

/**
 * The DER certificates of a detailed node:tls peer certificate, leaf first,
 * following `issuerCertificate` until it ends or repeats (a self-signed root
 * points at itself); at most `max`. Feed it to parseCertificates and the
 * shared X.509-SVID verifier.
 */
export function peerCertificateChainDer(cert: PeerCertificateChain, max = 10): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<PeerCertificateChain>();
  for (let c: PeerCertificateChain | undefined = cert; c && c.raw && !seen.has(c) && out.length < max; c = c.issuerCertificate) {
    seen.add(c);
    out.push(c.raw);
  }
  return out;
}

// A JSON string at the start of the text, as Node writes quoted values (lib/tls.js).
const JSON_STRING = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/;

/**
 * Splits Node's `subjectaltname` text into its entries (`URI:...`, `DNS:...`),
 * unquoting JSON-quoted values. Returns undefined when the text is not in
 * Node's format (a quote that does not close): callers treat that as no SANs.
 */
export function splitSubjectAltNameText(text: string): string[] | undefined {
  const out: string[] = [];
  let token = '';
  let at = 0;
  while (at < text.length) {
    const sep = text.indexOf(',', at);
    const quote = text.indexOf('"', at);
    if (quote !== -1 && (sep === -1 || quote < sep)) {
      token += text.slice(at, quote);
      const m = JSON_STRING.exec(text.slice(quote));
      if (!m) return undefined;
      token += JSON.parse(m[0]) as string;
      at = quote + m[0].length;
    } else if (sep !== -1) {
      token += text.slice(at, sep);
      out.push(token);
      token = '';
      at = sep + 1;
      while (text.charCodeAt(at) === 0x20) at++;
    } else {
      token += text.slice(at);
      at = text.length;
    }
  }
  if (token !== '' || out.length > 0) out.push(token);
  return out;
}

/**
 * The URI SANs of a TLS peer certificate (node:tls), in order. Fails closed:
 * text Node would not write gives an empty list.
 */
export function uriSansOfPeerCertificate(cert: PeerCertificateSans): string[] {
  const entries = splitSubjectAltNameText(cert.subjectaltname ?? '') ?? [];
  return entries.filter((e) => e.startsWith('URI:')).map((e) => e.slice(4));
}

/** Why a certificate's URI SANs do not name one SPIFFE ID. */
export type UriSanRefusal = 'no_uri_san' | 'multiple_uri_sans' | 'bad_spiffe_id';

/** The SPIFFE ID the URI SANs carry, or why they carry none. */
export type UriSanSpiffeId =
  | { readonly ok: true; readonly spiffeId: SpiffeId }
  | {
      readonly ok: false;
      readonly refusal: UriSanRefusal;
      readonly reason: string;
      /** For `bad_spiffe_id`: the TRELLIS_SPIFFE_ID_* code. */
      readonly cause?: string;
    };

/**
 * X509-SVID 2: exactly one URI SAN, and it is a valid SPIFFE ID. `who` names
 * the certificate in the reason (`leaf`, `client`, ...). Fails closed.
 */
export function spiffeIdOfUriSans(uris: readonly string[], who = 'the'): UriSanSpiffeId {
  if (uris.length === 0) return Object.freeze({ ok: false as const, refusal: 'no_uri_san' as const, reason: `${who} certificate contains no URI SAN, so it has no SPIFFE ID` });
  if (uris.length > 1) {
    return Object.freeze({ ok: false as const, refusal: 'multiple_uri_sans' as const, reason: `${who} certificate has ${uris.length} URI SANs; an X.509-SVID must have exactly one` });
  }
  try {
    return Object.freeze({ ok: true as const, spiffeId: parseSpiffeId(uris[0]!) });
  } catch (err) {
    const cause = err instanceof SpiffeIdError ? err.code : undefined;
    return Object.freeze({
      ok: false as const,
      refusal: 'bad_spiffe_id' as const,
      reason: `${who} certificate URI SAN is not a valid SPIFFE ID: ${(err as Error).message}`,
      ...(cause ? { cause } : {}),
    });
  }
}

/**
 * The trust domain a CA certificate is for: its one URI SAN must be the bare
 * trust-domain ID `spiffe://<td>` (no path), as every Trellis root and
 * intermediate carries. Fails closed with the reason.
 */
export function trustDomainOfCaUriSans(uris: readonly string[], who = 'the CA'): { readonly ok: true; readonly trustDomain: string } | { readonly ok: false; readonly reason: string } {
  const id = spiffeIdOfUriSans(uris, who);
  if (!id.ok) return Object.freeze({ ok: false as const, reason: `${id.reason} (expected exactly one URI SAN spiffe://<trust-domain>)` });
  if (id.spiffeId.path !== '') return Object.freeze({ ok: false as const, reason: `${who} certificate URI SAN ${id.spiffeId} must be the bare trust domain ID spiffe://${id.spiffeId.trustDomain}` });
  return Object.freeze({ ok: true as const, trustDomain: id.spiffeId.trustDomain });
}
