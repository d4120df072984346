/**
 * SVIDs from the CA used for what they are for: a real mutual-TLS handshake
 * over loopback with node:tls, each side trusting only the CA's root bundle
 * and reading the peer's SPIFFE ID from its URI SAN.
 */
import { expect } from 'chai';
import { generateKeyPairSync, sign } from 'node:crypto';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { initCertificateAuthority, loadCertificateAuthority, type CertificateAuthority } from '@trellis/control-plane';
import { der } from '@trellis/shared';
import { makeTmpDir } from '@trellis/testkit';

/** A minimal PKCS#10 CSR for a fresh P-256 key; the key stays in this process. */
function keyAndCsr(): { key: string; csr: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const info = der.sequence(der.integer(0), der.sequence(), publicKey.export({ type: 'spki', format: 'der' }), der.tlv(0xa0));
  const csr = der.sequence(info, der.sequence(der.oid('1.2.840.10045.4.3.2')), der.bitString(sign('sha256', info, privateKey)));
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, csr };
}

function peerUri(s: TLSSocket): string | undefined {
  return s.getPeerCertificate().subjectaltname;
}

describe('SVIDs from the CA in a real mTLS handshake', () => {
  const tmp = makeTmpDir('trellis-ca-mtls-');
  let ca: CertificateAuthority;
  let other: CertificateAuthority;
  before(async () => {
    await initCertificateAuthority(join(tmp.dir, 'ca'), { trustDomain: 'example.org' });
    await initCertificateAuthority(join(tmp.dir, 'other'), { trustDomain: 'example.org' });
    ca = await loadCertificateAuthority(join(tmp.dir, 'ca'));
    other = await loadCertificateAuthority(join(tmp.dir, 'other'));
  });
  after(() => {
    ca?.close();
    other?.close();
    tmp.cleanup();
  });

  async function handshake(serverCa: CertificateAuthority, clientCa: CertificateAuthority): Promise<{ ok: boolean; serverSaw?: string; clientSaw?: string; error?: string }> {
    const s = keyAndCsr();
    const c = keyAndCsr();
    const serverSvid = await serverCa.issue({ csr: s.csr, spiffeId: 'spiffe://example.org/ns/default/sa/api', requester: 'test' });
    const clientSvid = await clientCa.issue({ csr: c.csr, spiffeId: 'spiffe://example.org/ns/default/sa/web', requester: 'test' });
    let serverSaw: string | undefined;
    const server = createServer({ key: s.key, cert: serverSvid.chainPem, ca: ca.trustBundle().rootsPem, requestCert: true, rejectUnauthorized: true }, (sock) => {
      serverSaw = peerUri(sock);
      sock.end('hello');
    });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      return await new Promise((resolve) => {
        const sock = connect({ host: '127.0.0.1', port, key: c.key, cert: clientSvid.chainPem, ca: ca.trustBundle().rootsPem, checkServerIdentity: () => undefined }, () => {
          const clientSaw = peerUri(sock);
          let got = '';
          sock.on('data', (d: Buffer) => (got += d.toString()));
          // TLS 1.3 finishes the client side before the server has judged the
          // client certificate, so success means the server's reply arrived.
          sock.on('end', () => resolve(got === 'hello' ? { ok: true, serverSaw, clientSaw } : { ok: false, error: 'closed without reply' }));
        });
        sock.on('error', (e) => resolve({ ok: false, error: (e as NodeJS.ErrnoException).code ?? e.message }));
      });
    } finally {
      server.close();
    }
  }

  it('Should complete a handshake in both directions and show each side the other SPIFFE ID', async () => {
    const r = await handshake(ca, ca);
    expect(r.ok, r.error).to.equal(true);
    expect(r.clientSaw).to.equal('URI:spiffe://example.org/ns/default/sa/api');
    expect(r.serverSaw).to.equal('URI:spiffe://example.org/ns/default/sa/web');
  });

  it('Should fail the handshake when the server SVID comes from a CA the client does not trust', async () => {
    const r = await handshake(other, ca);
    expect(r.ok).to.equal(false);
  });

  it('Should fail the handshake when the client SVID comes from a CA the server does not trust', async () => {
    const r = await handshake(ca, other);
    expect(r.ok).to.equal(false);
  });
});
