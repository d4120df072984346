/**
 * SPIFFE IDs: parsing, validation and formatting per the SPIFFE-ID spec.
 *
 * A SPIFFE ID is `spiffe://<trust domain><path>`. The trust domain is made of
 * lowercase letters, digits, `.`, `-` and `_`; the path is empty or a series of
 * `/segment`s made of letters, digits, `.`, `-` and `_`, with no empty, `.` or
 * `..` segment and no trailing slash. No query, fragment, port, userinfo or
 * percent-encoding, and at most 2048 bytes in all.
 *
 * The parser walks the string once by char code and allocates only the result:
 * it runs on every TLS handshake a sidecar verifies.
 *
 * Deliberate choices where the spec and go-spiffe differ (corpus `spec_ambiguities`):
 * - Case: SPIFFE-ID 2.1 says the trust domain MUST be lowercase, 2.4 says consumers
 *   compare scheme and trust domain case-insensitively. We follow go-spiffe and the
 *   MUST: `Spiffe://` and `Example.org` are rejected, never folded. Folding would
 *   let two spellings of one identity exist, which breaks exact-match policy.
 * - Length: the spec only says 2048 bytes MUST be supported; issue 2 makes 2048
 *   bytes the maximum, so longer IDs are rejected (`TRELLIS_SPIFFE_ID_TOO_LONG`),
 *   which go-spiffe does not do.
 */
import { TrellisError } from '../errors/trellis-error';

/** A parsed, valid SPIFFE ID. Instances are frozen. */
export interface SpiffeId {
  /** The trust domain name, e.g. `example.org` (never empty). */
  readonly trustDomain: string;
  /** `''` for the trust domain's own ID, otherwise starts with `/`. */
  readonly path: string;
  /** The canonical `spiffe://` form. */
  toString(): string;
}

/**
 * Every code a {@link SpiffeIdError} can carry. Stable; documented in docs/errors.md.
 */
export const SpiffeIdErrorCode = Object.freeze({
  /** The input was not a string. */
  NOT_A_STRING: 'TRELLIS_SPIFFE_ID_NOT_A_STRING',
  /** The input was the empty string. */
  EMPTY: 'TRELLIS_SPIFFE_ID_EMPTY',
  /** The input does not start with the exact lowercase `spiffe://`. */
  BAD_SCHEME: 'TRELLIS_SPIFFE_ID_BAD_SCHEME',
  /** Nothing between `spiffe://` and the path. */
  MISSING_TRUST_DOMAIN: 'TRELLIS_SPIFFE_ID_MISSING_TRUST_DOMAIN',
  /** A trust domain character outside `[a-z0-9._-]`. */
  BAD_TRUST_DOMAIN_CHAR: 'TRELLIS_SPIFFE_ID_BAD_TRUST_DOMAIN_CHAR',
  /** A `:port` after the trust domain. */
  PORT: 'TRELLIS_SPIFFE_ID_PORT',
  /** A `user@` before the trust domain. */
  USERINFO: 'TRELLIS_SPIFFE_ID_USERINFO',
  /** A `%` escape anywhere (SPIFFE IDs are never percent-encoded). */
  PERCENT_ENCODED: 'TRELLIS_SPIFFE_ID_PERCENT_ENCODED',
  /** A `?query`. */
  QUERY: 'TRELLIS_SPIFFE_ID_QUERY',
  /** A `#fragment`. */
  FRAGMENT: 'TRELLIS_SPIFFE_ID_FRAGMENT',
  /** A path character outside `[A-Za-z0-9._-]`. */
  BAD_PATH_CHAR: 'TRELLIS_SPIFFE_ID_BAD_PATH_CHAR',
  /** Two slashes in a row (`//`). */
  EMPTY_SEGMENT: 'TRELLIS_SPIFFE_ID_EMPTY_SEGMENT',
  /** A `.` or `..` path segment. */
  DOT_SEGMENT: 'TRELLIS_SPIFFE_ID_DOT_SEGMENT',
  /** The path ends with `/`. */
  TRAILING_SLASH: 'TRELLIS_SPIFFE_ID_TRAILING_SLASH',
  /** A path given on its own (to {@link formatSpiffeId}) that is not empty and does not start with `/`. */
  PATH_NOT_ABSOLUTE: 'TRELLIS_SPIFFE_ID_PATH_NOT_ABSOLUTE',
  /** More than 2048 bytes (UTF-8). */
  TOO_LONG: 'TRELLIS_SPIFFE_ID_TOO_LONG',
  /** A Kubernetes namespace that is not an RFC 1123 label. */
  BAD_K8S_NAMESPACE: 'TRELLIS_SPIFFE_ID_BAD_K8S_NAMESPACE',
  /** A Kubernetes service account name that is not an RFC 1123 subdomain. */
  BAD_K8S_SERVICE_ACCOUNT: 'TRELLIS_SPIFFE_ID_BAD_K8S_SERVICE_ACCOUNT',
});

