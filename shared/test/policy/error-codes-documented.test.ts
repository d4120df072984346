import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { POLICY_CODES } from '../../src';

describe('Policy error codes', () => {
  it('Should document every PolicyError code in the policy table of docs/errors.md', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    const table = doc.slice(doc.indexOf('## Policy manifests'), doc.indexOf('\n## ', doc.indexOf('## Policy manifests') + 1));
    const missing = Object.values(POLICY_CODES).filter((c) => !table.includes('| `' + c + '` |'));
    expect(missing).to.deep.equal([]);
  });
});
