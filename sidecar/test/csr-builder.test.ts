import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { openssl } from '@trellis/testkit';
import { buildWorkloadCsr } from '@trellis/shared';

describe('CSR builder', () => {
  it('Should produce a CSR that openssl verifies, with our key and the URI SAN asked for', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }), 'spiffe://cluster.local/ns/shop/sa/web');
    const r = openssl(['req', '-inform', 'DER', '-verify', '-noout', '-text'], der);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout + r.stderr).to.match(/verify OK|Certificate request self-signature verify OK/);
    expect(r.stdout).to.contain('URI:spiffe://cluster.local/ns/shop/sa/web');
    expect(r.stdout).to.contain('prime256v1');
    const pub = openssl(['req', '-inform', 'DER', '-pubkey', '-noout'], der);
    expect(pub.stdout.trim()).to.equal((publicKey.export({ type: 'spki', format: 'pem' }) as string).trim());
  });

  it('Should omit the extension request when no SPIFFE ID is given', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const der = buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }));
    const r = openssl(['req', '-inform', 'DER', '-verify', '-noout', '-text'], der);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.not.contain('URI:');
  });
});