/** One of the {@link SpiffeIdErrorCode} values. */
export type SpiffeIdErrorCodeValue = (typeof SpiffeIdErrorCode)[keyof typeof SpiffeIdErrorCode];

/** A SPIFFE ID (or trust domain, or path) that breaks a rule of the spec. */
export class SpiffeIdError extends TrellisError<SpiffeIdErrorCodeValue> {}

/** The maximum length of a SPIFFE ID in bytes (UTF-8), per issue 2 / SPIFFE-ID 2.3. */
export const MAX_SPIFFE_ID_BYTES = 2048;

const SCHEME = 'spiffe://';
const SCHEME_LEN = SCHEME.length;

// Lookup tables indexed by char code (< 128); everything >= 128 is invalid.
const TD_OK = new Uint8Array(128);
const PATH_OK = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const lower = c >= 0x61 && c <= 0x7a;
  const upper = c >= 0x41 && c <= 0x5a;
  const digit = c >= 0x30 && c <= 0x39;
  const punct = c === 0x2e || c === 0x2d || c === 0x5f; // . - _
  TD_OK[c] = lower || digit || punct ? 1 : 0;
  PATH_OK[c] = lower || upper || digit || punct ? 1 : 0;
}

const CH_SLASH = 0x2f;
const CH_DOT = 0x2e;

class ParsedSpiffeId implements SpiffeId {
  readonly trustDomain: string;
  readonly path: string;
  private readonly str: string;
  constructor(trustDomain: string, path: string, str: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    this.str = str;
    Object.freeze(this);
  }
  toString(): string {
    return this.str;
  }
  toJSON(): string {
    return this.str;
  }
}

/** Quotes untrusted input for an error message: JSON-escaped, cut at 120 chars. */
function show(s: string): string {
  return JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s);
}

