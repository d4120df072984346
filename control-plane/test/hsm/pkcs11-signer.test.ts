import { expect } from 'chai';
import { createHash, verify as cryptoVerify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@trellis/shared';
import { makeTmpDir, openssl } from '@trellis/testkit';
import type * as Pkcs11Js from 'pkcs11js';
import { HsmError, HsmErrorCode } from '../../src/hsm/hsm-error';
import { acquirePkcs11Module } from '../../src/hsm/pkcs11-module';
import { openPkcs11Signer, type Pkcs11Signer } from '../../src/hsm/pkcs11-signer';
import { generateHsmKey } from '../../src/hsm/hsm-setup';
import { findKeyPair, findSlot, openUserSession, slotId } from '../../src/hsm/pkcs11-token';
import { parseSignerConfig, type Pkcs11SignerConfig } from '../../src/hsm/signer-config';
import { describeWith, SOFTHSM } from '@trellis/testkit';
import { createSoftHsm, SOFTHSM_MODULE, type SoftHsm } from './softhsm-token';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err, (err as Error).stack).to.be.instanceOf(HsmError);
    return (err as HsmError).code;
  }
  return undefined;
}

async function asyncCodeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    expect(err, (err as Error).stack).to.be.instanceOf(HsmError);
    return (err as HsmError).code;
  }
  return undefined;
}

