import { expect } from 'chai';
import * as fc from 'fast-check';
import {
  SpiffeIdError,
  SpiffeIdErrorCode,
  formatSpiffeId,
  isSpiffeId,
  kubernetesSpiffeId,
  parseKubernetesSpiffeId,
  parseSpiffeId,
  parseTrustDomain,
  spiffeIdFromParts,
  trustDomainSpiffeId,
} from '../../src/identity/spiffe-id';
import { CORPORA, describeWith, itWith, readCorpusJson } from '@trellis/testkit';

interface IdCase {
  id: string;
  expected: 'valid' | 'invalid';
  reason_code?: string | null;
  trust_domain?: string | null;
  path?: string | null;
}
interface Manifest {
  id_cases: IdCase[];
  trust_domain_cases: { input: string; expected: string; trust_domain?: string }[];
  path_segment_cases: { segment?: string; segments?: string[]; expected: string; joined_path?: string }[];
}
interface Sweep {
  id_sweep: { id: string; codepoint: number; position: string; expected: string }[];
  trust_domain_sweep: { trust_domain: string; codepoint: number; expected: string }[];
}

let cachedManifest: Manifest | undefined;
let cachedSweep: Sweep | undefined;
/** The corpus files, read inside suites gated on the corpora. */
const manifest = (): Manifest => (cachedManifest ??= readCorpusJson<Manifest>('spiffe-id', 'manifest.json'));
const sweep = (): Sweep => (cachedSweep ??= readCorpusJson<Sweep>('spiffe-id', 'charset_sweep.json'));

/** The corpus's go-spiffe reason families, mapped to our codes. */
const FAMILY: Record<string, string> = {
  EMPTY: SpiffeIdErrorCode.EMPTY,
  SCHEME: SpiffeIdErrorCode.BAD_SCHEME,
  TD_MISSING: SpiffeIdErrorCode.MISSING_TRUST_DOMAIN,
  TD_CHAR: SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR,
  PATH_CHAR: SpiffeIdErrorCode.BAD_PATH_CHAR,
  DOT: SpiffeIdErrorCode.DOT_SEGMENT,
  EMPTY_SEG: SpiffeIdErrorCode.EMPTY_SEGMENT,
  TRAILING: SpiffeIdErrorCode.TRAILING_SLASH,
};

/**
 * Where go-spiffe reports a generic "bad character" we name the URL feature
 * the character introduces (port, userinfo, query, fragment, percent-escape),
 * so an operator sees the real mistake. Same verdict, finer code.
 */
function refinedCode(bad: string): string | undefined {
  if (bad === ':') return SpiffeIdErrorCode.PORT;
  if (bad === '@') return SpiffeIdErrorCode.USERINFO;
  if (bad === '?') return SpiffeIdErrorCode.QUERY;
  if (bad === '#') return SpiffeIdErrorCode.FRAGMENT;
  if (bad === '%') return SpiffeIdErrorCode.PERCENT_ENCODED;
  return undefined;
}

const ID_OVERRIDES: Record<string, string> = {
  'spiffe://td:8080/a': SpiffeIdErrorCode.PORT,
  'spiffe://u@td/a': SpiffeIdErrorCode.USERINFO,
  'spiffe://td/a?x=1': SpiffeIdErrorCode.QUERY,
  'spiffe://td/a#f': SpiffeIdErrorCode.FRAGMENT,
  'spiffe://%F0%9F%A4%AF/path': SpiffeIdErrorCode.PERCENT_ENCODED,
  'spiffe://trustdomain/%F0%9F%A4%AF': SpiffeIdErrorCode.PERCENT_ENCODED,
  'spiffe://%62%61%64/path': SpiffeIdErrorCode.PERCENT_ENCODED,
  'spiffe://trustdomain/%62%61%64': SpiffeIdErrorCode.PERCENT_ENCODED,
  'spiffe://td/%41': SpiffeIdErrorCode.PERCENT_ENCODED,
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).to.be.instanceOf(SpiffeIdError);
    return (err as SpiffeIdError).code;
  }
}

