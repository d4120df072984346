import { expect } from 'chai';
import { parseCertificate, type CertificateFacts } from '../../src/x509/certificate-facts';
import { pemToDer } from '../../src/x509/pem';
import { X509Error } from '../../src/x509/x509-error';
import { Oid } from '../../src/x509/oids';
import { PathErrorCode, verifyCertificatePath } from '../../src/x509/path-validation';
import { readCorpusJson } from '../identity/corpora';

interface LimboCase {
  id: string;
  validation_kind: 'SERVER' | 'CLIENT';
  trusted_certs: string[];
  untrusted_intermediates: string[];
  peer_certificate: string;
  validation_time: string | null;
  expected_result: 'SUCCESS' | 'FAILURE';
  max_chain_depth: number | null;
}
interface LimboManifest {
  cases_2023: { id: string; relevance: string }[];
  cases_regenerated: { id: string; relevance: string }[];
}

/**
 * Cases where we deliberately disagree with x509-limbo, and why. The test
 * checks that they still disagree, so a behaviour change forces a look here.
 */
const DIVERGENT: Record<string, string> = {
  'crl::revoked-certificate-with-crl': 'no CRL support: Trellis revokes through the control plane revocation resource',
  'crl::crlnumber-missing': 'no CRL support',
  'crl::crlnumber-critical': 'no CRL support',
  'crl::issuer-missing-crlsign': 'no CRL support',
  'rfc5280::ca-as-leaf-wrong-san': 'DNS peer names are not checked: SPIFFE peers are matched by SPIFFE ID',
  'rfc5280::aki::cross-signed-root-missing-aki':
    'tagged pedantic-rfc5280; a trust anchor is a (name, key) pair (RFC 5280 6.1.1), and requiring AKI on anchors breaks cve::cve-2024-0567',
};

function facts(pem: string): CertificateFacts {
  return parseCertificate(pemToDer(pem)[0]!);
}

/** Verifies a case; a certificate our reader refuses (e.g. a negative serial) counts as a rejection. */
function run(t: LimboCase): { ok: boolean; detail: string } {
  try {
    return verify(t);
  } catch (err) {
    if (err instanceof X509Error) return { ok: false, detail: `${err.code}: ${err.message}` };
    throw err;
  }
}

function verify(t: LimboCase): { ok: boolean; detail: string } {
  const v = verifyCertificatePath(facts(t.peer_certificate), t.untrusted_intermediates.map(facts), t.trusted_certs.map(facts), {
    now: t.validation_time ? new Date(t.validation_time) : new Date(),
    requiredEku: t.validation_kind === 'SERVER' ? Oid.serverAuth : Oid.clientAuth,
    ...(t.max_chain_depth !== null ? { maxIntermediates: t.max_chain_depth } : {}),
  });
  return { ok: v.ok, detail: v.ok ? 'ok' : `${v.code}: ${v.reason}` };
}

describe('Certificate path validation against x509-limbo chain-and-extensions cases', function () {
  this.timeout(20_000);
  const manifest = readCorpusJson<LimboManifest>('x509-limbo', 'manifest.json');
  const files: [string, { id: string; relevance: string }[]][] = [
    ['limbo-2023-12-02.json', manifest.cases_2023],
    ['limbo-regenerated-c2sp-8a2e6f41.json', manifest.cases_regenerated],
  ];
  for (const [file, tags] of files) {
    it(`gives every chain-and-extensions case in ${file} its expected result, except the documented divergences`, () => {
      const relevant = new Set(tags.filter((c) => c.relevance === 'chain-and-extensions').map((c) => c.id));
      const cases = readCorpusJson<{ testcases: LimboCase[] }>('x509-limbo', file).testcases.filter((t) => relevant.has(t.id));
      expect(cases.length).to.be.greaterThan(40);
      const wrong: string[] = [];
      for (const t of cases) {
        const r = run(t);
        const agrees = r.ok === (t.expected_result === 'SUCCESS');
        if (agrees === (DIVERGENT[t.id] !== undefined)) {
          wrong.push(`${t.id}: expected ${t.expected_result}${DIVERGENT[t.id] ? ' (listed as divergent)' : ''}, got ${r.detail}`);
        }
      }
      expect(wrong).to.deep.equal([]);
    });
  }

  it('reports why a chain fails, with a stable code', () => {
    const cases = readCorpusJson<{ testcases: LimboCase[] }>('x509-limbo', 'limbo-regenerated-c2sp-8a2e6f41.json').testcases;
    const byId = (id: string): LimboCase => cases.find((c) => c.id === id)!;
    const expectCode = (id: string, code: string): void => {
      const t = byId(id);
      expect(t, id).to.not.equal(undefined);
      expect(run(t).detail, id).to.match(new RegExp('^' + code));
    };
    expectCode('pathlen::intermediate-violates-pathlen-0', PathErrorCode.PATH_LEN_EXCEEDED);
    expectCode('rfc5280::leaf-ku-keycertsign', PathErrorCode.NONCONFORMING);
    expectCode('rfc5280::serial::zero', PathErrorCode.NONCONFORMING);
  });
});
