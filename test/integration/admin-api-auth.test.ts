/**
 * Who may use the control plane's admin API, against a real `trellis
 * control-plane` process, with curl and openssl as independent clients:
 * mTLS with an admin identity for everything that changes state or reveals
 * the mesh, nothing for /healthz, /readyz and /metrics, and the
 * defence-in-depth checks (JSON only, POST only, the admin Host only, no
 * filesystem paths) on top. The attacker's tests try plain HTTP as well as
 * HTTPS, so they pass only when neither works.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir, openssl, TestCa, trellisSync } from '@trellis/testkit';
import { initCa, startControlPlaneProcess, TD, type ControlPlaneProcess } from './control-plane-harness';

const ADMIN_ID = `spiffe://${TD}/ns/trellis-system/sa/trellis-admin`;
const CP_ID = `spiffe://${TD}/ns/trellis-system/sa/trellis-control-plane`;

interface CurlReply {
  /** The HTTP status; 0 when no HTTP answer came back (refused handshake, closed connection). */
  status: number;
  body: string;
  json: { error?: { code?: string; details?: Record<string, unknown> } } & Record<string, unknown>;
}

/** Runs curl once; the status is what the server answered, 0 when it answered no HTTP at all. */
function curl(url: string, o: { method?: string; body?: string; headers?: string[]; cert?: { cert: string; key: string } } = {}): CurlReply {
  const args = ['-sS', '-k', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', '-X', o.method ?? 'GET'];
  for (const h of o.headers ?? []) args.push('-H', h);
  if (o.body !== undefined) args.push('--data-binary', o.body);
  if (o.cert) args.push('--cert', o.cert.cert, '--key', o.cert.key);
  args.push(url);
  const r = spawnSync('curl', args, { encoding: 'utf8' });
  const out = r.stdout ?? '';
  const nl = out.lastIndexOf('\n');
  const status = Number(out.slice(nl + 1)) || 0;
  const body = nl >= 0 ? out.slice(0, nl) : '';
  let json = {};
  try {
    json = JSON.parse(body) as never;
  } catch {
    json = {};
  }
  return { status, body, json };
}

describe('the control plane admin API requires an admin identity (real process; curl and openssl as clients)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let caDir: string;
  let cp: ControlPlaneProcess;
  let creds: string;
  const f = (...p: string[]): string => join(tmp.dir, ...p);
  const adminCert = (): { cert: string; key: string } => ({ cert: join(creds, 'svid.pem'), key: join(creds, 'svid.key') });
  const json = ['Content-Type: application/json'];
  /** What a refused attacker must not have changed. */
  let rootPemBefore: string;

  const unchanged = (): void => {
    expect(readFileSync(join(caDir, 'root.pem'), 'utf8'), 'root.pem').to.equal(rootPemBefore);
    expect(existsSync(join(caDir, 'root-rotation.json')), 'no rotation was started').to.equal(false);
    expect(existsSync(join(caDir, 'revocations.json')), 'nothing was revoked').to.equal(false);
    expect(existsSync(f('attacker-root')), 'no root was created from a client-given path').to.equal(false);
    expect(readFileSync(join(caDir, 'audit.log'), 'utf8'), 'no re-issue was ordered').to.not.contain('reissue.ordered');
  };

  before(async () => {
    tmp = makeTmpDir('trellis-admin-auth-');
    caDir = f('ca');
    mkdirSync(f('policies'));
    initCa(caDir);
    rootPemBefore = readFileSync(join(caDir, 'root.pem'), 'utf8');
    cp = await startControlPlaneProcess(caDir, f('policies'));
    creds = f('admin-creds');
    trellisSync(['admin', 'credentials', '--ca-dir', caDir, '--out', creds]);
  });

  after(async () => {
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('Should refuse every state-changing step from a client without a certificate, over HTTPS or plain HTTP, and change nothing', () => {
    const attempts: Array<[string, string]> = [
      ['/lifecycle/rotate-root', JSON.stringify({ rootDir: f('attacker-root') })],
      ['/lifecycle/revoke', JSON.stringify({ spiffeId: `spiffe://${TD}/ns/shop/sa/web`, reason: 'attacker' })],
      ['/lifecycle/reissue', JSON.stringify({ all: true, windowSeconds: 0 })],
      ['/lifecycle/lift', JSON.stringify({ spiffeId: `spiffe://${TD}/ns/shop/sa/web` })],
    ];
    const replies = attempts.map(([path, body]) => ({
      path,
      plain: curl(`http://${cp.admin}${path}`, { method: 'POST', body, headers: json }),
      tls: curl(`https://${cp.admin}${path}`, { method: 'POST', body, headers: json }),
    }));
    unchanged();
    for (const { path, plain, tls } of replies) {
      expect(plain.status >= 200 && plain.status < 300, `plain http ${path} answered ${plain.status}: ${plain.body}`).to.equal(false);
      expect(tls.status, `https ${path}: ${tls.body}`).to.equal(401);
      expect(tls.json.error?.code, path).to.equal('TRELLIS_ADMIN_UNAUTHENTICATED');
    }
  });

  it('Should refuse a cross-site browser POST (text/plain, a foreign Host and Origin), and change nothing', () => {
    const port = cp.adminPort;
    const headers = ['Content-Type: text/plain;charset=UTF-8', `Host: attacker.example:${port}`, 'Origin: http://attacker.example'];
    for (const scheme of ['http', 'https']) {
      const r = curl(`${scheme}://${cp.admin}/lifecycle/revoke`, { method: 'POST', body: JSON.stringify({ spiffeId: `spiffe://${TD}/ns/shop/sa/web` }), headers });
      expect(r.status >= 200 && r.status < 300, `${scheme} answered ${r.status}: ${r.body}`).to.equal(false);
    }
    unchanged();
  });

  it('Should not reveal the connected sidecars, the policies or the CA to a client without a certificate', () => {
    for (const path of ['/debug/proxies', '/debug/policies', '/lifecycle/status']) {
      for (const scheme of ['http', 'https']) {
        const r = curl(`${scheme}://${cp.admin}${path}`);
        expect(r.status, `${scheme} ${path}: ${r.body}`).to.not.equal(200);
        expect(r.body, `${scheme} ${path}`).to.not.match(/"proxies"|"files"|"trustDomain"/);
      }
    }
  });

  it('Should serve /healthz, /readyz and /metrics over TLS to a client without a certificate (kubelet, Prometheus)', () => {
    expect(curl(`https://${cp.admin}/healthz`).status).to.equal(200);
    expect(curl(`https://${cp.admin}/readyz`).status).to.equal(200);
    const m = curl(`https://${cp.admin}/metrics`);
    expect(m.status).to.equal(200);
    expect(m.body).to.match(/^trellis_/m);
  });

  it('Should present the control plane SVID on the admin port, verifiable by openssl against the mesh bundle', () => {
    const r = openssl(['s_client', '-connect', cp.admin, '-CAfile', join(creds, 'bundle.pem'), '-verify_return_error', '-showcerts'], '');
    expect(r.stdout + r.stderr).to.match(/Verify return code: 0 \(ok\)/);
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)![0];
    const text = openssl(['x509', '-noout', '-ext', 'subjectAltName'], leaf).stdout;
    expect(text).to.contain(`URI:${CP_ID}`);
  });

  it('Should answer a client that presents the admin certificate written by trellis admin credentials', () => {
    const r = curl(`https://${cp.admin}/debug/proxies`, { cert: adminCert() });
    expect(r.status, r.body).to.equal(200);
    expect(r.json).to.have.property('proxies');
    const status = curl(`https://${cp.admin}/lifecycle/status`, { cert: adminCert() });
    expect(status.status, status.body).to.equal(200);
    expect(status.json['trustDomain']).to.equal(TD);
  });

  it('Should write the admin key and certificate 0600, for the admin SPIFFE ID, with the bundle that verifies the control plane', () => {
    for (const name of ['svid.pem', 'svid.key', 'bundle.pem']) {
      expect(statSync(join(creds, name)).mode & 0o777, name).to.equal(0o600);
    }
    const leaf = openssl(['x509', '-noout', '-ext', 'subjectAltName', '-enddate'], readFileSync(join(creds, 'svid.pem'))).stdout;
    expect(leaf).to.contain(`URI:${ADMIN_ID}`);
    const notAfter = Date.parse(/notAfter=(.*)/.exec(leaf)![1]!);
    expect(notAfter - Date.now()).to.be.within(7 * 3600_000, 8 * 3600_000 + 60_000);
    expect(readFileSync(join(creds, 'bundle.pem'), 'utf8')).to.equal(rootPemBefore);
  });

  it('Should refuse a certificate from an unrelated CA, even one that carries the admin SPIFFE ID', async () => {
    const rogue = await TestCa.create(TD);
    const leaf = await rogue.issueLeaf(ADMIN_ID);
    writeFileSync(f('rogue.pem'), leaf.chainPem);
    writeFileSync(f('rogue.key'), leaf.key.keyPem, { mode: 0o600 });
    const r = curl(`https://${cp.admin}/debug/proxies`, { cert: { cert: f('rogue.pem'), key: f('rogue.key') } });
    expect(r.status, r.body).to.equal(401);
    expect(r.json.error?.code).to.equal('TRELLIS_ADMIN_UNAUTHENTICATED');
    const post = curl(`https://${cp.admin}/lifecycle/revoke`, { method: 'POST', body: JSON.stringify({ serial: 'ab' }), headers: json, cert: { cert: f('rogue.pem'), key: f('rogue.key') } });
    expect(post.status, post.body).to.equal(401);
    unchanged();
  });

  it('Should refuse a valid workload SVID of the mesh that is not on the admin allow-list', () => {
    expect(openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/', '-keyout', f('web.key'), '-out', f('web.csr')]).status).to.equal(0);
    const signed = trellisSync(['ca', 'sign', '--dir', caDir, '--csr', f('web.csr'), '--spiffe-id', `spiffe://${TD}/ns/shop/sa/web`]);
    expect(signed.status, signed.stderr).to.equal(0);
    writeFileSync(f('web.pem'), signed.stdout);
    const r = curl(`https://${cp.admin}/debug/proxies`, { cert: { cert: f('web.pem'), key: f('web.key') } });
    expect(r.status, r.body).to.equal(403);
    expect(r.json.error?.code).to.equal('TRELLIS_ADMIN_FORBIDDEN');
    expect(r.json.error?.details?.['spiffeId']).to.equal(`spiffe://${TD}/ns/shop/sa/web`);
    unchanged();
  });

  it('Should refuse a state-changing request that is not application/json with 415, even from the admin', () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = curl(`https://${cp.admin}/lifecycle/revoke`, { method: 'POST', body: JSON.stringify({ serial: 'ab' }), headers: [`Content-Type: ${type}`], cert: adminCert() });
      expect(r.status, `${type}: ${r.body}`).to.equal(415);
      expect(r.json.error?.code).to.equal('TRELLIS_ADMIN_UNSUPPORTED_MEDIA_TYPE');
    }
    unchanged();
  });

  it('Should refuse GET on a POST route with 405, and POST on a GET route', () => {
    const get = curl(`https://${cp.admin}/lifecycle/revoke`, { cert: adminCert() });
    expect(get.status, get.body).to.equal(405);
    expect(get.json.error?.code).to.equal('TRELLIS_ADMIN_METHOD_NOT_ALLOWED');
    const post = curl(`https://${cp.admin}/debug/proxies`, { method: 'POST', body: '{}', headers: json, cert: adminCert() });
    expect(post.status, post.body).to.equal(405);
  });

  it('Should refuse a request whose Host is not the admin address (DNS rebinding), and accept the loopback names of a loopback listener', () => {
    const port = cp.adminPort;
    const wrong = curl(`https://${cp.admin}/debug/proxies`, { headers: [`Host: attacker.example:${port}`], cert: adminCert() });
    expect(wrong.status, wrong.body).to.equal(421);
    expect(wrong.json.error?.code).to.equal('TRELLIS_ADMIN_MISDIRECTED');
    expect(curl(`https://${cp.admin}/debug/proxies`, { headers: [`Host: localhost:${port}`], cert: adminCert() }).status).to.equal(200);
  });

  it('Should refuse a rotation body that names a filesystem path, and start nothing', () => {
    const r = curl(`https://${cp.admin}/lifecycle/rotate-root`, { method: 'POST', body: JSON.stringify({ rootDir: f('attacker-root') }), headers: json, cert: adminCert() });
    expect(r.status, r.body).to.equal(400);
    expect(r.json.error?.code).to.equal('TRELLIS_ADMIN_BAD_BODY');
    expect(r.json.error?.details?.['field']).to.equal('rootDir');
    unchanged();
  });

  it('Should not let an admin credential alone replace the trust anchor: a rotation needs proof signed by the current root', () => {
    const env = { TRELLIS_ADMIN_CREDENTIALS: creds };
    const noProof = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', f('attacker-root')], { env });
    expect(noProof.status, noProof.stderr).to.equal(2);
    expect(noProof.stderr).to.contain('--current-root-dir');
    // An attacker holding an admin credential signs the "proof" with a root of their own.
    expect(trellisSync(['ca', 'init', '--dir', f('rogue-ca'), '--trust-domain', TD]).status).to.equal(0);
    const forged = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', f('attacker-local-root'), '--current-root-dir', f('rogue-ca')], { env });
    expect(forged.status, forged.stderr).to.equal(1);
    expect(forged.stderr).to.contain('TRELLIS_LIFECYCLE_BAD_ROOT_PROOF');
    expect(readFileSync(join(caDir, 'root.pem'), 'utf8'), 'root.pem').to.equal(rootPemBefore);
    expect(existsSync(join(caDir, 'root-rotation.json')), 'no rotation was started').to.equal(false);
    const log = readFileSync(join(caDir, 'audit.log'), 'utf8');
    expect(log).to.not.contain('root-rotation.started');
  });

  it('Should fail every CLI command that talks to --admin without credentials, with a coded error saying how to get them', () => {
    const env = { TRELLIS_ADMIN_CREDENTIALS: '' };
    const commands = [
      ['revoke', '--admin', cp.admin, '--spiffe-id', `spiffe://${TD}/ns/shop/sa/web`],
      ['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', f('new-root')],
      ['ca', 'status', '--admin', cp.admin],
      ['ca', 'reissue', '--admin', cp.admin, '--all'],
      ['proxy-status', '--admin', cp.admin],
      ['check', '--admin', cp.admin],
    ];
    for (const args of commands) {
      const r = trellisSync(args, { env });
      expect(r.status, `${args.join(' ')}: ${r.stdout}${r.stderr}`).to.equal(1);
      expect(r.stderr, args.join(' ')).to.contain('TRELLIS_ADMIN_CREDENTIALS_MISSING');
      expect(r.stderr, args.join(' ')).to.contain('trellis admin credentials');
    }
    unchanged();
  });

  it('Should let the CLI use the credentials from --admin-credentials or TRELLIS_ADMIN_CREDENTIALS', () => {
    const viaFlag = trellisSync(['proxy-status', '--admin', cp.admin, '--admin-credentials', creds, '-o', 'json']);
    expect(viaFlag.status, viaFlag.stderr).to.equal(0);
    expect(JSON.parse(viaFlag.stdout)).to.be.an('array');
    const viaEnv = trellisSync(['ca', 'status', '--admin', cp.admin, '-o', 'json'], { env: { TRELLIS_ADMIN_CREDENTIALS: creds } });
    expect(viaEnv.status, viaEnv.stderr).to.equal(0);
    expect((JSON.parse(viaEnv.stdout) as { trustDomain: string }).trustDomain).to.equal(TD);
  });

  it('Should refuse to talk to an admin endpoint whose certificate does not chain to the credentials bundle', async () => {
    const other = f('other-creds');
    mkdirSync(other);
    for (const n of ['svid.pem', 'svid.key']) writeFileSync(join(other, n), readFileSync(join(creds, n)), { mode: 0o600 });
    writeFileSync(join(other, 'bundle.pem'), (await TestCa.create(TD)).root.pem, { mode: 0o600 });
    const r = trellisSync(['ca', 'status', '--admin', cp.admin, '--admin-credentials', other]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain('TRELLIS_ADMIN_UNREACHABLE');
  });

  it('Should refuse an admin certificate once its serial is revoked', () => {
    const second = f('admin-creds-2');
    expect(trellisSync(['admin', 'credentials', '--ca-dir', caDir, '--out', second, '--ttl', '1h']).status).to.equal(0);
    const cert = { cert: join(second, 'svid.pem'), key: join(second, 'svid.key') };
    expect(curl(`https://${cp.admin}/debug/proxies`, { cert }).status).to.equal(200);
    const serial = openssl(['x509', '-noout', '-serial'], readFileSync(cert.cert)).stdout.trim().replace(/^serial=/, '');
    const r = trellisSync(['revoke', '--admin', cp.admin, '--admin-credentials', creds, '--serial', serial, '--reason', 'laptop lost']);
    expect(r.status, r.stderr).to.equal(0);
    const refused = curl(`https://${cp.admin}/debug/proxies`, { cert });
    expect(refused.status, refused.body).to.equal(403);
    expect(refused.json.error?.code).to.equal('TRELLIS_ADMIN_FORBIDDEN');
    expect(curl(`https://${cp.admin}/debug/proxies`, { cert: adminCert() }).status, 'the other admin certificate still works').to.equal(200);
  });
});

describe('a control plane run with --root-rotation-auth admin-identity (real process)', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let cp: ControlPlaneProcess;

  before(async () => {
    tmp = makeTmpDir('trellis-admin-rotation-');
    mkdirSync(join(tmp.dir, 'policies'));
    initCa(join(tmp.dir, 'ca'));
    cp = await startControlPlaneProcess(join(tmp.dir, 'ca'), join(tmp.dir, 'policies'), ['--root-rotation-auth', 'admin-identity']);
  });
  after(async () => {
    if (cp) await cp.stop();
    tmp?.cleanup();
  });

  it('Should start a root rotation on the admin identity alone, from certificates only, and record who did it', () => {
    const caDir = join(tmp.dir, 'ca');
    const r = trellisSync(['ca', 'rotate-root', '--admin', cp.admin, '--root-dir', join(tmp.dir, 'new-root'), '-o', 'json'], { env: cp.adminEnv });
    expect(r.status, r.stderr).to.equal(0);
    expect((JSON.parse(r.stdout) as { roots: number }).roots).to.equal(2);
    const state = readFileSync(join(caDir, 'root-rotation.json'), 'utf8');
    expect(state, 'the state records no path').to.not.contain(tmp.dir);
    const newKey = readFileSync(join(tmp.dir, 'new-root', 'root.key'), 'utf8').split('\n')[1]!;
    expect(spawnSync('grep', ['-rl', newKey, caDir], { encoding: 'utf8' }).stdout, 'the new root key never reached the CA dir').to.equal('');
    const authorized = readFileSync(join(caDir, 'audit.log'), 'utf8').split('\n').filter((l) => l.includes('root-rotation.authorized')).map((l) => JSON.parse(l) as Record<string, string>);
    expect(authorized).to.have.length(1);
    expect(authorized[0]).to.include({ by: ADMIN_ID, proof: 'admin identity only' });
  });
});