describe('SPIFFE ID parsing', () => {
  describeWith(CORPORA, 'against the spiffe-id corpus id_cases', () => {
    it('has the corpus cases loaded', () => {
      expect(manifest().id_cases.length).to.be.greaterThan(50);
    });
    for (const c of manifest().id_cases) {
      const label = c.id.length > 80 ? `${c.id.slice(0, 60)}… (${c.id.length} bytes)` : JSON.stringify(c.id);
      if (c.expected === 'valid') {
        it(`accepts ${label} and splits it into trust domain and path`, () => {
          const id = parseSpiffeId(c.id);
          expect(id.trustDomain).to.equal(c.trust_domain);
          expect(id.path).to.equal(c.path);
          expect(id.toString()).to.equal(c.id);
          expect(isSpiffeId(c.id)).to.equal(true);
        });
      } else {
        const want = ID_OVERRIDES[c.id] ?? FAMILY[c.reason_code!];
        it(`rejects ${label} with ${want}`, () => {
          expect(want, `no mapping for reason ${c.reason_code}`).to.be.a('string');
          expect(codeOf(() => parseSpiffeId(c.id))).to.equal(want);
          expect(isSpiffeId(c.id)).to.equal(false);
        });
      }
    }
  });

  describeWith(CORPORA, 'against the per-character sweep', () => {
    it('gives every one of the 510 ID sweep cases its expected verdict and code', () => {
      expect(sweep().id_sweep.length).to.equal(510);
      const wrong: string[] = [];
      for (const c of sweep().id_sweep) {
        const ch = String.fromCodePoint(c.codepoint);
        const code = codeOf(() => parseSpiffeId(c.id));
        if (c.expected === 'valid') {
          if (code !== undefined) wrong.push(`${c.codepoint}@${c.position}: expected valid, got ${code}`);
          continue;
        }
        const family = c.position === 'trust_domain' ? SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR : SpiffeIdErrorCode.BAD_PATH_CHAR;
        let want = refinedCode(ch) ?? family;
        // ':' and '@' are only URL features in the authority; in a path they are plain bad characters.
        if (c.position === 'path' && (ch === ':' || ch === '@')) want = family;
        if (code !== want) wrong.push(`${c.codepoint}@${c.position}: expected ${want}, got ${code}`);
      }
      expect(wrong).to.deep.equal([]);
    });

    it('gives every one of the 256 trust-domain sweep cases its expected verdict', () => {
      expect(sweep().trust_domain_sweep.length).to.equal(256);
      const wrong: string[] = [];
      for (const c of sweep().trust_domain_sweep) {
        let ok = true;
        try {
          expect(parseTrustDomain(c.trust_domain)).to.equal(c.trust_domain);
        } catch {
          ok = false;
        }
        if (ok !== (c.expected === 'valid')) wrong.push(`${c.codepoint}: expected ${c.expected}`);
      }
      expect(wrong).to.deep.equal([]);
    });
  });

  describeWith(CORPORA, 'against trust_domain_cases', () => {
    for (const c of manifest().trust_domain_cases) {
      it(`${c.expected === 'valid' ? 'accepts' : 'rejects'} trust domain input ${JSON.stringify(c.input)}`, () => {
        if (c.expected === 'valid') expect(parseTrustDomain(c.input)).to.equal(c.trust_domain);
        else expect(codeOf(() => parseTrustDomain(c.input))).to.equal(SpiffeIdErrorCode.MISSING_TRUST_DOMAIN);
      });
    }
  });

  describeWith(CORPORA, 'against path_segment_cases', () => {
    for (const c of manifest().path_segment_cases) {
      const segs = c.segments ?? [c.segment!];
      it(`${c.expected === 'valid' ? 'accepts' : 'rejects'} path segments ${JSON.stringify(segs)}`, () => {
        const path = '/' + segs.join('/');
        if (c.expected === 'valid') {
          expect(spiffeIdFromParts('example.org', path).path).to.equal(c.joined_path ?? path);
        } else {
          expect(codeOf(() => formatSpiffeId('example.org', path))).to.be.a('string');
        }
      });
    }
  });

  it('rejects an ID longer than 2048 bytes and accepts one of exactly 2048', () => {
    const prefix = 'spiffe://example.org/';
    const exact = prefix + 'a'.repeat(2048 - prefix.length);
    expect(parseSpiffeId(exact).toString()).to.have.length(2048);
    expect(codeOf(() => parseSpiffeId(exact + 'a'))).to.equal(SpiffeIdErrorCode.TOO_LONG);
  });

  it('counts length in UTF-8 bytes, not UTF-16 units', () => {
    const s = 'spiffe://example.org/' + 'é'.repeat(1100); // 2221 bytes, 1121 units
    expect(codeOf(() => parseSpiffeId(s))).to.equal(SpiffeIdErrorCode.TOO_LONG);
  });

  it('rejects a non-string input with a typed error instead of crashing', () => {
    expect(codeOf(() => parseSpiffeId(undefined as unknown as string))).to.equal(SpiffeIdErrorCode.NOT_A_STRING);
    expect(codeOf(() => parseSpiffeId(42 as unknown as string))).to.equal(SpiffeIdErrorCode.NOT_A_STRING);
    expect(isSpiffeId(null)).to.equal(false);
  });

  it('returns a frozen value whose toString is the input', () => {
    const id = parseSpiffeId('spiffe://example.org/ns/a/sa/b');
    expect(Object.isFrozen(id)).to.equal(true);
    expect(String(id)).to.equal('spiffe://example.org/ns/a/sa/b');
    expect(JSON.stringify({ id })).to.equal('{"id":"spiffe://example.org/ns/a/sa/b"}');
  });

  it('names the offending character and its offset in the message', () => {
    try {
      parseSpiffeId('spiffe://example.org/a$b');
      expect.fail('should throw');
    } catch (err) {
      const e = err as SpiffeIdError;
      expect(e.code).to.equal(SpiffeIdErrorCode.BAD_PATH_CHAR);
      expect(e.details).to.include({ offset: 22, char: "'$'" });
    }
  });
});

