/**
 * Sidecars neither send nor ask for compressed certificates (RFC 8879), on
 * both data paths and in both directions. OpenSSL 3.5 otherwise compresses
 * the certificate with Brotli on every handshake with a peer that asks: a
 * Node 24 client spent 4.3 ms of CPU per handshake with an inbound port of
 * the native relay, 1.9 ms without (see shared/src/tls/certificate-compression.ts).
 *
 * The peers are real OpenSSL 3.5 endpoints in their own processes (node:tls
 * with enableTrace, which prints every handshake message and extension as
 * OpenSSL's SSL_trace does); what they received is read off that trace.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { TestCa } from '@trellis/testkit';
import { silentLogger } from '@trellis/shared';
import { dataPaths, Sidecar, sharedAuthorizer } from './helpers/harness';
import { bundleOf, credentialsFrom, startEchoApp, tcpExchange } from './helpers/fixture';

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const CART = `spiffe://${TD}/ns/shop/sa/cart`;

/** A node:tls client, traced, that connects with mTLS and says OK; resolves with its trace. */
const CLIENT = `
const tls = require('node:tls');
const s = tls.connect({ host: '127.0.0.1', port: Number(process.env.PORT), key: process.env.KEY, cert: process.env.CERT, ca: process.env.CA, checkServerIdentity: () => undefined });
s.enableTrace();
s.on('secureConnect', () => { process.stdout.write('OK\\n'); s.destroy(); });
s.on('error', (e) => { process.stdout.write('ERR ' + e.message + '\\n'); });
`;

/** A node:tls server, traced, asking for a client certificate; prints its port, then serves "up". */
const SERVER = `
const tls = require('node:tls');
const srv = tls.createServer({ key: process.env.KEY, cert: process.env.CERT, ca: process.env.CA, requestCert: true, rejectUnauthorized: true, enableTrace: true }, (s) => { s.on('error', () => undefined); s.end('up'); });
srv.listen(0, '127.0.0.1', () => process.stdout.write(srv.address().port + '\\n'));
`;

function runClient(port: number, env: Record<string, string>): Promise<{ stdout: string; trace: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', CLIENT], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let trace = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (trace += d));
    c.on('error', reject);
    c.on('close', () => resolve({ stdout, trace }));
  });
}

/** The names of the TLS extensions in the trace's message `message` (the first one), e.g. ClientHello. */
function extensionsOf(trace: string, message: string): string[] {
  const at = trace.search(new RegExp(`^\\s+${message}, Length=`, 'm'));
  if (at < 0) return [];
  const rest = trace.slice(at).split('\n');
  const out: string[] = [];
  for (const line of rest.slice(1)) {
    if (/^\s{4}\S/.test(line) && !/^\s{4}\s/.test(line)) break; // the next message
    const m = /extension_type=([a-z_]+)\(/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

for (const dataPath of dataPaths()) describe(`Certificate compression [${dataPath}]`, function () {
  this.timeout(30_000);
  let ca: TestCa;
  let sc: Sidecar;
  let upstream: ChildProcess;
  let app: Awaited<ReturnType<typeof startEchoApp>>;
  let upstreamTrace = '';

  before(async () => {
    ca = await TestCa.create(TD);
    app = await startEchoApp();
    const cart = await ca.issueLeaf(CART);
    upstream = spawn(process.execPath, ['-e', SERVER], { env: { ...process.env, KEY: cart.key.keyPem, CERT: cart.chainPem, CA: ca.root.pem }, stdio: ['ignore', 'pipe', 'pipe'] });
    upstream.stderr!.setEncoding('utf8').on('data', (d: string) => (upstreamTrace += d));
    const upstreamPort = await new Promise<number>((resolve, reject) => {
      upstream.stdout!.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim())));
      upstream.once('exit', (code) => reject(new Error(`the traced upstream exited with ${code}: ${upstreamTrace.slice(-300)}`)));
    });
    sc = new Sidecar(
      {
        inbound: [{ host: '127.0.0.1', port: 0, appPort: app.port, http: false }],
        outbound: [{ host: '127.0.0.1', port: 0, target: { kind: 'explicit', address: `127.0.0.1:${upstreamPort}`, spiffeId: CART } }],
        dataPath,
        workload: { namespace: 'shop', labels: {} },
      },
      { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
    );
    sc.state.update({ credentials: await credentialsFrom(ca, WEB), bundle: bundleOf(ca), peerAuth: { mode: 'STRICT', portModes: {} }, authz: { policies: [] } });
    await sc.start();
    expect(sc.dataPath).to.equal(dataPath);
  });

  after(async () => {
    await sc?.stop(0);
    upstream?.kill('SIGKILL');
    await app?.close();
  });

  it('Should neither ask an mTLS client to compress its certificate nor compress its own, on an inbound port', async () => {
    const client = await ca.issueLeaf(`spiffe://${TD}/ns/shop/sa/client`);
    const r = await runClient(sc.inbound[0]!.port, { KEY: client.key.keyPem, CERT: client.chainPem, CA: ca.root.pem });
    expect(r.stdout, r.trace.slice(-500)).to.equal('OK\n');
    const request = extensionsOf(r.trace, 'CertificateRequest');
    expect(r.trace, 'the trace shows the CertificateRequest').to.match(/^\s+CertificateRequest, Length=/m);
    expect(request, 'CertificateRequest extensions').to.include('signature_algorithms');
    expect(request).to.not.include('compress_certificate');
    // Whatever the client offers to receive, the sidecar sends its own certificate plain.
    expect(r.trace).to.not.match(/CompressedCertificate/);
    expect(r.trace.match(/^\s+Certificate, Length=/gm), 'two plain Certificate messages: the sidecar\'s and the client\'s').to.have.length(2);
  });

  it('Should not offer to receive compressed certificates when it connects to an upstream', async () => {
    upstreamTrace = '';
    const r = await tcpExchange(sc.outbound[0]!.port, 'ping');
    expect(r.data, r.error).to.equal('up');
    const hello = extensionsOf(upstreamTrace, 'ClientHello');
    expect(hello, 'the sidecar\'s ClientHello extensions').to.include('supported_groups');
    expect(hello).to.not.include('compress_certificate');
    expect(upstreamTrace).to.not.match(/CompressedCertificate/);
  });
});
