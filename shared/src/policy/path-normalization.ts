/**
 * Request path normalization before AuthorizationPolicy, with Istio's
 * mesh-wide options (meshConfig.pathNormalization.normalization). The
 * sidecar judges the normalized path AND forwards it to the application, so
 * policy and application read the same path: `/./admin`, `/x/../admin`,
 * `/%2e/admin` and `/%61dmin` are all `/admin` to both.
 *
 * - `NONE`: no change. Only what cannot be forwarded safely is refused.
 * - `BASE` (the default): Envoy's `normalize_path` as Istio documents it:
 *   percent-encoded unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`)
 *   are decoded, once; other escapes are kept, with upper-case hex digits
 *   (RFC 3986 §6.2.2.1, so `%2f` and `%2F` are one path to policy); a
 *   backslash becomes `/`; dot segments are removed (RFC 3986 §5.2.4).
 * - `MERGE_SLASHES`: BASE, then runs of `/` become one.
 * - `DECODE_AND_MERGE_SLASHES`: `%2F` and `%5C` (any case) are decoded to
 *   `/` and `\` first (Envoy's UNESCAPE_AND_FORWARD, which Istio uses for
 *   this option), then MERGE_SLASHES.
 *
 * Fails closed: a path that cannot be normalized safely is refused with its
 * reason (the sidecar answers 400), in every mode: a NUL (raw or `%00`, as
 * Envoy), any other control character or a raw space, a byte outside ASCII,
 * an invalid or truncated escape, a fragment (`#`, as Envoy), and, under
 * NONE only, a backslash (Node's URL parser and most frameworks read it as
 * `/`, so it would be a second path the policy never saw). Pure.
 */

/** The mesh-wide path normalization options, as Istio names them. */
export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;

/** One of PATH_NORMALIZATIONS. */
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];

/** What a sidecar applies when it was told nothing: BASE, as Istio. Never NONE by accident. */
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'BASE';

/** True when `v` is one of PATH_NORMALIZATIONS. */
export function isPathNormalization(v: unknown): v is PathNormalization {
  return typeof v === 'string' && (PATH_NORMALIZATIONS as readonly string[]).includes(v);
}

/** The outcome: the normalized path (no query), or why it was refused. */
export type NormalizedPath = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string };

const HEX = /^[0-9A-Fa-f]{2}$/;

/** RFC 3986 §2.3 unreserved characters. */
function isUnreserved(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39) || code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e;
}

/**
 * Normalizes an origin-form path (it starts with `/`; the query is the
 * caller's, cut off before) under `mode`. Fails closed as the module
 * comment says. Idempotent: normalizing a result changes nothing. Pure.
 */
export function normalizePath(path: string, mode: PathNormalization): NormalizedPath {
  if (!path.startsWith('/')) return { ok: false, reason: 'the path does not start with "/"' };
  let plain = true;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0) return { ok: false, reason: 'a NUL byte in the path' };
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'a control character in the path' };
    if (c === 0x20) return { ok: false, reason: 'a space in the path' };
    if (c > 0x7e) return { ok: false, reason: 'a byte outside ASCII in the path' };
    if (c === 0x23) return { ok: false, reason: 'a fragment ("#") in the request target' };
    if (c === 0x25) {
      const hex = path.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return { ok: false, reason: `an invalid percent-encoding "${path.slice(i, i + 3)}" in the path` };
      if (hex === '00') return { ok: false, reason: 'an encoded NUL (%00) in the path' };
      plain = false;
    } else if (c === 0x5c) {
      if (mode === 'NONE') return { ok: false, reason: 'a backslash in the path (refused under NONE: the application may read it as "/")' };
      plain = false;
    } else if (c === 0x2e && path.charCodeAt(i - 1) === 0x2f) {
      plain = false; // a segment starting with a dot: maybe "." or ".."
    } else if (c === 0x2f && path.charCodeAt(i - 1) === 0x2f && mode !== 'BASE') {
      plain = false;
    }
  }
  if (mode === 'NONE' || plain) return { ok: true, path };
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    if (ch === '%') {
      const hex = path.slice(i + 1, i + 3);
      const code = parseInt(hex, 16);
      i += 2;
      if (isUnreserved(code) || (decodeSlashes && (code === 0x2f || code === 0x5c))) out += String.fromCharCode(code);
      else out += '%' + hex.toUpperCase();
    } else {
      out += ch;
    }
  }
  out = removeDotSegments(out.replace(/\\/g, '/'));
  if (mode !== 'BASE') out = out.replace(/\/{2,}/g, '/');
  return { ok: true, path: out };
}

/** RFC 3986 §5.2.4 remove_dot_segments, for an absolute path. */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  // segments[0] is '' (the path starts with '/'); each later one follows a '/'.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return '/' + out.join('/');
}