describe('SPIFFE ID formatting', () => {
  it('joins a trust domain and an absolute path', () => {
    expect(formatSpiffeId('example.org', '/a/b')).to.equal('spiffe://example.org/a/b');
    expect(formatSpiffeId('example.org', '')).to.equal('spiffe://example.org');
    expect(trustDomainSpiffeId('example.org').toString()).to.equal('spiffe://example.org');
  });

  it('refuses a relative path', () => {
    expect(codeOf(() => formatSpiffeId('example.org', 'a/b'))).to.equal(SpiffeIdErrorCode.PATH_NOT_ABSOLUTE);
  });

  it('refuses a full SPIFFE ID where a bare trust domain is expected', () => {
    expect(codeOf(() => formatSpiffeId('spiffe://example.org', '/a'))).to.equal(SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR);
  });

  it('refuses an uppercase trust domain instead of folding it', () => {
    expect(codeOf(() => formatSpiffeId('Example.org', '/a'))).to.equal(SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR);
  });

  itWith(CORPORA, 'round-trips parse and format for every valid corpus ID', () => {
    for (const c of manifest().id_cases.filter((x) => x.expected === 'valid')) {
      const id = parseSpiffeId(c.id);
      expect(formatSpiffeId(id.trustDomain, id.path)).to.equal(c.id);
    }
  });
});