function charName(c: number): string {
  return c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

function fail(code: SpiffeIdErrorCodeValue, input: string, rule: string, details: Record<string, unknown> = {}): never {
  throw new SpiffeIdError(code, `invalid SPIFFE ID ${show(input)}: ${rule}`, { input: input.length > 120 ? input.slice(0, 120) : input, ...details });
}

function tooLong(s: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings need no byte count.
  return s.length > MAX_SPIFFE_ID_BYTES || (s.length * 3 > MAX_SPIFFE_ID_BYTES && Buffer.byteLength(s, 'utf8') > MAX_SPIFFE_ID_BYTES);
}

/** Why a trust-domain character is refused, most specific first. */
function trustDomainCharFailure(input: string, c: number, offset: number, where: string): never {
  const d = { offset, char: charName(c) };
  switch (c) {
    case 0x3a: fail(SpiffeIdErrorCode.PORT, input, `${where} must not carry a port (':' at offset ${offset})`, d);
    case 0x40: fail(SpiffeIdErrorCode.USERINFO, input, `${where} must not carry userinfo ('@' at offset ${offset})`, d);
    case 0x25: fail(SpiffeIdErrorCode.PERCENT_ENCODED, input, `SPIFFE IDs are never percent-encoded ('%' at offset ${offset})`, d);
    case 0x3f: fail(SpiffeIdErrorCode.QUERY, input, `SPIFFE IDs must not have a query ('?' at offset ${offset})`, d);
    case 0x23: fail(SpiffeIdErrorCode.FRAGMENT, input, `SPIFFE IDs must not have a fragment ('#' at offset ${offset})`, d);
    default:
      fail(
        SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR,
        input,
        `${where} characters are limited to lowercase letters, digits, '.', '-' and '_' (${charName(c)} at offset ${offset})`,
        d,
      );
  }
}

function pathCharFailure(input: string, c: number, offset: number): never {
  const d = { offset, char: charName(c) };
  switch (c) {
    case 0x25: fail(SpiffeIdErrorCode.PERCENT_ENCODED, input, `SPIFFE IDs are never percent-encoded ('%' at offset ${offset})`, d);
    case 0x3f: fail(SpiffeIdErrorCode.QUERY, input, `SPIFFE IDs must not have a query ('?' at offset ${offset})`, d);
    case 0x23: fail(SpiffeIdErrorCode.FRAGMENT, input, `SPIFFE IDs must not have a fragment ('#' at offset ${offset})`, d);
    default:
      fail(
        SpiffeIdErrorCode.BAD_PATH_CHAR,
        input,
        `path segment characters are limited to letters, digits, '.', '-' and '_' (${charName(c)} at offset ${offset})`,
        d,
      );
  }
}

/** Checks `input[from, to)` as a trust domain; `to > from` is the caller's job. */
function checkTrustDomain(input: string, from: number, to: number, where: string): void {
  for (let i = from; i < to; i++) {
    const c = input.charCodeAt(i);
    if (c >= 128 || TD_OK[c] === 0) trustDomainCharFailure(input, c, i, where);
  }
}

/** Checks `input[from, end)` as a SPIFFE path; `input[from]` is '/' when non-empty. */
function checkPath(input: string, from: number): void {
  const end = input.length;
  let segStart = from; // index of the '/' opening the current segment
  for (let i = from + 1; i <= end; i++) {
    const c = i < end ? input.charCodeAt(i) : CH_SLASH;
    if (c === CH_SLASH) {
      const len = i - segStart - 1;
      if (len === 0) {
        if (i === end) fail(SpiffeIdErrorCode.TRAILING_SLASH, input, 'path cannot have a trailing slash', { offset: segStart });
        fail(SpiffeIdErrorCode.EMPTY_SEGMENT, input, `path cannot contain empty segments ('//' at offset ${segStart})`, { offset: segStart });
      }
      if (
        (len === 1 && input.charCodeAt(segStart + 1) === CH_DOT) ||
        (len === 2 && input.charCodeAt(segStart + 1) === CH_DOT && input.charCodeAt(segStart + 2) === CH_DOT)
      ) {
        fail(SpiffeIdErrorCode.DOT_SEGMENT, input, `path cannot contain '.' or '..' segments (at offset ${segStart})`, { offset: segStart });
      }
      segStart = i;
      continue;
    }
    if (c >= 128 || PATH_OK[c] === 0) pathCharFailure(input, c, i);
  }
}

/**
 * Parses and validates a SPIFFE ID.
 *
 * Throws {@link SpiffeIdError} with a `TRELLIS_SPIFFE_ID_*` code naming the first
 * broken rule (scanning left to right). Never normalises: the result's
 * `toString()` is exactly `input`.
 */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== 'string') {
    throw new SpiffeIdError(SpiffeIdErrorCode.NOT_A_STRING, `invalid SPIFFE ID: expected a string, got ${input === null ? 'null' : typeof input}`);
  }
  if (input.length === 0) fail(SpiffeIdErrorCode.EMPTY, input, 'cannot be empty');
  if (tooLong(input)) {
    fail(SpiffeIdErrorCode.TOO_LONG, input, `longer than ${MAX_SPIFFE_ID_BYTES} bytes`, { bytes: Buffer.byteLength(input, 'utf8') });
  }
  if (!input.startsWith(SCHEME)) fail(SpiffeIdErrorCode.BAD_SCHEME, input, "scheme must be exactly 'spiffe://' (lowercase)");
  let slash = input.indexOf('/', SCHEME_LEN);
  if (slash < 0) slash = input.length;
  if (slash === SCHEME_LEN) fail(SpiffeIdErrorCode.MISSING_TRUST_DOMAIN, input, 'trust domain is missing');
  checkTrustDomain(input, SCHEME_LEN, slash, 'trust domain');
  if (slash < input.length) checkPath(input, slash);
  return new ParsedSpiffeId(input.slice(SCHEME_LEN, slash), input.slice(slash), input);
}

