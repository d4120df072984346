/**
 * Federation: the other trust domains whose bundles we accept, read from a
 * config file, and the decision whether a peer's trust domain is one we
 * federate with. The decision is pure; loading the listed bundle files is
 * the only I/O.
 *
 * Config (YAML or JSON):
 *
 *     federatesWith:
 *       - trustDomain: partner.example
 *         bundleFile: partner.bundle.json   # SPIFFE bundle document, or PEM
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parsePemBundle, parseSpiffeBundle, parseTrustDomain, TrellisError, type TrustBundle } from '@trellis/shared';
import { LifecycleError, LifecycleErrorCode } from './lifecycle-error';

/** One federated trust domain as configured. */
export interface FederationEntry {
  readonly trustDomain: string;
  /** Absolute path of its bundle. */
  readonly bundleFile: string;
}

/** One problem found in the config, with its field path. */
export interface FederationIssue {
  readonly path: string;
  readonly message: string;
}

/**
 * Parses the federation config, collecting every problem (field path +
 * reason) before failing with BAD_FEDERATION. Relative bundle paths are
 * resolved against the config file's folder. Our own trust domain may not
 * be listed (its bundle comes from the CA).
 */
export function parseFederationConfig(text: string, source: string, localTrustDomain: string): readonly FederationEntry[] {
  const issues: FederationIssue[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${source}: not valid YAML/JSON (${(err as Error).message})`, { file: source, issues: [] }, { cause: err });
  }
  const list = (doc as { federatesWith?: unknown } | null)?.federatesWith;
  if (doc === null || doc === undefined) return Object.freeze([]);
  if (!Array.isArray(list)) {
    issues.push({ path: 'federatesWith', message: 'must be a list' });
  } else {
    const seen = new Set<string>();
    const out: FederationEntry[] = [];
    list.forEach((e: unknown, i: number) => {
      const p = `federatesWith[${i}]`;
      const r = e as Record<string, unknown>;
      if (typeof r !== 'object' || r === null) {
        issues.push({ path: p, message: 'must be a mapping with trustDomain and bundleFile' });
        return;
      }
      let td: string | null = null;
      try {
        td = parseTrustDomain(String(r['trustDomain'] ?? ''));
      } catch (err) {
        issues.push({ path: `${p}.trustDomain`, message: err instanceof TrellisError ? err.message : 'invalid trust domain' });
      }
      if (td !== null && td === localTrustDomain) issues.push({ path: `${p}.trustDomain`, message: `${td} is our own trust domain` });
      if (td !== null && seen.has(td)) issues.push({ path: `${p}.trustDomain`, message: `${td} is listed twice` });
      if (td !== null) seen.add(td);
      const file = r['bundleFile'];
      if (typeof file !== 'string' || file === '') issues.push({ path: `${p}.bundleFile`, message: 'must be a path' });
      else if (td !== null) out.push(Object.freeze({ trustDomain: td, bundleFile: isAbsolute(file) ? file : join(dirname(source), file) }));
    });
    if (issues.length === 0) return Object.freeze(out);
  }
  throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${source}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { file: source, issues });
}

/** Reads one bundle file: a SPIFFE bundle document (JSON) or PEM. */
export function loadFederatedBundle(entry: FederationEntry): TrustBundle {
  let text: string;
  try {
    text = readFileSync(entry.bundleFile, 'utf8');
  } catch (err) {
    throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${entry.bundleFile}: cannot read the bundle of ${entry.trustDomain} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: entry.bundleFile }, { cause: err });
  }
  try {
    const bundle = text.trimStart().startsWith('{') ? parseSpiffeBundle(entry.trustDomain, text, entry.bundleFile) : parsePemBundle(entry.trustDomain, text, entry.bundleFile);
    if (bundle.x509Authorities.length === 0) throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${entry.bundleFile}: the bundle of ${entry.trustDomain} holds no X.509 authority`, { file: entry.bundleFile });
    return bundle;
  } catch (err) {
    if (err instanceof LifecycleError) throw err;
    const code = err instanceof TrellisError ? ` [${err.code}]` : '';
    throw new LifecycleError(LifecycleErrorCode.BAD_FEDERATION, `${entry.bundleFile}: not a usable bundle for ${entry.trustDomain}: ${(err as Error).message}${code}`, { file: entry.bundleFile }, { cause: err });
  }
}

/**
 * Whether a peer of `peerTrustDomain` may be authenticated at all: our own
 * trust domain, or one we federate with and hold a non-empty bundle for.
 * Fails closed: any other trust domain is refused, with the reason.
 */
export function federationDecision(peerTrustDomain: string, localTrustDomain: string, federated: readonly TrustBundle[]): { allowed: boolean; reason: string } {
  if (peerTrustDomain === localTrustDomain) return { allowed: true, reason: 'local trust domain' };
  const b = federated.find((f) => f.trustDomain === peerTrustDomain);
  if (!b) return { allowed: false, reason: `trust domain ${peerTrustDomain} is not federated` };
  if (b.x509Authorities.length === 0) return { allowed: false, reason: `the bundle of ${peerTrustDomain} is empty` };
  return { allowed: true, reason: `federated with ${peerTrustDomain}` };
}
