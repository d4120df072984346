import { expect } from 'chai';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { controlPlaneSpiffeId, defaultAdminSpiffeId } from '@trellis/shared';
import { TestCa } from '@trellis/testkit';
import { adminRequest } from '../../src/admin/admin-client';
import type { AdminCredentials } from '../../src/admin/admin-credentials';

const TD = 'example.org';

async function serve(leaf: { key: { keyPem: string }; chainPem: string }): Promise<{ server: Server; address: string }> {
  const server = createServer({ key: leaf.key.keyPem, cert: leaf.chainPem }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('admin client: the control plane it talks to', () => {
  let ca: TestCa;
  let credentials: AdminCredentials;
  before(async () => {
    ca = await TestCa.create(TD);
    const admin = await ca.issueLeaf(defaultAdminSpiffeId(TD));
    credentials = { dir: '', spiffeId: defaultAdminSpiffeId(TD), trustDomain: TD, notAfter: new Date(Date.now() + 3600_000), chainPem: admin.chainPem, keyPem: admin.key.keyPem, bundlePem: ca.root.pem };
  });

  it('Should accept a control plane presenting its SPIFFE ID on an X.509-SVID of the mesh', async () => {
    const { server, address } = await serve(await ca.issueLeaf(controlPlaneSpiffeId(TD)));
    try {
      expect(await adminRequest<{ ok: boolean }>({ address, credentials }, 'GET', '/x', undefined, 5000)).to.deep.equal({ ok: true });
    } finally {
      server.close();
    }
  });

  it('Should refuse a server presenting the control plane SPIFFE ID on a certificate that is not an X.509-SVID (a CA certificate), as the shared verifier does', async () => {
    // TLS accepts the chain and the URI SAN matches; only the X.509-SVID profile (leaf must not be a CA) tells it apart.
    const { server, address } = await serve(await ca.issueLeaf(controlPlaneSpiffeId(TD), { ca: true }));
    try {
      const err = await adminRequest({ address, credentials }, 'GET', '/x', undefined, 5000).then(() => undefined, (e: unknown) => e);
      expect(err).to.have.property('code', 'TRELLIS_ADMIN_UNREACHABLE');
      expect((err as Error).message).to.contain('TRELLIS_SVID_LEAF_IS_CA');
    } finally {
      server.close();
    }
  });
});
