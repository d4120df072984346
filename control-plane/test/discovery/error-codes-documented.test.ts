import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlPlaneErrorCode } from '../../src/errors/control-plane-error';
import { grpcStatusForCode } from '../../src/errors/grpc-status';

describe('control-plane error codes', () => {
  const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'errors.md'), 'utf8');

  it('Should document every ControlPlaneErrorCode in docs/errors.md', () => {
    expect(Object.values(ControlPlaneErrorCode).filter((c) => !doc.includes('`' + c + '`'))).to.deep.equal([]);
  });

  it('Should map the attestation and limit refusals to the statuses the sidecar acts on', () => {
    // PERMISSION_DENIED / INVALID_ARGUMENT drop a pending CSR; FAILED_PRECONDITION keeps it for the mTLS stream; RESOURCE_EXHAUSTED backs off.
    expect(grpcStatusForCode(ControlPlaneErrorCode.ATTESTATION_MISMATCH)).to.equal(7);
    expect(grpcStatusForCode(ControlPlaneErrorCode.NODE_TOO_LARGE)).to.equal(3);
    expect(grpcStatusForCode(ControlPlaneErrorCode.TOKEN_STREAM_SPENT)).to.equal(9);
    expect(grpcStatusForCode(ControlPlaneErrorCode.STREAM_LIMIT)).to.equal(8);
  });
});
