import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpDir } from '@trellis/testkit';
import { HsmError, HsmErrorCode } from '../../src/hsm/hsm-error';
import { formatSignerConfig, parseSignerConfig, readPin, readSignerConfigFile } from '../../src/hsm/signer-config';

const GOOD = { type: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'trellis', keyLabel: 'int', pinFile: 'hsm.pin' };

function problemsOf(input: unknown): string[] {
  try {
    parseSignerConfig(input, 'signer.yaml', '/ca');
  } catch (err) {
    expect(err).to.be.instanceOf(HsmError);
    expect((err as HsmError).code).to.equal(HsmErrorCode.BAD_CONFIG);
    expect((err as HsmError).message).to.contain('signer.yaml');
    return (err as HsmError).details.problems as string[];
  }
  throw new Error('expected BAD_CONFIG');
}

describe('HSM signer configuration', function () {
  it('Should parse a valid config into a frozen object with paths resolved against the config dir', function () {
    const cfg = parseSignerConfig(GOOD, 'signer.yaml', '/ca');
    expect(cfg).to.deep.equal({ type: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'trellis', keyLabel: 'int', pin: { file: '/ca/hsm.pin' }, keyType: 'ec-p256', sessions: 4 });
    expect(Object.isFrozen(cfg)).to.equal(true);
    expect(Object.isFrozen(cfg.pin)).to.equal(true);
  });

  const bad: Array<[string, Record<string, unknown>, string[]]> = [
    ['no type', { ...GOOD, type: undefined }, ['type: must be "pkcs11" (required)']],
    ['another signer type', { ...GOOD, type: 'kms' }, ['type: must be "pkcs11", got "kms"']],
    ['no module and no key label', { ...GOOD, module: undefined, keyLabel: undefined }, ['module: required', 'keyLabel: required']],
    ['both a token label and a slot', { ...GOOD, slot: 0 }, ['tokenLabel/slot: set exactly one of them']],
    ['neither a token label nor a slot', { ...GOOD, tokenLabel: undefined }, ['tokenLabel/slot: set exactly one of them']],
    ['a negative slot', { ...GOOD, tokenLabel: undefined, slot: -1 }, ['slot: must be a non-negative integer']],
    ['a token label over 32 bytes', { ...GOOD, tokenLabel: 'x'.repeat(33) }, ['tokenLabel: at most 32 bytes (PKCS#11 token labels are 32 bytes)']],
    ['a key id that is not hex', { ...GOOD, keyId: 'xyz' }, ['keyId: must be an even number of hex digits']],
    ['no PIN source', { ...GOOD, pinFile: undefined }, ['pinFile/pinEnv: set one of them (the PIN is never written in this file)']],
    ['two PIN sources', { ...GOOD, pinEnv: 'PIN' }, ['pinFile/pinEnv: set only one of them']],
    ['a PIN env that is not a variable name', { ...GOOD, pinFile: undefined, pinEnv: 'A-B' }, ['pinEnv: must be an environment variable name']],
    ['the PIN itself', { ...GOOD, pin: '1234' }, ['pin: a PIN must not be written in the config; use pinFile or pinEnv']],
    ['an unknown key type', { ...GOOD, keyType: 'ed25519' }, ['keyType: must be one of ec-p256, ec-p384, rsa-2048']],
    ['a session count out of range', { ...GOOD, sessions: 0 }, ['sessions: must be an integer 1..64']],
    ['an unknown field', { ...GOOD, modul: 'x' }, ['modul: unknown field']],
  ];
  for (const [what, input, problems] of bad) {
    it(`Should reject a config with ${what}, naming the field`, function () {
      expect(problemsOf(input)).to.deep.equal(problems);
    });
  }

  it('Should reject a config that is not a mapping', function () {
    expect(problemsOf(['a'])).to.deep.equal(['(root): expected a mapping']);
  });

  it('Should report every problem at once, not only the first', function () {
    expect(problemsOf({ type: 'pkcs11', pin: 'x', sessions: 99 })).to.deep.equal([
      'module: required',
      'tokenLabel/slot: set exactly one of them',
      'keyLabel: required',
      'pinFile/pinEnv: set one of them (the PIN is never written in this file)',
      'pin: a PIN must not be written in the config; use pinFile or pinEnv',
      'sessions: must be an integer 1..64',
    ]);
  });

  it('Should read YAML from a file, name the line of a syntax error, and round-trip what keygen writes', function () {
    const tmp = makeTmpDir('trellis-hsm-cfg-');
    try {
      const file = join(tmp.dir, 'signer.yaml');
      writeFileSync(file, 'type: pkcs11\nmodule: [unclosed\n');
      let err: unknown;
      try {
        readSignerConfigFile(file);
      } catch (e) {
        err = e;
      }
      expect((err as HsmError).code).to.equal(HsmErrorCode.BAD_CONFIG);
      expect((err as HsmError).message).to.contain(file);
      expect((err as HsmError).details.line).to.be.a('number');
      const cfg = parseSignerConfig({ ...GOOD, pinFile: undefined, pinEnv: 'TRELLIS_HSM_PIN', keyId: 'A1B2', keyType: 'ec-p384', sessions: 2 }, 'x', '/');
      writeFileSync(file, formatSignerConfig(cfg));
      expect(readSignerConfigFile(file)).to.deep.equal(cfg);
    } finally {
      tmp.cleanup();
    }
  });

  describe('PIN lookup', function () {
    it('Should take the first line of the PIN file without its newline', function () {
      expect(readPin({ file: '/p' }, { readFile: () => '123456\r\nignored\n' })).to.equal('123456');
    });
    it('Should read the PIN from the named environment variable', function () {
      expect(readPin({ env: 'HSM_PIN' }, { env: { HSM_PIN: 's3cret' } })).to.equal('s3cret');
    });
    const failures: Array<[string, () => string]> = [
      ['an unset variable', () => readPin({ env: 'HSM_PIN' }, { env: {} })],
      ['an empty variable', () => readPin({ env: 'HSM_PIN' }, { env: { HSM_PIN: '' } })],
      ['an empty file', () => readPin({ file: '/p' }, { readFile: () => '\n' })],
      ['an unreadable file', () => readPin({ file: '/nonexistent/trellis/pin' })],
    ];
    for (const [what, fn] of failures) {
      it(`Should refuse ${what} with PIN_UNAVAILABLE`, function () {
        expect(fn).to.throw(HsmError).with.property('code', HsmErrorCode.PIN_UNAVAILABLE);
      });
    }
  });
});
