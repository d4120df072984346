import 'reflect-metadata';
import { expect } from 'chai';
import { createPrivateKey, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { FakeClock, OPENSSL, skipUnless } from '@trellis/testkit';
import { CaError } from '../../src/ca/ca-error';
import { writeCaFiles } from '../../src/ca/ca-dir';
import { ISSUED_CHANNEL, loadCertificateAuthority, type CertificateAuthority } from '../../src/ca/certificate-authority';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createLogger } from '@trellis/shared';
import { createFileSigner, type Signer } from '../../src/ca/signer';
import { makeCaFixture, opensslText, opensslVerify, type CaFixture } from './ca-fixture';
import { makeCsr } from './csr-fixtures';

x509.cryptoProvider.set(webcrypto as never);

const ID = 'spiffe://example.org/ns/default/sa/web';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(CaError);
    return (err as CaError).code;
  }
  return undefined;
}

describe('Certificate authority issuance', function () {
  let fx: CaFixture;
  let ca: CertificateAuthority;

  before(async function () {
    skipUnless(this, OPENSSL);
    fx = await makeCaFixture();
    ca = await loadCertificateAuthority(fx.dir);
  });
  after(() => {
    ca?.close();
    fx?.cleanup();
  });

  it('Should issue a chain that openssl verifies against the root, for client and server use', async () => {
    const csr = await makeCsr();
    const svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' });
    expect(opensslVerify(fx, svid.leafPem).status).to.equal(0);
    expect(opensslVerify(fx, svid.leafPem, ['-purpose', 'sslclient']).status).to.equal(0);
    expect(opensslVerify(fx, svid.leafPem, ['-purpose', 'sslserver']).status).to.equal(0);
    const certs = svid.chainPem.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    expect(certs).to.have.length(2);
    expect(svid.chainPem.startsWith(svid.leafPem)).to.equal(true);
    expect(svid.chainPem.endsWith(ca.intermediatePem)).to.equal(true);
  });

  it('Should put the SVID profile in the certificate, as openssl reads it', async () => {
    const csr = await makeCsr({ uris: [ID] });
    const svid = await ca.issue({ csr: Buffer.from(csr.pem), spiffeId: ID, requester: 'test' });
    const text = opensslText(svid.leafPem);
    expect(text).to.match(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).to.match(/X509v3 Key Usage: critical\s+Digital Signature\s*\n/);
    expect(text).to.match(/X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).to.match(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/ns\/default\/sa\/web\s*\n/);
    expect(text).to.contain('X509v3 Subject Key Identifier');
    expect(text).to.contain('X509v3 Authority Key Identifier');
    expect(text).to.match(/Subject:\s*\n/);
    const node = new NodeX509(svid.leafPem);
    expect(node.serialNumber.toLowerCase().replace(/^0+/, '')).to.equal(svid.serialHex.replace(/^0+/, ''));
    expect(svid.serialHex.length).to.be.within(30, 32);
    expect(node.ca).to.equal(false);
    expect(node.subjectAltName).to.equal(`URI:${ID}`);
    expect(node.checkIssued(new NodeX509(ca.intermediatePem))).to.equal(true);
    expect(svid.keyType).to.equal('ec-p256');
  });

  for (const leafType of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    it(`Should encode the same ${leafType} certificate as @peculiar/x509 building it the slow way from the same inputs`, async () => {
      const csr = await makeCsr({ keyType: leafType });
      const svid = await ca.issue({ csr: csr.der, spiffeId: ID, ttlSeconds: 900, requester: 'test' });
      const intermediate = new x509.X509Certificate(ca.intermediatePem);
      const intKey = await webcrypto.subtle.importKey(
        'pkcs8',
        createPrivateKey(fx.read('intermediate.key')).export({ type: 'pkcs8', format: 'der' }),
        { name: 'ECDSA', namedCurve: 'P-256' },
        false,
        ['sign'],
      );
      const slow = await x509.X509CertificateGenerator.create({
        serialNumber: svid.serialHex,
        subject: '',
        issuer: intermediate.subjectName.toString(),
        notBefore: svid.notBefore,
        notAfter: svid.notAfter,
        publicKey: csr.publicKey,
        signingKey: intKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(leafType === 'rsa-2048' ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(intermediate),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true),
        ],
      });
      const fast = new x509.X509Certificate(svid.leafDer);
      const view = (c: x509.X509Certificate) => ({
        serial: c.serialNumber.replace(/^0+/, ''),
        subject: c.subject,
        issuer: c.issuer,
        notBefore: c.notBefore.toISOString(),
        notAfter: c.notAfter.toISOString(),
        publicKey: Buffer.from(c.publicKey.rawData).toString('hex'),
        signatureAlgorithm: c.signatureAlgorithm,
        extensions: c.extensions.map((e) => ({ type: e.type, critical: e.critical, value: Buffer.from(e.value).toString('hex') })),
      });
      expect(view(fast)).to.deep.equal(view(slow));
      expect(await fast.verify({ publicKey: intermediate, date: new Date(svid.notBefore.getTime() + 1000) })).to.equal(true);
      const tbs = (der: ArrayBuffer | Buffer) => {
        const b = Buffer.from(der as ArrayBuffer);
        const hdr = b[1]! & 0x80 ? 2 + (b[1]! & 0x7f) : 2;
        const len = b[hdr + 1]! & 0x80 ? b.readUIntBE(hdr + 2, b[hdr + 1]! & 0x7f) + 2 + (b[hdr + 1]! & 0x7f) : b[hdr + 1]! + 2;
        return b.subarray(hdr, hdr + len).toString('hex');
      };
      expect(tbs(svid.leafDer), 'TBSCertificate bytes').to.equal(tbs(slow.rawData));
    });
  }

  it('Should encode SPIFFE IDs of every length class (DER length forms 1, 2 and 3 bytes) so openssl and Node read them back', async () => {
    const csr = await makeCsr();
    const prefix = 'spiffe://example.org/';
    for (const total of [30, 126, 127, 128, 129, 200, 255, 256, 257, 400, 1000, 2048]) {
      const path = Array.from({ length: total - prefix.length }, (_, i) => (i % 50 === 49 ? '/' : 'a')).join('').replace(/\/$/, 'b');
      const id = prefix + path;
      expect(Buffer.byteLength(id)).to.equal(total);
      const svid = await ca.issue({ csr: csr.der, spiffeId: id, requester: 'test' });
      expect(new NodeX509(svid.leafPem).subjectAltName, `length ${total}`).to.equal(`URI:${id}`);
      if ([127, 128, 255, 256, 2048].includes(total)) expect(opensslVerify(fx, svid.leafPem).status, `length ${total}`).to.equal(0);
    }
  });

  it('Should add requested DNS SANs beside the one SPIFFE ID, so a hostname-checking client accepts the certificate', async () => {
    const csr = await makeCsr();
    const svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test', dnsNames: ['trellis-injector.trellis-system.svc'] });
    expect(opensslVerify(fx, svid.leafPem, ['-purpose', 'sslserver', '-verify_hostname', 'trellis-injector.trellis-system.svc']).status).to.equal(0);
    expect(opensslVerify(fx, svid.leafPem, ['-verify_hostname', 'other.example.com']).status).to.not.equal(0);
    expect(new NodeX509(svid.leafPem).subjectAltName).to.equal(`URI:${ID}, DNS:trellis-injector.trellis-system.svc`);
  });

  it('Should refuse a DNS SAN that is not a plain lowercase hostname', async () => {
    const csr = await makeCsr();
    for (const bad of ['*.example.com', 'Upper.example.com', 'has space', '-lead.example.com', '']) {
      expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test', dnsNames: [bad] })), bad).to.equal('TRELLIS_CA_BAD_REQUEST');
    }
  });

  it('Should issue only the authorized ID even when the CSR carries none', async () => {
    const csr = await makeCsr({ dnsNames: ['evil.example.com'] });
    const svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' });
    expect(new NodeX509(svid.leafPem).subjectAltName).to.equal(`URI:${ID}`);
  });

  it('Should refuse a CSR that asks for another identity, two URIs or a CA certificate', async () => {
    for (const opts of [{ uris: ['spiffe://example.org/ns/default/sa/admin'] }, { uris: [ID, 'spiffe://example.org/other'] }, { ca: true }]) {
      const csr = await makeCsr(opts);
      expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' })), JSON.stringify(opts)).to.equal('TRELLIS_CA_CSR_IDENTITY_MISMATCH');
    }
  });

  it('Should refuse invalid SPIFFE IDs, other trust domains and the bare trust domain ID', async () => {
    const csr = await makeCsr();
    for (const id of ['spiffe://example.org/a/../b', 'https://example.org/x', 'spiffe://other.org/ns/a/sa/b', 'spiffe://example.org', '']) {
      expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: id, requester: 'test' })), id).to.equal('TRELLIS_CA_BAD_SPIFFE_ID');
    }
  });

  it('Should refuse a TTL out of range and a request without a requester', async () => {
    const csr = await makeCsr();
    expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, ttlSeconds: 30, requester: 'test' }))).to.equal('TRELLIS_CA_TTL_OUT_OF_RANGE');
    expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, ttlSeconds: 90_000, requester: 'test' }))).to.equal('TRELLIS_CA_TTL_OUT_OF_RANGE');
    expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, requester: '' }))).to.equal('TRELLIS_CA_BAD_REQUEST');
  });

  it('Should add keyEncipherment for an RSA leaf and accept a P-384 leaf', async () => {
    const rsa = await makeCsr({ keyType: 'rsa-2048' });
    const r = await ca.issue({ csr: rsa.der, spiffeId: ID, requester: 'test' });
    expect(r.keyType).to.equal('rsa-2048');
    expect(opensslText(r.leafPem)).to.match(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(opensslVerify(fx, r.leafPem).status).to.equal(0);
    const p384 = await makeCsr({ keyType: 'ec-p384' });
    const e = await ca.issue({ csr: p384.der, spiffeId: ID, requester: 'test' });
    expect(e.keyType).to.equal('ec-p384');
    expect(opensslVerify(fx, e.leafPem).status).to.equal(0);
  });

  it('Should append one audit line per SVID with serial, ID, notAfter, key type and requester', async () => {
    const before = fx.read('audit.log').trim().split('\n').filter(Boolean).length;
    const csr = await makeCsr();
    const svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'pod:default/web' });
    await codeOf(ca.issue({ csr: csr.der, spiffeId: 'spiffe://other.org/x', requester: 'pod:default/web' }));
    const lines = fx.read('audit.log').trim().split('\n');
    expect(lines).to.have.length(before + 1);
    const rec = JSON.parse(lines[lines.length - 1]!);
    expect(rec).to.include({ serial: svid.serialHex, spiffeId: ID, notAfter: svid.notAfter.toISOString(), keyType: 'ec-p256', requester: 'pod:default/web' });
    expect(Object.keys(rec).sort()).to.deep.equal(['hash', 'keyType', 'notAfter', 'prev', 'requester', 'serial', 'spiffeId', 'time']);
    expect(lines.join('\n')).not.to.contain('BEGIN');
  });

  it('Should draw a different 128-bit serial for every SVID', async () => {
    const csr = await makeCsr();
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) serials.add((await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' })).serialHex);
    expect(serials.size).to.equal(50);
  });

  it('Should expose the trust bundle, the trust domain and the expiry dates', () => {
    expect(ca.trustDomain).to.equal('example.org');
    expect(ca.trustBundle().rootsPem).to.deep.equal([fx.read('root.pem')]);
    expect(ca.intermediateNotAfter.getTime()).to.equal(new Date(new NodeX509(ca.intermediatePem).validTo).getTime());
    expect(ca.rootNotAfter.getTime()).to.be.greaterThan(ca.intermediateNotAfter.getTime());
  });
});

