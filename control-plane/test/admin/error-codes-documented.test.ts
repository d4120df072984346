import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdminErrorCode } from '../../src/admin/admin-error';
import { LifecycleErrorCode } from '../../src/lifecycle/lifecycle-error';

describe('Admin API and lifecycle error codes', () => {
  const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'errors.md'), 'utf8');
  for (const [family, codes] of [['AdminError', AdminErrorCode], ['LifecycleError', LifecycleErrorCode]] as const) {
    it(`Should document every ${family} code in docs/errors.md`, () => {
      const missing = Object.values(codes).filter((c) => !doc.includes('`' + c + '`'));
      expect(missing).to.deep.equal([]);
    });
  }
});
