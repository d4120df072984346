import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubernetesErrorCode } from '../src';

describe('Kubernetes adapter error codes', () => {
  it('Should document every KubernetesError code in docs/errors.md', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    expect(Object.values(KubernetesErrorCode).filter((c) => !doc.includes('`' + c + '`'))).to.deep.equal([]);
  });
});