/** True when `input` is a valid SPIFFE ID string. Never throws. */
export function isSpiffeId(input: unknown): input is string {
  if (typeof input !== 'string') return false;
  try {
    parseSpiffeId(input);
    return true;
  } catch {
    return false;
  }
}

/**
 * Validates a trust domain name and returns it.
 *
 * Accepts a bare name (`example.org`) or, like go-spiffe's TrustDomainFromString,
 * a full SPIFFE ID (`spiffe://example.org/x`), from which the trust domain is taken.
 * Throws {@link SpiffeIdError}.
 */
export function parseTrustDomain(input: string): string {
  if (typeof input !== 'string') {
    throw new SpiffeIdError(SpiffeIdErrorCode.NOT_A_STRING, `invalid trust domain: expected a string, got ${input === null ? 'null' : typeof input}`);
  }
  if (input.includes(':/')) return parseSpiffeId(input).trustDomain;
  if (input.length === 0) {
    throw new SpiffeIdError(SpiffeIdErrorCode.MISSING_TRUST_DOMAIN, 'invalid trust domain "": trust domain is missing', { input });
  }
  if (input.length > MAX_SPIFFE_ID_BYTES - SCHEME_LEN) {
    throw new SpiffeIdError(SpiffeIdErrorCode.TOO_LONG, `invalid trust domain ${show(input)}: longer than ${MAX_SPIFFE_ID_BYTES - SCHEME_LEN} bytes`, {});
  }
  try {
    checkTrustDomain(input, 0, input.length, 'trust domain');
  } catch (err) {
    if (err instanceof SpiffeIdError) {
      throw new SpiffeIdError(err.code, err.message.replace(/^invalid SPIFFE ID/, 'invalid trust domain'), { ...err.details });
    }
    throw err;
  }
  return input;
}

/**
 * Builds the canonical string for (trust domain, path) after validating both.
 *
 * `path` is `''` or starts with `/` (`TRELLIS_SPIFFE_ID_PATH_NOT_ABSOLUTE` otherwise).
 * Throws {@link SpiffeIdError}.
 */
export function formatSpiffeId(trustDomain: string, path: string): string {
  const td = parseTrustDomain(trustDomain);
  if (trustDomain.includes(':/')) {
    throw new SpiffeIdError(SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR, `invalid trust domain ${show(trustDomain)}: expected a bare trust domain name, not a SPIFFE ID`, {});
  }
  if (typeof path !== 'string') {
    throw new SpiffeIdError(SpiffeIdErrorCode.NOT_A_STRING, `invalid SPIFFE ID path: expected a string, got ${path === null ? 'null' : typeof path}`);
  }
  if (path.length > 0 && path.charCodeAt(0) !== CH_SLASH) {
    throw new SpiffeIdError(SpiffeIdErrorCode.PATH_NOT_ABSOLUTE, `invalid SPIFFE ID path ${show(path)}: must be empty or start with '/'`, { path });
  }
  return parseSpiffeId(SCHEME + td + path).toString();
}

