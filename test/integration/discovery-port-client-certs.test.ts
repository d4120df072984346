/**
 * What a client certificate proves on the discovery port of a real
 * `trellis control-plane` process, over real gRPC/TLS. The port asks for a
 * certificate without requiring one (a first contact authenticates with a
 * token), so the TLS layer lets any certificate through the handshake; a
 * certificate counts only when grpc-js reports the chain as verified against
 * our bundle (its auth context is empty otherwise, which is why
 * @grpc/grpc-js is pinned to an exact version), and then only for a SPIFFE ID
 * of our own trust domain.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCa, hasOpenssl, makeTmpDir, openssl } from '@trellis/testkit';
import { FakeSidecar, initCa, joinToken, metricValue, startControlPlaneProcess, waitFor, TD, type ControlPlaneProcess } from './control-plane-harness';

/** The repository root (test/dist/integration → ../../..). */
const ROOT = join(__dirname, '..', '..', '..');

describe('The grpc-js the discovery port relies on', () => {
  it('Should be pinned to one exact version in every package that declares it, and be that version in the lockfile', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
    const locked = lock.packages['node_modules/@grpc/grpc-js']?.version;
    expect(locked, 'the lockfile resolves @grpc/grpc-js').to.be.a('string');
    const workspaces = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
    const declared: Record<string, string> = {};
    for (const ws of ['.', ...workspaces]) {
      const file = join(ROOT, ws, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, string> | undefined>;
      for (const field of ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies']) {
        const v = pkg[field]?.['@grpc/grpc-js'];
        if (v !== undefined) declared[`${ws}/package.json ${field}`] = v;
      }
    }
    expect(Object.keys(declared)).to.not.be.empty;
    for (const [where, range] of Object.entries(declared)) expect(range, where).to.equal(locked);
  });
});

describe('The discovery port refuses client certificates it must not trust (real process, real gRPC/TLS)', function () {
  this.timeout(60_000);
  const WORKLOAD = `spiffe://${TD}/ns/shop/sa/cart`;
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  const sidecars: FakeSidecar[] = [];

  /** A stream that presents `creds` as its client certificate and no token at all. */
  function presenting(creds: { keyPem: string; chainPem: string }): FakeSidecar {
    const s = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: WORKLOAD, token: () => '', namespace: 'shop' });
    s.creds = { ...creds, notAfter: new Date(Date.now() + 3_600_000), serialHex: '' };
    sidecars.push(s);
    return s.start();
  }

  async function refusal(s: FakeSidecar): Promise<{ grpcCode: number; serverCode: string | null }> {
    await waitFor(() => s.client.connection().lastError !== null, 'the stream to be refused');
    const e = s.client.connection().lastError!;
    s.stop();
    return { grpcCode: e.grpcCode, serverCode: e.serverCode };
  }

  before(async () => {
    tmp = makeTmpDir('trellis-cp-client-certs-');
    caDir = join(tmp.dir, 'ca');
    initCa(caDir);
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    cp = await startControlPlaneProcess(caDir, policyDir);
  });

  after(async () => {
    for (const s of sidecars) s.stop();
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it("Should authenticate a real workload by the SVID it was issued, with no token (what the refusals below are measured against)", async () => {
    const token = joinToken(caDir, WORKLOAD);
    const workload = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: WORKLOAD, token: () => token, namespace: 'shop' });
    sidecars.push(workload.start());
    await workload.rotate();
    workload.stop();
    const s = presenting(workload.creds!);
    await waitFor(() => s.client.connection().connected, 'the stream to be accepted on the SVID alone');
    expect(s.client.connection().lastError).to.equal(null);
    s.stop();
  });

  it("Should refuse a client certificate from an unrelated CA carrying a real workload's SPIFFE ID, with UNAUTHENTICATED, and count it", async () => {
    const unrelated = await TestCa.create(TD);
    const forged = await unrelated.issueLeaf(WORKLOAD);
    const before = await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_TOKEN_MISSING"');
    // The chain does not verify, so the certificate is no credential at all: the stream has none.
    expect(await refusal(presenting({ keyPem: forged.key.keyPem, chainPem: forged.chainPem }))).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_TOKEN_MISSING' });
    await waitFor(async () => (await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_TOKEN_MISSING"')) === before + 1, 'the refusal to be counted');
  });

  it('Should refuse a certificate our own intermediate signed for another trust domain, with UNAUTHENTICATED CERT_REJECTED, and count it', async function () {
    if (!hasOpenssl()) this.skip(); // our CA never issues such a certificate: openssl signs it with the CA's own intermediate key
    const dir = join(tmp.dir, 'foreign');
    mkdirSync(dir);
    const key = join(dir, 'leaf.key');
    const csr = join(dir, 'leaf.csr');
    const cert = join(dir, 'leaf.pem');
    const ext = join(dir, 'ext.cnf');
    writeFileSync(
      ext,
      [
        '[v3]',
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = clientAuth, serverAuth',
        'subjectAltName = URI:spiffe://other.example/ns/shop/sa/cart',
        '',
      ].join('\n'),
    );
    for (const args of [
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key],
      ['req', '-new', '-key', key, '-subj', '/O=other.example', '-out', csr],
      ['x509', '-req', '-in', csr, '-CA', join(caDir, 'intermediate.pem'), '-CAkey', join(caDir, 'intermediate.key'), '-set_serial', '0x5eed', '-days', '1', '-extfile', ext, '-extensions', 'v3', '-out', cert],
    ]) {
      const r = openssl(args);
      expect(r.status, `openssl ${args[0]}: ${r.stderr}`).to.equal(0);
    }
    // It does chain to our root: only its trust domain is wrong.
    const verified = openssl(['verify', '-CAfile', join(caDir, 'root.pem'), '-untrusted', join(caDir, 'intermediate.pem'), cert]);
    expect(verified.status, verified.stderr).to.equal(0);
    const chainPem = readFileSync(cert, 'utf8') + readFileSync(join(caDir, 'intermediate.pem'), 'utf8');
    const before = await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_CERT_REJECTED"');
    expect(await refusal(presenting({ keyPem: readFileSync(key, 'utf8'), chainPem }))).to.deep.equal({ grpcCode: 16, serverCode: 'TRELLIS_CP_CERT_REJECTED' });
    await waitFor(async () => (await metricValue(cp, 'trellis_discovery_stream_errors_total', 'code="TRELLIS_CP_CERT_REJECTED"')) === before + 1, 'the refusal to be counted');
    await waitFor(() => cp.logs.some((l) => l.includes('other.example') && l.includes('TRELLIS_CP_CERT_REJECTED')), 'the refusal in the log');
  });
});
