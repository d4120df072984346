/**
 * The key-exchange policy of every mTLS hop Trellis controls (sidecar to
 * sidecar on both data paths, sidecar to control plane, the admin API), set
 * mesh-wide on the control plane and pushed to sidecars:
 *
 * - `prefer` (default): offer the post-quantum hybrid X25519MLKEM768 first,
 *   fall back to X25519, then P-256, for peers that cannot do it (OpenSSL
 *   3.0, Node 20, older Go). A server sends a HelloRetryRequest for the
 *   hybrid group to a client that supports it without having sent its key
 *   share, so every peer that can do it does ("harvest now, decrypt later").
 * - `require`: only X25519MLKEM768; a classical-only handshake is refused
 *   (and counted by the refusing side).
 * - `off`: classical groups only (X25519, P-256).
 *
 * Pure: policy → the OpenSSL groups list, and the group a server with that
 * list picks for a ClientHello (see {@link selectGroup}), which the Node
 * path uses because node:tls reports the negotiated group on client sockets
 * only.
 */
import type { ClientHelloFacts } from './client-hello';

/** The policies, in the order docs list them. */
export const KEY_EXCHANGE_POLICIES = Object.freeze(['prefer', 'require', 'off'] as const);

/** One key-exchange policy. */
export type KeyExchangePolicy = (typeof KEY_EXCHANGE_POLICIES)[number];

/** What a control plane that says nothing means. */
export const DEFAULT_KEY_EXCHANGE: KeyExchangePolicy = 'prefer';

/** True for a known policy name. */
export function isKeyExchangePolicy(v: unknown): v is KeyExchangePolicy {
  return typeof v === 'string' && (KEY_EXCHANGE_POLICIES as readonly string[]).includes(v);
}

/** The hybrid group, by its IANA name (TLS codepoint 0x11EC). */
export const HYBRID_GROUP = 'X25519MLKEM768';

/** TLS NamedGroup codepoints of the groups Trellis uses or names in metrics. */
export const GROUP_CODEPOINTS: Readonly<Record<string, number>> = Object.freeze({
  X25519MLKEM768: 0x11ec,
  X25519: 0x001d,
  'P-256': 0x0017,
  'P-384': 0x0018,
  'P-521': 0x0019,
  X448: 0x001e,
  SecP256r1MLKEM768: 0x11eb,
  SecP384r1MLKEM1024: 0x11ed,
});

const BY_CODEPOINT: ReadonlyMap<number, string> = new Map(Object.entries(GROUP_CODEPOINTS).map(([name, cp]) => [cp, name]));

/**
 * The server's groups for `policy`, as tuples (OpenSSL 3.5: the first tuple
 * with any group the client supports is used; inside it the server's
 * preference wins among groups the client sent a key share for, and a
 * HelloRetryRequest asks for its first supported group when there is none).
 */
const TUPLES: Readonly<Record<KeyExchangePolicy, readonly (readonly string[])[]>> = Object.freeze({
  prefer: [[HYBRID_GROUP], ['X25519', 'P-256']],
  require: [[HYBRID_GROUP]],
  off: [['X25519', 'P-256']],
});

/**
 * The OpenSSL groups list for `policy` (node:tls `ecdhCurve`,
 * `SSL_CTX_set1_groups_list`). The same list serves a client: it offers the
 * groups in this order and sends a key share for the first.
 */
export function groupsList(policy: KeyExchangePolicy): string {
  return TUPLES[policy].map((t) => t.join(':')).join('/');
}

/**
 * The name Trellis reports for a group (metric label, config dump): the
 * IANA name for the groups above whatever spelling OpenSSL or Node used
 * (`prime256v1`, `secp256r1`, `x25519`), `unknown` when there is none.
 */
export function groupName(name: string | undefined | null): string {
  if (!name) return 'unknown';
  const n = name.trim();
  switch (n.toLowerCase()) {
    case 'x25519mlkem768':
      return HYBRID_GROUP;
    case 'x25519':
      return 'X25519';
    case 'prime256v1':
    case 'secp256r1':
    case 'p-256':
      return 'P-256';
    case 'secp384r1':
    case 'p-384':
      return 'P-384';
    case 'secp521r1':
    case 'p-521':
      return 'P-521';
    case 'x448':
      return 'X448';
    default:
      return n === '' ? 'unknown' : n;
  }
}

/** The name of a TLS NamedGroup codepoint (hex for one Trellis does not know). */
export function groupOfCodepoint(cp: number): string {
  return BY_CODEPOINT.get(cp) ?? `0x${cp.toString(16).padStart(4, '0')}`;
}

/** True when `group` (any spelling) is a post-quantum hybrid. */
export function isHybridGroup(group: string | undefined | null): boolean {
  return /mlkem/i.test(group ?? '');
}

/** What a server with `policy` makes of one ClientHello. */
export type GroupSelection =
  | { readonly ok: true; readonly group: string; readonly helloRetry: boolean; readonly hybrid: boolean }
  | { readonly ok: false; readonly reason: 'no_shared_group' | 'not_hybrid' };

/**
 * The group a server configured with {@link groupsList}(`policy`) negotiates
 * with the client that sent `hello`, following OpenSSL 3.5's selection (TLS
 * 1.3: tuple by tuple, the server's first group the client sent a key share
 * for, else a HelloRetryRequest for the server's first group the client
 * supports; TLS 1.2: the server's first classical group the client lists).
 * Refuses (`not_hybrid`) under `require` when the client cannot do the
 * hybrid group, so a server can count that refusal before any TLS work.
 * Pure.
 */
export function selectGroup(hello: ClientHelloFacts, policy: KeyExchangePolicy): GroupSelection {
  const supported = new Set(hello.supportedGroups.map(groupOfCodepoint));
  if (policy === 'require' && !(hello.tls13 && supported.has(HYBRID_GROUP))) return Object.freeze({ ok: false as const, reason: 'not_hybrid' as const });
  if (hello.tls13) {
    const shares = new Set(hello.keyShareGroups.map(groupOfCodepoint));
    for (const tuple of TUPLES[policy]) {
      const shared = tuple.filter((g) => supported.has(g));
      if (shared.length === 0) continue;
      const withShare = shared.find((g) => shares.has(g));
      const group = withShare ?? shared[0]!;
      return Object.freeze({ ok: true as const, group, helloRetry: withShare === undefined, hybrid: isHybridGroup(group) });
    }
    return Object.freeze({ ok: false as const, reason: 'no_shared_group' as const });
  }
  // TLS 1.2 has no hybrid groups; with no supported_groups extension a client takes P-256 (RFC 8422 5.1.1).
  const classical = TUPLES[policy].flat().filter((g) => !isHybridGroup(g));
  const group = hello.supportedGroups.length === 0 ? classical.find((g) => g === 'P-256') : classical.find((g) => supported.has(g));
  return group ? Object.freeze({ ok: true as const, group, helloRetry: false, hybrid: false }) : Object.freeze({ ok: false as const, reason: 'no_shared_group' as const });
}
