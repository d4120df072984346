/**
 * End to end: a CA whose intermediate key lives in a SoftHSM2 token.
 *
 * The real `trellis` binary initialises a root, generates the key inside the
 * token, writes the intermediate CSR signed by the token, and installs the
 * intermediate the root signed (with openssl, as an offline root would).
 * The CA loaded with the HSM signer then issues an SVID that `openssl verify`
 * accepts, and no private key for the intermediate ever appears on disk.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HsmError, HsmErrorCode, loadCertificateAuthority, loadSigner, type CertificateAuthority, type Pkcs11Signer } from '@trellis/control-plane';
import { describeWith, makeTmpDir, openssl, REPO_ROOT, SOFTHSM, SOFTHSM_MODULE, trellisSync } from '@trellis/testkit';

const MODULE = SOFTHSM_MODULE;
const TD = 'hsm.example.org';

describeWith(SOFTHSM, 'CA with its intermediate key in a SoftHSM2 token', function () {
  this.timeout(60_000);
  let tmp: { dir: string; cleanup: () => void };
  let env: NodeJS.ProcessEnv;
  let pin: string;
  let previousConf: string | undefined;
  let rootDir: string;
  let caDir: string;
  let signer: Pkcs11Signer | undefined;
  let ca: CertificateAuthority | undefined;

  const run = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): ReturnType<typeof trellisSync> => trellisSync(args, { env: { ...env, ...extraEnv } });

  before(function () {
    tmp = makeTmpDir('trellis-hsm-e2e-');
    mkdirSync(join(tmp.dir, 'tokens'));
    const conf = join(tmp.dir, 'softhsm2.conf');
    writeFileSync(conf, `directories.tokendir = ${join(tmp.dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    pin = randomBytes(6).toString('hex');
    const init = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'trellis-ca', '--so-pin', randomBytes(6).toString('hex'), '--pin', pin], { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8' });
    expect(init.status, init.stderr).to.equal(0);
    previousConf = process.env.SOFTHSM2_CONF;
    process.env.SOFTHSM2_CONF = conf;
    env = { SOFTHSM2_CONF: conf, TRELLIS_HSM_PIN: pin };
    rootDir = join(tmp.dir, 'root');
    caDir = join(tmp.dir, 'ca');
  });
  after(() => {
    ca?.close();
    signer?.close();
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    tmp?.cleanup();
  });

  it('Should set up the intermediate through the trellis CLI with the key generated in the token', function () {
    const root = run(['ca', 'init', '--dir', rootDir, '--trust-domain', TD]);
    expect(root.status, root.stderr).to.equal(0);

    const keygen = run(['hsm', 'keygen', '--dir', caDir, '--module', MODULE, '--token-label', 'trellis-ca', '--key-label', 'intermediate', '--pin-env', 'TRELLIS_HSM_PIN', '-o', 'json']);
    expect(keygen.status, keygen.stderr).to.equal(0);
    expect(JSON.parse(keygen.stdout)).to.include({ keyType: 'ec-p256', keyLabel: 'intermediate' });
    const config = readFileSync(join(caDir, 'signer.yaml'), 'utf8');
    expect(config).to.contain('pinEnv: TRELLIS_HSM_PIN');
    expect(config).not.to.contain(pin);

    const csr = run(['hsm', 'csr', '--dir', caDir, '--trust-domain', TD]);
    expect(csr.status, csr.stderr).to.equal(0);
    expect(csr.stdout).to.contain('BEGIN CERTIFICATE REQUEST');
    const csrPath = join(caDir, 'intermediate.csr');
    const verified = openssl(['req', '-in', csrPath, '-verify', '-noout', '-text']);
    expect(verified.status, verified.stderr).to.equal(0);
    expect(verified.stdout + verified.stderr).to.match(/verify OK/i);
    expect(verified.stdout).to.contain(`URI:spiffe://${TD}`);

    // The offline root signs the CSR; openssl stands in for it, independent of our code.
    const ext = join(tmp.dir, 'intermediate.ext');
    writeFileSync(ext, `[v3]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://${TD}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
    const intPem = join(tmp.dir, 'intermediate.pem');
    const signed = openssl(['x509', '-req', '-in', csrPath, '-CA', join(rootDir, 'root.pem'), '-CAkey', join(rootDir, 'root.key'), '-set_serial', '0x' + randomBytes(15).toString('hex'), '-days', '30', '-sha256', '-extfile', ext, '-extensions', 'v3', '-out', intPem]);
    expect(signed.status, signed.stderr).to.equal(0);

    const imported = run(['hsm', 'import', '--dir', caDir, '--cert', intPem, '--chain', join(rootDir, 'root.pem')]);
    expect(imported.status, imported.stderr).to.equal(0);

    const check = run(['hsm', 'sign-test', '--dir', caDir, '-o', 'json']);
    expect(check.status, check.stderr).to.equal(0);
    expect(JSON.parse(check.stdout)).to.deep.include({ ok: true, signatureValid: true, intermediateMatches: true, keyType: 'ec-p256' });
    expect(JSON.parse(check.stdout).protection).to.include({ sensitive: true, extractable: false, neverExtractable: true, local: true });
  });

  it('Should issue an SVID through the HSM signer that openssl verifies up to the root', async function () {
    signer = loadSigner(caDir, { env });
    expect(signer, 'signer.yaml should select the HSM signer').to.not.equal(undefined);
    ca = await loadCertificateAuthority(caDir, { signer, verifyEverySignature: true });
    const leafKey = join(tmp.dir, 'leaf.key');
    const leafCsr = join(tmp.dir, 'leaf.csr');
    const req = openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/', '-keyout', leafKey, '-out', leafCsr]);
    expect(req.status, req.stderr).to.equal(0);
    const id = `spiffe://${TD}/ns/default/sa/web`;
    const svid = await ca.issue({ csr: readFileSync(leafCsr), spiffeId: id, requester: 'hsm-test' });
    const leafPem = join(tmp.dir, 'leaf.pem');
    writeFileSync(leafPem, svid.leafPem);
    const v = openssl(['verify', '-CAfile', join(caDir, 'root.pem'), '-untrusted', join(caDir, 'chain.pem'), leafPem]);
    expect(v.stdout + v.stderr).to.contain(': OK');
    expect(v.status).to.equal(0);
    const text = openssl(['x509', '-in', leafPem, '-noout', '-text']).stdout;
    expect(text).to.contain(`URI:${id}`);
    expect(text).to.contain('ecdsa-with-SHA256');
  });

  it('Should sign through the HSM when the CA dir is loaded without naming a signer, as the control plane does', async function () {
    const plain = await loadCertificateAuthority(caDir, { env, verifyEverySignature: true });
    try {
      const req = openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/', '-keyout', join(tmp.dir, 'leaf2.key'), '-out', join(tmp.dir, 'leaf2.csr')]);
      expect(req.status, req.stderr).to.equal(0);
      const svid = await plain.issue({ csr: readFileSync(join(tmp.dir, 'leaf2.csr')), spiffeId: `spiffe://${TD}/ns/default/sa/api`, requester: 'hsm-test' });
      writeFileSync(join(tmp.dir, 'leaf2.pem'), svid.leafPem);
      const v = openssl(['verify', '-CAfile', join(caDir, 'root.pem'), '-untrusted', join(caDir, 'chain.pem'), join(tmp.dir, 'leaf2.pem')]);
      expect(v.status, v.stdout + v.stderr).to.equal(0);
    } finally {
      plain.close();
    }
  });

  it('Should leave no intermediate private key anywhere in the CA dir', function () {
    expect(existsSync(join(caDir, 'intermediate.key'))).to.equal(false);
    for (const f of readdirSync(caDir)) {
      expect(readFileSync(join(caDir, f), 'utf8'), f).not.to.contain('PRIVATE KEY');
    }
  });

  it('Should refuse a wrong PIN with TRELLIS_HSM_LOGIN_FAILED and not echo the PIN', function () {
    const wrong = 'bad-' + randomBytes(4).toString('hex');
    const r = run(['hsm', 'sign-test', '--dir', caDir], { TRELLIS_HSM_PIN: wrong });
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain(HsmErrorCode.LOGIN_FAILED);
    expect(r.stderr + r.stdout).not.to.contain(wrong);
  });

  it('Should refuse a broken signer.yaml instead of falling back to a file key', function () {
    const broken = join(tmp.dir, 'broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'signer.yaml'), 'type: pkcs11\nkeyLabel: x\npin: "1234"\n');
    let err: unknown;
    try {
      loadSigner(broken);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(HsmError);
    expect((err as HsmError).code).to.equal(HsmErrorCode.BAD_CONFIG);
    expect((err as HsmError).details.problems).to.include.members(['module: required', 'pin: a PIN must not be written in the config; use pinFile or pinEnv']);
    const r = run(['hsm', 'sign-test', '--dir', broken]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain(HsmErrorCode.BAD_CONFIG);
    expect(r.stderr).to.contain(join(broken, 'signer.yaml'));
  });

  it('Should answer conflicting or missing hsm keygen flags with a usage error (exit 2) naming the flag', function () {
    const base = ['hsm', 'keygen', '--dir', join(tmp.dir, 'unused'), '--module', MODULE, '--key-label', 'k'];
    const cases: Array<[string[], string]> = [
      [[...base, '--token-label', 'trellis-ca', '--slot', '1', '--pin-env', 'TRELLIS_HSM_PIN'], '--token-label'],
      [[...base, '--pin-env', 'TRELLIS_HSM_PIN'], '--token-label'],
      [[...base, '--token-label', 'trellis-ca', '--pin-env', 'TRELLIS_HSM_PIN', '--pin-file', '/x'], '--pin-file'],
      [[...base, '--token-label', 'trellis-ca', '--pin-env', 'TRELLIS_HSM_PIN', '--key-type', 'ed25519'], '--key-type'],
      [[...base, '--token-label', 'trellis-ca', '--pin-env', 'TRELLIS_HSM_PIN', '--slot', 'one'], '--slot'],
    ];
    for (const [args, flagName] of cases) {
      const r = run(args);
      expect(r.status, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.contain(flagName);
    }
    expect(existsSync(join(tmp.dir, 'unused'))).to.equal(false);
  });

  it('Should refuse through the CLI to generate a second key under a label the token already has', function () {
    const r = run(['hsm', 'keygen', '--dir', join(tmp.dir, 'second'), '--module', MODULE, '--token-label', 'trellis-ca', '--key-label', 'intermediate', '--pin-env', 'TRELLIS_HSM_PIN']);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.contain(HsmErrorCode.KEY_EXISTS);
    expect(existsSync(join(tmp.dir, 'second', 'signer.yaml'))).to.equal(false);
  });

  it('Should load the control plane without pkcs11js and fail only when an HSM is configured', function () {
    // A child process where require('pkcs11js') fails, as when the native build did not run.
    const script = `
      const Module = require('node:module');
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request === 'pkcs11js') { const e = new Error("Cannot find module 'pkcs11js'"); e.code = 'MODULE_NOT_FOUND'; throw e; }
        return resolve.call(this, request, ...rest);
      };
      const cp = require('@trellis/control-plane');
      (async () => {
        const out = {};
        out.fileSigner = cp.loadSigner(process.argv[1]) === undefined;
        const ca = await cp.loadCertificateAuthority(process.argv[1]);
        out.fileCaLoaded = ca.trustDomain;
        ca.close();
        try { cp.loadSigner(process.argv[2]); out.hsm = 'loaded'; } catch (e) { out.hsm = e.code; }
        console.log(JSON.stringify(out));
      })().catch((e) => { console.error(e); process.exit(3); });
    `;
    const r = spawnSync(process.execPath, ['-e', script, rootDir, caDir], { cwd: REPO_ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ fileSigner: true, fileCaLoaded: TD, hsm: HsmErrorCode.BINDING_UNAVAILABLE });
  });
});