describeWith(SOFTHSM, 'PKCS#11 signer on a real SoftHSM2 token', function () {
  let hsm: SoftHsm;
  let token: { label: string; pin: string; pinFile: string };
  let caDir: { dir: string; cleanup: () => void };
  const signers: Pkcs11Signer[] = [];

  const config = (over: Record<string, unknown> = {}): Pkcs11SignerConfig =>
    parseSignerConfig({ type: 'pkcs11', module: SOFTHSM_MODULE, tokenLabel: token.label, keyLabel: 'int-p256', pinFile: token.pinFile, ...over }, 'test config', '/');
  const open = (cfg: Pkcs11SignerConfig, deps = {}): Pkcs11Signer => {
    const s = openPkcs11Signer(cfg, deps);
    signers.push(s);
    return s;
  };

  before(function () {
    hsm = createSoftHsm();
    token = hsm.initToken('trellis-test');
    caDir = makeTmpDir('trellis-hsm-ca-');
    for (const [label, keyType] of [['int-p256', 'ec-p256'], ['int-p384', 'ec-p384'], ['int-rsa', 'rsa-2048']] as const) {
      generateHsmKey(join(caDir.dir, label), config({ keyLabel: label, keyType }));
    }
  });
  after(() => {
    for (const s of signers) s.close();
    caDir?.cleanup();
    hsm?.cleanup();
  });

  for (const [label, keyType, alg] of [['int-p256', 'ec-p256', 'ecdsa-with-SHA256'], ['int-p384', 'ec-p384', 'ecdsa-with-SHA384'], ['int-rsa', 'rsa-2048', 'sha256WithRSAEncryption']] as const) {
    it(`Should sign with a ${keyType} token key so that node:crypto and openssl verify the signature`, async function () {
      const signer = open(config({ keyLabel: label }));
      expect(signer.keyType).to.equal(keyType);
      expect(signer.algorithm.name).to.equal(alg);
      const data = Buffer.from(`tbs bytes for ${label}`);
      const sig = await signer.sign(data);
      expect(cryptoVerify(signer.algorithm.hash, data, signer.publicKey, sig)).to.equal(true);
      expect(cryptoVerify(signer.algorithm.hash, Buffer.from('other bytes'), signer.publicKey, sig)).to.equal(false);
      const dir = makeTmpDir('trellis-hsm-sig-');
      try {
        writeFileSync(join(dir.dir, 'pub.pem'), signer.publicKey.export({ type: 'spki', format: 'pem' }));
        writeFileSync(join(dir.dir, 'data'), data);
        writeFileSync(join(dir.dir, 'sig'), sig);
        const r = openssl(['dgst', `-${signer.algorithm.hash}`, '-verify', join(dir.dir, 'pub.pem'), '-signature', join(dir.dir, 'sig'), join(dir.dir, 'data')]);
        expect(r.stdout + r.stderr).to.contain('Verified OK');
        expect(r.status).to.equal(0);
      } finally {
        dir.cleanup();
      }
    });
  }

  it('Should generate the key inside the token as sensitive and never extractable, so CKA_VALUE cannot be read', function () {
    const mod = acquirePkcs11Module(SOFTHSM_MODULE);
    const { binding, api } = mod;
    const session = openUserSession(mod, findSlot(binding, api, { tokenLabel: token.label }, SOFTHSM_MODULE), token.pin, 'test');
    try {
      const { privateKey } = findKeyPair(binding, api, session, { keyLabel: 'int-p256' }, 'test');
      const attrs = api.C_GetAttributeValue(session, privateKey, [
        { type: binding.CKA_TOKEN }, { type: binding.CKA_SENSITIVE }, { type: binding.CKA_EXTRACTABLE },
        { type: binding.CKA_NEVER_EXTRACTABLE }, { type: binding.CKA_ALWAYS_SENSITIVE }, { type: binding.CKA_LOCAL },
      ]);
      const flags = attrs.map((a) => (a.value as Buffer)[0]);
      expect(flags).to.deep.equal([1, 1, 0, 1, 1, 1]);
      let reason: string | undefined;
      try {
        api.C_GetAttributeValue(session, privateKey, [{ type: binding.CKA_VALUE }]);
      } catch (err) {
        reason = (err as Error).message;
      }
      expect(reason).to.match(/CKR_ATTRIBUTE_SENSITIVE/);
      // Wrapping it out under a key we know must be refused too.
      const wrapping = api.C_GenerateKey(session, { mechanism: binding.CKM_AES_KEY_GEN }, [
        { type: binding.CKA_CLASS, value: binding.CKO_SECRET_KEY }, { type: binding.CKA_VALUE_LEN, value: 32 },
        { type: binding.CKA_WRAP, value: true }, { type: binding.CKA_TOKEN, value: false },
      ] as Pkcs11Js.Template);
      let wrapReason: string | undefined;
      try {
        api.C_WrapKey(session, { mechanism: binding.CKM_AES_KEY_WRAP_PAD }, wrapping, privateKey, Buffer.alloc(4096));
      } catch (err) {
        wrapReason = (err as Error).message;
      }
      expect(wrapReason).to.match(/CKR_KEY_UNEXTRACTABLE/);
      api.C_DestroyObject(session, wrapping);
    } finally {
      api.C_CloseSession(session);
      mod.release();
    }
  });

  it('Should report the key protection it checked when it opens', function () {
    const signer = open(config());
    expect(signer.protection).to.deep.equal({ sensitive: true, extractable: false, alwaysSensitive: true, neverExtractable: true, local: true });
    expect(signer.kind).to.equal('pkcs11');
  });

  it('Should refuse an extractable private key on the token (fail closed)', function () {
    const mod = acquirePkcs11Module(SOFTHSM_MODULE);
    const { binding, api } = mod;
    const session = openUserSession(mod, findSlot(binding, api, { tokenLabel: token.label }, SOFTHSM_MODULE), token.pin, 'test');
    try {
      const common = [{ type: binding.CKA_TOKEN, value: true }, { type: binding.CKA_LABEL, value: 'exportable' }];
      api.C_GenerateKeyPair(session, { mechanism: binding.CKM_EC_KEY_PAIR_GEN },
        [...common, { type: binding.CKA_EC_PARAMS, value: Buffer.from('06082a8648ce3d030107', 'hex') }, { type: binding.CKA_VERIFY, value: true }] as Pkcs11Js.Template,
        [...common, { type: binding.CKA_PRIVATE, value: true }, { type: binding.CKA_SIGN, value: true }, { type: binding.CKA_SENSITIVE, value: false }, { type: binding.CKA_EXTRACTABLE, value: true }] as Pkcs11Js.Template);
    } finally {
      api.C_CloseSession(session);
      mod.release();
    }
    expect(codeOf(() => open(config({ keyLabel: 'exportable' })))).to.equal(HsmErrorCode.KEY_EXPORTABLE);
  });

  it('Should sign many requests at once over a small session pool, each signature valid', async function () {
    const signer = open(config({ sessions: 2 }));
    const inputs = Array.from({ length: 40 }, (_, i) => Buffer.from(`request ${i}`));
    const sigs = await Promise.all(inputs.map((d) => signer.sign(d)));
    sigs.forEach((sig, i) => expect(cryptoVerify('sha256', inputs[i]!, signer.publicKey, sig), `signature ${i}`).to.equal(true));
  });

  it('Should produce DER ECDSA signatures (SEQUENCE of two INTEGERs), not the raw r||s PKCS#11 returns', async function () {
    const signer = open(config());
    for (let i = 0; i < 20; i++) {
      const sig = await signer.sign(createHash('sha256').update(String(i)).digest());
      expect(sig[0]).to.equal(0x30);
      expect(sig[1]).to.equal(sig.length - 2);
      expect(sig[2]).to.equal(0x02);
    }
  });

  it('Should report CKR_PIN_INCORRECT when the token itself rejects the PIN', function () {
    for (const s of signers.splice(0)) s.close();
    let err: unknown;
    try {
      open(config({ pinFile: undefined, pinEnv: 'P' }), { env: { P: 'not-the-pin' } });
    } catch (e) {
      err = e;
    }
    expect((err as HsmError).code).to.equal(HsmErrorCode.LOGIN_FAILED);
    expect((err as HsmError).details.reason).to.equal('CKR_PIN_INCORRECT');
  });

  it('Should refuse a wrong PIN with LOGIN_FAILED and never put the PIN in the error or the log', function () {
    const lines: string[] = [];
    const logger = createLogger({ component: 'test', sink: { write: (l: string) => lines.push(l) }, level: 'debug' });
    const wrong = 'wrong-pin-0000';
    let err: unknown;
    try {
      open(config({ pinFile: undefined, pinEnv: 'TRELLIS_TEST_HSM_PIN' }), { env: { TRELLIS_TEST_HSM_PIN: wrong }, logger });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(HsmError);
    expect((err as HsmError).code).to.equal(HsmErrorCode.LOGIN_FAILED);
    // CKR_PIN_INCORRECT when the token checks it; when other signers keep it logged in, the PIN is compared with the one that was checked.
    expect((err as HsmError).details.reason).to.be.a('string');
    expect(JSON.stringify(err) + (err as Error).message).not.to.contain(wrong);
    const ok = open(config({ pinFile: undefined, pinEnv: 'TRELLIS_TEST_HSM_PIN' }), { env: { TRELLIS_TEST_HSM_PIN: token.pin }, logger });
    expect(ok.keyType).to.equal('ec-p256');
    expect(lines.length).to.be.greaterThan(0);
    expect(lines.join('\n')).not.to.contain(token.pin);
    expect(lines.join('\n')).not.to.contain(wrong);
  });

  const failures: Array<[string, () => Record<string, unknown>, object, string]> = [
    ['a token label no slot carries', () => ({ tokenLabel: 'no-such-token' }), {}, HsmErrorCode.TOKEN_NOT_FOUND],
    ['a slot ID that does not exist', () => ({ tokenLabel: undefined, slot: 999 }), {}, HsmErrorCode.TOKEN_NOT_FOUND],
    ['a key label not on the token', () => ({ keyLabel: 'no-such-key' }), {}, HsmErrorCode.KEY_NOT_FOUND],
    ['a key id that does not match the label', () => ({ keyId: 'ffff' }), {}, HsmErrorCode.KEY_NOT_FOUND],
    ['a module path that is not a PKCS#11 library', () => ({ module: '/etc/hostname' }), {}, HsmErrorCode.MODULE_FAILED],
    ['an unset PIN variable', () => ({ pinFile: undefined, pinEnv: 'TRELLIS_TEST_UNSET_PIN' }), { env: {} }, HsmErrorCode.PIN_UNAVAILABLE],
    ['a missing PIN file', () => ({ pinFile: '/nonexistent/pin' }), {}, HsmErrorCode.PIN_UNAVAILABLE],
    ['a pkcs11js binding that cannot load', () => ({}), { loadBinding: () => { throw new HsmError(HsmErrorCode.BINDING_UNAVAILABLE, 'simulated', {}); } }, HsmErrorCode.BINDING_UNAVAILABLE],
  ];
  for (const [what, over, deps, code] of failures) {
    it(`Should refuse ${what} with ${code}`, function () {
      expect(codeOf(() => open(config(over()), deps))).to.equal(code);
    });
  }

  it('Should refuse to generate a key over an existing label (HSM keys are never overwritten)', function () {
    const dir = makeTmpDir('trellis-hsm-dup-');
    try {
      expect(codeOf(() => generateHsmKey(dir.dir, config({ keyLabel: 'int-p256' })))).to.equal(HsmErrorCode.KEY_EXISTS);
      expect(codeOf(() => generateHsmKey(join(caDir.dir, 'int-p256'), config({ keyLabel: 'fresh' })))).to.equal(HsmErrorCode.CONFIG_EXISTS);
    } finally {
      dir.cleanup();
    }
  });

  it('Should recover when the token drops every session, logging in again on a fresh one', async function () {
    const lines: string[] = [];
    const logger = createLogger({ component: 'test', sink: { write: (l: string) => lines.push(l) } });
    const signer = open(config({ sessions: 3 }), { logger });
    await Promise.all([1, 2, 3].map((i) => signer.sign(Buffer.from(`warm ${i}`))));
    const mod = acquirePkcs11Module(SOFTHSM_MODULE);
    try {
      mod.api.C_CloseAllSessions(findSlot(mod.binding, mod.api, { tokenLabel: token.label }, SOFTHSM_MODULE));
    } finally {
      mod.release();
    }
    const data = Buffer.from('after the sessions were closed');
    const sig = await signer.sign(data);
    expect(cryptoVerify('sha256', data, signer.publicKey, sig)).to.equal(true);
    expect(lines.map((l) => JSON.parse(l) as { msg: string; reason?: string }).find((l) => l.msg === 'hsm session lost; retrying on a fresh session')?.reason).to.equal('CKR_SESSION_HANDLE_INVALID');
  });

  it('Should refuse to sign with KEY_CHANGED when, after a reconnect, the label names another key', async function () {
    const dir = makeTmpDir('trellis-hsm-swap-');
    try {
      generateHsmKey(dir.dir, config({ keyLabel: 'swap' }));
      const signer = open(config({ keyLabel: 'swap' }));
      await signer.sign(Buffer.from('before'));
      const mod = acquirePkcs11Module(SOFTHSM_MODULE);
      const { binding, api } = mod;
      const slot = findSlot(binding, api, { tokenLabel: token.label }, SOFTHSM_MODULE);
      try {
        api.C_CloseAllSessions(slot);
        const session = openUserSession(mod, slot, token.pin, 'test');
        const old = findKeyPair(binding, api, session, { keyLabel: 'swap' }, 'test');
        api.C_DestroyObject(session, old.privateKey);
        api.C_DestroyObject(session, old.publicKey);
        api.C_CloseSession(session);
      } finally {
        mod.release();
      }
      generateHsmKey(dir.dir, config({ keyLabel: 'swap' }), { force: true });
      expect(await asyncCodeOf(signer.sign(Buffer.from('after')))).to.equal(HsmErrorCode.KEY_CHANGED);
    } finally {
      dir.cleanup();
    }
  });

  it('Should find the token by slot ID as well as by label', async function () {
    const mod = acquirePkcs11Module(SOFTHSM_MODULE);
    let id: number;
    try {
      id = slotId(findSlot(mod.binding, mod.api, { tokenLabel: token.label }, SOFTHSM_MODULE));
    } finally {
      mod.release();
    }
    const bySlot = open(config({ tokenLabel: undefined, slot: id }));
    const byLabel = open(config());
    expect(bySlot.publicKeyDer.equals(byLabel.publicKeyDer)).to.equal(true);
  });

  it('Should fail with CLOSED after close, and keep other signers on the same module working', async function () {
    const a = open(config());
    const b = open(config({ keyLabel: 'int-p384' }));
    a.close();
    expect(await asyncCodeOf(a.sign(Buffer.from('x')))).to.equal(HsmErrorCode.CLOSED);
    const sig = await b.sign(Buffer.from('y'));
    expect(cryptoVerify('sha384', Buffer.from('y'), b.publicKey, sig)).to.equal(true);
  });
});
