/**
 * Peer SPIFFE ID matchers: the authorizer a TLS endpoint applies to the
 * verified peer identity (go-spiffe's tlsconfig.AuthorizeAny / ID / OneOf /
 * MemberOf semantics).
 *
 * A matcher is compiled once (IDs validated, one-of turned into a Set) and then
 * called per handshake. Every matcher except `any` fails closed: a missing
 * identity (`undefined`, go-spiffe's zero ID) never matches. `any` matches
 * everything, including a missing identity, as go-spiffe's does: it means
 * "authentication is enough", so it must only be used after the peer's SVID was
 * verified.
 */
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe-id';

/** Which peer identities to accept. */
export type SpiffeIdMatcherSpec =
  | { readonly kind: 'any' }
  | { readonly kind: 'exact'; readonly id: string }
  | { readonly kind: 'one_of'; readonly ids: readonly string[] }
  | { readonly kind: 'member_of_trust_domain'; readonly trustDomain: string };

/** The decision with its reason. */
export type SpiffeIdMatch = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** A compiled matcher. */
export type SpiffeIdMatcher = (id: SpiffeId | string | undefined) => SpiffeIdMatch;

const OK: SpiffeIdMatch = Object.freeze({ ok: true as const });

function describe(id: SpiffeId | string | undefined): string {
  return id === undefined ? 'no SPIFFE ID' : `SPIFFE ID ${String(id)}`;
}

/**
 * Compiles `spec`; throws SpiffeIdError when an ID or trust domain in it is invalid,
 * so a bad policy is refused when loaded, not at the first handshake.
 * A string argument to the compiled matcher is compared as-is (it should come
 * from a parsed SVID); an invalid string simply does not match.
 */
export function compileSpiffeIdMatcher(spec: SpiffeIdMatcherSpec): SpiffeIdMatcher {
  switch (spec.kind) {
    case 'any':
      return () => OK;
    case 'exact': {
      const want = parseSpiffeId(spec.id).toString();
      return (id) => (id !== undefined && String(id) === want ? OK : Object.freeze({ ok: false as const, reason: `${describe(id)} is not ${want}` }));
    }
    case 'one_of': {
      const set = new Set(spec.ids.map((s) => parseSpiffeId(s).toString()));
      return (id) =>
        id !== undefined && set.has(String(id)) ? OK : Object.freeze({ ok: false as const, reason: `${describe(id)} is not one of the ${set.size} allowed IDs` });
    }
    case 'member_of_trust_domain': {
      const td = parseTrustDomain(spec.trustDomain);
      return (id) => {
        if (id === undefined) return Object.freeze({ ok: false as const, reason: `no SPIFFE ID, so not a member of ${td}` });
        let memberTd: string | undefined;
        if (typeof id === 'string') {
          try {
            memberTd = parseSpiffeId(id).trustDomain;
          } catch {
            memberTd = undefined;
          }
        } else {
          memberTd = id.trustDomain;
        }
        return memberTd === td ? OK : Object.freeze({ ok: false as const, reason: `${describe(id)} is not a member of trust domain ${td}` });
      };
    }
    default: {
      const kind = (spec as { kind?: unknown }).kind;
      // Unknown kinds refuse everything rather than throw at call time.
      return () => Object.freeze({ ok: false as const, reason: `unknown matcher kind ${JSON.stringify(kind)}` });
    }
  }
}
