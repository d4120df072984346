import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SpiffeIdErrorCode } from '../../src/identity/spiffe-id';
import { SvidErrorCode } from '../../src/identity/x509-svid';
import { X509ErrorCode } from '../../src/x509/x509-error';
import { DerErrorCode } from '../../src/x509/der-error';
import { PathErrorCode } from '../../src/x509/path-validation';

describe('Identity and X.509 error codes', () => {
  const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'errors.md'), 'utf8');
  const families: [string, Record<string, string>][] = [
    ['SpiffeIdError', SpiffeIdErrorCode],
    ['SvidError', SvidErrorCode],
    ['X509Error', X509ErrorCode],
    ['DerError', DerErrorCode],
    ['path validation', PathErrorCode],
  ];
  for (const [family, codes] of families) {
    it(`documents every ${family} code in docs/errors.md`, () => {
      const missing = Object.values(codes).filter((c) => !doc.includes('`' + c + '`'));
      expect(missing).to.deep.equal([]);
    });
  }
  it('never reuses a code across families', () => {
    const all = families.flatMap(([, c]) => Object.values(c));
    expect(new Set(all).size).to.equal(all.length);
  });
});