describe('Kubernetes SPIFFE IDs', () => {
  it('builds spiffe://<td>/ns/<ns>/sa/<sa>', () => {
    const id = kubernetesSpiffeId('cluster.local', 'default', 'bookinfo-productpage');
    expect(id.toString()).to.equal('spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
    expect(id.trustDomain).to.equal('cluster.local');
  });

  it('splits the Kubernetes form back into its parts, from a string or a parsed ID', () => {
    const want = { trustDomain: 'k8s-west.example.com', namespace: 'staging', serviceAccount: 'default' };
    expect(parseKubernetesSpiffeId('spiffe://k8s-west.example.com/ns/staging/sa/default')).to.deep.equal(want);
    expect(parseKubernetesSpiffeId(parseSpiffeId('spiffe://k8s-west.example.com/ns/staging/sa/default'))).to.deep.equal(want);
  });

  const notK8s = [
    'spiffe://example.org',
    'spiffe://example.org/ns/default',
    'spiffe://example.org/ns/default/sa',
    'spiffe://example.org/ns/default/sa/x/extra',
    'spiffe://example.org/sa/x/ns/default',
    'spiffe://example.org/ns/Default/sa/x',
    'spiffe://example.org/ns/default/sa/X',
    'spiffe://example.org/ns/-bad/sa/x',
    'spiffe://example.org/ns/default/sa/x_y',
    'spiffe://example.org/ns//sa/x',
    'not a spiffe id',
  ];
  for (const s of notK8s) {
    it(`returns undefined for ${JSON.stringify(s)}`, () => {
      expect(parseKubernetesSpiffeId(s)).to.equal(undefined);
    });
  }

  it('refuses namespaces and service accounts that are not Kubernetes names', () => {
    expect(codeOf(() => kubernetesSpiffeId('cluster.local', 'Default', 'sa'))).to.equal(SpiffeIdErrorCode.BAD_K8S_NAMESPACE);
    expect(codeOf(() => kubernetesSpiffeId('cluster.local', 'a'.repeat(64), 'sa'))).to.equal(SpiffeIdErrorCode.BAD_K8S_NAMESPACE);
    expect(codeOf(() => kubernetesSpiffeId('cluster.local', 'ns', 'sa/../x'))).to.equal(SpiffeIdErrorCode.BAD_K8S_SERVICE_ACCOUNT);
    expect(codeOf(() => kubernetesSpiffeId('cluster.local', 'ns', ''))).to.equal(SpiffeIdErrorCode.BAD_K8S_SERVICE_ACCOUNT);
    expect(codeOf(() => kubernetesSpiffeId('Cluster.local', 'ns', 'sa'))).to.equal(SpiffeIdErrorCode.BAD_TRUST_DOMAIN_CHAR);
  });

  it('accepts a dotted service account name', () => {
    expect(kubernetesSpiffeId('cluster.local', 'ns', 'system.worker').path).to.equal('/ns/ns/sa/system.worker');
  });
});

describe('SPIFFE ID parsing, property-based', () => {
  // An independent statement of the grammar: a regex, not a scanner.
  const GRAMMAR = /^spiffe:\/\/[a-z0-9._-]+(\/(?!\.\.?(\/|$))[A-Za-z0-9._-]+)*$/;
  const alphabet = fc.constantFrom(...'spiffe:/abcXYZ019._-%?#@:'.split(''), 'é', '\u0000', ' ');
  const idLike = fc.tuple(fc.constantFrom('spiffe://', 'spiffe:/', 'Spiffe://', ''), fc.array(alphabet, { maxLength: 40 })).map(([p, cs]) => p + cs.join(''));

  it('agrees with the grammar regex on random ID-like strings, and only ever throws SpiffeIdError', () => {
    fc.assert(
      fc.property(idLike, (input) => {
        let ok: boolean;
        try {
          const id = parseSpiffeId(input);
          ok = true;
          expect(id.toString()).to.equal(input);
          expect('spiffe://' + id.trustDomain + id.path).to.equal(input);
        } catch (err) {
          if (!(err instanceof SpiffeIdError)) throw err;
          ok = false;
        }
        return ok === GRAMMAR.test(input);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses every generated valid ID back into its parts', () => {
    const td = fc.stringMatching(/^[a-z0-9._-]{1,20}$/);
    const seg = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((x) => x !== '.' && x !== '..');
    fc.assert(
      fc.property(td, fc.array(seg, { maxLength: 6 }), (t, segs) => {
        const path = segs.map((x) => '/' + x).join('');
        const id = parseSpiffeId(`spiffe://${t}${path}`);
        return id.trustDomain === t && id.path === path && formatSpiffeId(t, path) === id.toString();
      }),
    );
  });
});
