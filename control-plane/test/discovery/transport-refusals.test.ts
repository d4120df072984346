import { expect } from 'chai';
import { Metadata, status } from '@grpc/grpc-js';
import { transportRefusalCode } from '../../src/discovery/transport-refusals';

function tagged(code: string): Metadata {
  const md = new Metadata();
  md.set('trellis-error-code', code);
  return md;
}

describe('transport refusals', () => {
  const cases: Array<[string, { code: status; metadata?: Metadata | null }, string | null]> = [
    ['an OK status', { code: status.OK }, null],
    ['a RESOURCE_EXHAUSTED grpc-js sent on its own (the receive limit)', { code: status.RESOURCE_EXHAUSTED, metadata: null }, 'TRELLIS_CP_MESSAGE_TOO_LARGE'],
    ['our own RESOURCE_EXHAUSTED (already tagged)', { code: status.RESOURCE_EXHAUSTED, metadata: tagged('TRELLIS_CP_OVERLOADED') }, null],
    ['our own INVALID_ARGUMENT (already tagged)', { code: status.INVALID_ARGUMENT, metadata: tagged('TRELLIS_CP_UNKNOWN_TYPE') }, null],
    ['an untagged INTERNAL (a body grpc-js could not decode)', { code: status.INTERNAL }, 'GRPC_INTERNAL'],
  ];
  for (const [what, s, want] of cases) {
    it(`names ${what} as ${want ?? 'nothing to count'}`, () => {
      expect(transportRefusalCode(s)).to.equal(want);
    });
  }
});
