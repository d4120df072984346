import { expect } from 'chai';
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import * as der from '../../src/x509/der';
import { parseCertificate, type CertificateFacts } from '../../src/x509/certificate-facts';
import { pemToDer } from '../../src/x509/pem';
import { X509Error } from '../../src/x509/x509-error';
import { Oid } from '../../src/x509/oids';
import { PathErrorCode, verifyCertificatePath } from '../../src/x509/path-validation';
import { CORPORA, describeWith, readCorpusJson } from '@trellis/testkit';

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

describeWith(CORPORA, 'Certificate path validation against x509-limbo chain-and-extensions cases', function () {
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

describe('Certificate path validation on crafted chains', () => {
  interface Key {
    pub: KeyObject;
    priv: KeyObject;
    rsa: boolean;
  }
  const ecKey = (): Key => {
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { pub: k.publicKey, priv: k.privateKey, rsa: false };
  };
  const rsaKey = (bits: number): Key => {
    const k = generateKeyPairSync('rsa', { modulusLength: bits });
    return { pub: k.publicKey, priv: k.privateKey, rsa: true };
  };
  const skiOf = (k: Key): Buffer => createHash('sha1').update(k.pub.export({ type: 'spki', format: 'der' })).digest();
  const name = (cn: string): Buffer => der.sequence(der.set(der.sequence(der.oid(Oid.commonName), der.utf8String(cn))));
  const ext = (o: string, v: Buffer, critical = false): Buffer =>
    critical ? der.sequence(der.oid(o), der.boolean(true), der.octetString(v)) : der.sequence(der.oid(o), der.octetString(v));

  /** A certificate for `key` named `cn`, issued by `issuerCn` and signed with `signer`. */
  function cert(cn: string, key: Key, issuerCn: string, issuerKey: Key, signer: Key, ca: boolean): CertificateFacts {
    const alg = der.sequence(der.oid(signer.rsa ? Oid.sha256WithRsa : Oid.ecdsaWithSha256), ...(signer.rsa ? [der.nullValue()] : []));
    const tbs = der.sequence(
      der.contextExplicit(0, der.integer(2)),
      der.integer(Buffer.from(cn.padEnd(8, '.'))),
      alg,
      name(issuerCn),
      der.sequence(der.time(new Date('2024-01-01T00:00:00Z')), der.time(new Date('2030-01-01T00:00:00Z'))),
      name(cn),
      key.pub.export({ type: 'spki', format: 'der' }),
      der.contextExplicit(
        3,
        der.sequence(
          ext(Oid.basicConstraints, ca ? der.sequence(der.boolean(true)) : der.sequence(), true),
          ext(Oid.keyUsage, der.namedBits(ca ? [5, 6] : [0]), true),
          ext(Oid.subjectKeyIdentifier, der.octetString(skiOf(key))),
          ext(Oid.authorityKeyIdentifier, der.sequence(der.contextImplicit(0, skiOf(issuerKey)))),
        ),
      ),
    );
    return parseCertificate(der.sequence(tbs, alg, der.bitString(sign('sha256', tbs, signer.priv))));
  }
  const now = new Date('2025-01-01T00:00:00Z');

  it('accepts a well-formed root -> intermediate -> leaf chain', () => {
    const rk = ecKey();
    const ik = ecKey();
    const lk = ecKey();
    const root = cert('root', rk, 'root', rk, rk, true);
    const inter = cert('int', ik, 'root', rk, rk, true);
    const leaf = cert('leaf', lk, 'int', ik, ik, false);
    const v = verifyCertificatePath(leaf, [inter], [root], { now });
    expect(v.ok && v.path.map((c) => c.subjectText)).to.deep.equal(['CN=leaf', 'CN=int', 'CN=root']);
  });

  it('refuses a leaf whose signature is not the named issuer key (BAD_SIGNATURE)', () => {
    const rk = ecKey();
    const forger = ecKey();
    const root = cert('root', rk, 'root', rk, rk, true);
    const leaf = cert('leaf', ecKey(), 'root', rk, forger, false);
    expect(verifyCertificatePath(leaf, [], [root], { now })).to.include({ ok: false, code: PathErrorCode.BAD_SIGNATURE });
  });

  it('refuses a chain through a 1024-bit RSA intermediate (WEAK_KEY)', function () {
    this.timeout(20_000);
    const rk = ecKey();
    const weak = rsaKey(1024);
    const root = cert('root', rk, 'root', rk, rk, true);
    const inter = cert('int', weak, 'root', rk, rk, true);
    const leaf = cert('leaf', ecKey(), 'int', weak, weak, false);
    expect(verifyCertificatePath(leaf, [inter], [root], { now })).to.include({ ok: false, code: PathErrorCode.WEAK_KEY });
  });

  it('accepts a 2048-bit RSA intermediate', function () {
    this.timeout(20_000);
    const rk = ecKey();
    const ok = rsaKey(2048);
    const root = cert('root', rk, 'root', rk, rk, true);
    const inter = cert('int', ok, 'root', rk, rk, true);
    const leaf = cert('leaf', ecKey(), 'int', ok, ok, false);
    expect(verifyCertificatePath(leaf, [inter], [root], { now }).ok).to.equal(true);
  });

  it('refuses an intermediate that is not a CA, and a leaf outside its validity', () => {
    const rk = ecKey();
    const ik = ecKey();
    const root = cert('root', rk, 'root', rk, rk, true);
    const notCa = cert('int', ik, 'root', rk, rk, false);
    const leaf = cert('leaf', ecKey(), 'int', ik, ik, false);
    expect(verifyCertificatePath(leaf, [notCa], [root], { now })).to.include({ ok: false, code: PathErrorCode.ISSUER_NOT_CA });
    expect(verifyCertificatePath(leaf, [notCa], [root], { now: new Date('2031-01-01T00:00:00Z') })).to.include({ ok: false, code: PathErrorCode.EXPIRED });
  });
});