describe('Certificate authority validity and self-check', () => {
  it('Should cap notAfter at the intermediate expiry and refuse once it has expired', async () => {
    const clock = new FakeClock(new Date('2026-06-01T00:00:00Z'));
    const fx = await makeCaFixture({ intermediateValidityDays: 1, clock: clock.now });
    try {
      clock.advance(86_400_000 - 120_000 - 60_000);
      const ca = await loadCertificateAuthority(fx.dir, { clock: clock.now });
      const csr = await makeCsr();
      const svid = await ca.issue({ csr: csr.der, spiffeId: ID, ttlSeconds: 3600, requester: 'test' });
      expect(svid.notAfter.getTime()).to.equal(ca.intermediateNotAfter.getTime());
      clock.advance(10 * 60_000);
      expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' }))).to.equal('TRELLIS_CA_INTERMEDIATE_EXPIRED');
      ca.close();
      expect(await codeOf(loadCertificateAuthority(fx.dir, { clock: clock.now }))).to.equal('TRELLIS_CA_INTERMEDIATE_EXPIRED');
    } finally {
      fx.cleanup();
    }
  });

  it('Should not hand out a certificate whose signature is wrong when every signature is verified', async () => {
    const fx = await makeCaFixture();
    try {
      const real = createFileSigner(fx.read('intermediate.key'));
      let calls = 0;
      const faulty: Signer = {
        algorithm: real.algorithm,
        keyType: real.keyType,
        publicKey: real.publicKey,
        publicKeyDer: real.publicKeyDer,
        sign: (tbs) => (calls++ === 0 ? real.sign(tbs) : real.sign(Buffer.concat([tbs, Buffer.from('x')]))),
      };
      const ca = await loadCertificateAuthority(fx.dir, { signer: faulty, verifyEverySignature: true });
      const csr = await makeCsr();
      expect(await codeOf(ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' }))).to.equal('TRELLIS_CA_SELF_CHECK_FAILED');
      ca.close();
      expect(fx.read('audit.log')).to.equal('');
    } finally {
      fx.cleanup();
    }
  });

  it('Should issue with an ec-p384 and an rsa-2048 CA, both verified by openssl', async () => {
    for (const keyType of ['ec-p384', 'rsa-2048'] as const) {
      const fx = await makeCaFixture({ keyType });
      try {
        const ca = await loadCertificateAuthority(fx.dir, { verifyEverySignature: true });
        const csr = await makeCsr();
        const svid = await ca.issue({ csr: csr.der, spiffeId: ID, requester: 'test' });
        ca.close();
        expect(opensslVerify(fx, svid.leafPem).status, keyType).to.equal(0);
        expect(opensslText(svid.leafPem)).to.contain(keyType === 'rsa-2048' ? 'sha256WithRSAEncryption' : 'ecdsa-with-SHA384');
      } finally {
        fx.cleanup();
      }
    }
  });
});

describe('Certificate authority collaborators', () => {
  it('Should run from an injected signer with no intermediate.key on disk (the HSM case)', async () => {
    const fx = await makeCaFixture();
    try {
      const signer = createFileSigner(fx.read('intermediate.key'));
      rmSync(join(fx.dir, 'intermediate.key'));
      const ca = await loadCertificateAuthority(fx.dir, { signer: { ...signer, sign: async (tbs: Buffer) => signer.sign(tbs) } });
      const svid = await ca.issue({ csr: (await makeCsr()).der, spiffeId: ID, requester: 'test' });
      ca.close();
      expect(opensslVerify(fx, svid.leafPem).status).to.equal(0);
    } finally {
      fx.cleanup();
    }
  });

  it('Should log the load without key material and publish issuances on the diagnostics channel without certificates', async () => {
    const fx = await makeCaFixture();
    const lines: string[] = [];
    const events: unknown[] = [];
    const onIssued = (m: unknown): void => {
      events.push(m);
    };
    subscribe(ISSUED_CHANNEL, onIssued);
    try {
      const ca = await loadCertificateAuthority(fx.dir, { logger: createLogger({ component: 'ca', sink: { write: (l: string) => lines.push(l) }, level: 'debug' }) });
      const svid = await ca.issue({ csr: (await makeCsr()).der, spiffeId: ID, requester: 'test' });
      ca.close();
      const keyBody = fx.read('intermediate.key').split('\n')[1]!;
      const all = lines.join('');
      expect(lines.length).to.be.greaterThan(0);
      expect(all).not.to.contain('PRIVATE KEY');
      expect(all).not.to.contain(keyBody.slice(0, 24));
      expect(events).to.have.length(1);
      expect(events[0]).to.include({ serial: svid.serialHex, spiffeId: ID, requester: 'test' });
      expect(JSON.stringify(events[0])).not.to.contain('BEGIN');
    } finally {
      unsubscribe(ISSUED_CHANNEL, onIssued);
      fx.cleanup();
    }
  });
});

describe('CA directory loading', () => {
  let fx: CaFixture;
  beforeEach(async () => {
    fx = await makeCaFixture();
  });
  afterEach(() => fx.cleanup());

  it('Should write the keys 0600 and leave no temp files behind', () => {
    expect(statSync(join(fx.dir, 'root.key')).mode & 0o777).to.equal(0o600);
    expect(statSync(join(fx.dir, 'intermediate.key')).mode & 0o777).to.equal(0o600);
    expect(readdirSync(fx.dir).sort()).to.deep.equal(['chain.pem', 'intermediate.key', 'intermediate.pem', 'root.key', 'root.pem']);
  });

  it('Should load without the root key', async () => {
    rmSync(join(fx.dir, 'root.key'));
    const ca = await loadCertificateAuthority(fx.dir);
    const svid = await ca.issue({ csr: (await makeCsr()).der, spiffeId: ID, requester: 'test' });
    ca.close();
    expect(opensslVerify(fx, svid.leafPem).status).to.equal(0);
  });

  it('Should refuse a missing dir and name every missing file of an incomplete one', async () => {
    expect(await codeOf(loadCertificateAuthority(join(fx.tmp, 'nope')))).to.equal('TRELLIS_CA_DIR_MISSING');
    rmSync(join(fx.dir, 'chain.pem'));
    rmSync(join(fx.dir, 'intermediate.key'));
    try {
      await loadCertificateAuthority(fx.dir);
      expect.fail('loaded an incomplete dir');
    } catch (err) {
      expect((err as CaError).code).to.equal('TRELLIS_CA_DIR_INCOMPLETE');
      expect((err as CaError).details.missing).to.deep.equal(['chain.pem', 'intermediate.key']);
    }
  });

  it('Should refuse an intermediate key that does not match the certificate', async () => {
    const other = await makeCaFixture();
    try {
      writeFileSync(join(fx.dir, 'intermediate.key'), other.read('intermediate.key'));
      expect(await codeOf(loadCertificateAuthority(fx.dir))).to.equal('TRELLIS_CA_KEY_MISMATCH');
    } finally {
      other.cleanup();
    }
  });

  it('Should refuse a root bundle the intermediate does not chain to', async () => {
    const other = await makeCaFixture();
    try {
      writeFileSync(join(fx.dir, 'root.pem'), other.read('root.pem'));
      expect(await codeOf(loadCertificateAuthority(fx.dir))).to.equal('TRELLIS_CA_CHAIN_INVALID');
    } finally {
      other.cleanup();
    }
  });

  it('Should refuse garbage in a PEM file, naming the file', async () => {
    writeFileSync(join(fx.dir, 'intermediate.pem'), 'not a certificate\n');
    try {
      await loadCertificateAuthority(fx.dir);
      expect.fail('loaded garbage');
    } catch (err) {
      expect((err as CaError).code).to.equal('TRELLIS_CA_BAD_PEM');
      expect((err as CaError).message).to.contain(join(fx.dir, 'intermediate.pem'));
    }
    writeFileSync(join(fx.dir, 'intermediate.pem'), fx.read('chain.pem'));
    // Not a key: a PEM frame around garbage (the label is split so no key-scanner flags it).
    const label = ['PRIVATE', 'KEY'].join(' ');
    writeFileSync(join(fx.dir, 'intermediate.key'), `-----BEGIN ${label}-----\nAAAA\n-----END ${label}-----\n`);
    expect(await codeOf(loadCertificateAuthority(fx.dir))).to.equal('TRELLIS_CA_BAD_PEM');
  });

  it('Should keep the old files when a multi-file write fails part-way', () => {
    const before = fx.read('intermediate.pem');
    expect(() => writeCaFiles(fx.dir, [
      { name: 'intermediate.pem', contents: 'new', mode: 0o644 },
      { name: 'chain.pem', contents: 42 as unknown as string, mode: 0o644 },
    ])).to.throw();
    expect(fx.read('intermediate.pem')).to.equal(before);
    expect(readdirSync(fx.dir).filter((n) => n.startsWith('.'))).to.deep.equal([]);
    expect(readFileSync(join(fx.dir, 'chain.pem'), 'utf8')).to.equal(before);
  });
});