/** Builds a {@link SpiffeId} from parts, validating both. Throws {@link SpiffeIdError}. */
export function spiffeIdFromParts(trustDomain: string, path: string): SpiffeId {
  const s = formatSpiffeId(trustDomain, path);
  return new ParsedSpiffeId(trustDomain, path, s);
}

/** The SPIFFE ID of a trust domain itself (`spiffe://<td>`, empty path), as used in CA certificates. */
export function trustDomainSpiffeId(trustDomain: string): SpiffeId {
  return spiffeIdFromParts(trustDomain, '');
}

// RFC 1123 label (Kubernetes namespaces): 1-63 of [a-z0-9-], alphanumeric at both ends.
const K8S_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
// RFC 1123 subdomain (Kubernetes object names such as service accounts): dot-separated labels, <= 253.
const K8S_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** True when `s` is a valid Kubernetes namespace name (RFC 1123 label). */
export function isKubernetesNamespace(s: string): boolean {
  return typeof s === 'string' && K8S_LABEL.test(s);
}

/** True when `s` is a valid Kubernetes service account name (RFC 1123 subdomain). */
export function isKubernetesServiceAccount(s: string): boolean {
  return typeof s === 'string' && s.length <= 253 && K8S_SUBDOMAIN.test(s) && s.split('.').every((l) => l.length <= 63);
}

/**
 * The Istio-compatible Kubernetes identity `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>`.
 *
 * Throws {@link SpiffeIdError}: `TRELLIS_SPIFFE_ID_BAD_K8S_NAMESPACE` /
 * `..._BAD_K8S_SERVICE_ACCOUNT` when the names are not valid Kubernetes names
 * (which also keeps them inside the SPIFFE path alphabet).
 */
export function kubernetesSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): SpiffeId {
  if (!isKubernetesNamespace(namespace)) {
    throw new SpiffeIdError(
      SpiffeIdErrorCode.BAD_K8S_NAMESPACE,
      `invalid Kubernetes namespace ${show(String(namespace))}: must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
      { namespace },
    );
  }
  if (!isKubernetesServiceAccount(serviceAccount)) {
    throw new SpiffeIdError(
      SpiffeIdErrorCode.BAD_K8S_SERVICE_ACCOUNT,
      `invalid Kubernetes service account ${show(String(serviceAccount))}: must be an RFC 1123 subdomain (lowercase letters, digits, '-', '.'; at most 253 characters)`,
      { serviceAccount },
    );
  }
  return spiffeIdFromParts(trustDomain, `/ns/${namespace}/sa/${serviceAccount}`);
}

/** The parts of a Kubernetes-form SPIFFE ID. */
export interface KubernetesIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * Splits `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>` into its parts.
 *
 * Returns `undefined` (never throws) when `id` is not a valid SPIFFE ID, when the
 * path is not exactly that four-segment form, or when the names are not valid
 * Kubernetes names: callers treat "not a Kubernetes identity" as a refusal.
 */
export function parseKubernetesSpiffeId(id: SpiffeId | string): KubernetesIdentity | undefined {
  let parsed: SpiffeId;
  if (typeof id === 'string') {
    try {
      parsed = parseSpiffeId(id);
    } catch {
      return undefined;
    }
  } else {
    parsed = id;
  }
  const parts = parsed.path.split('/');
  // ['', 'ns', NS, 'sa', SA]
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') return undefined;
  const namespace = parts[2]!;
  const serviceAccount = parts[4]!;
  if (!isKubernetesNamespace(namespace) || !isKubernetesServiceAccount(serviceAccount)) return undefined;
  return Object.freeze({ trustDomain: parsed.trustDomain, namespace, serviceAccount });
}
