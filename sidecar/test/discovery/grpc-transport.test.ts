/**
 * The pure parts of the sidecar's gRPC transport: message framing across
 * arbitrary DATA chunk boundaries, and how trailers, HTTP statuses and
 * stream resets become gRPC statuses (as grpc-js reported them).
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { frameMessage, MessageDeframer } from '../../src/discovery/grpc-framing';
import { decodeGrpcMessage, GrpcStatus, grpcStatusName, statusFromHttp, statusFromRstCode, statusFromTrailers } from '../../src/discovery/grpc-status';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BAD_MESSAGE_CODE } from '@trellis/shared';
import { DiscoveryError, DiscoveryErrorCode } from '../../src/discovery/discovery-error';
import { checkMetadata } from '../../src/discovery/grpc-bidi-call';

describe('gRPC framing', () => {
  it('prefixes a message with a zero compressed flag and its big-endian length', () => {
    expect(frameMessage(Buffer.from('abc'))).to.deep.equal(Buffer.from([0, 0, 0, 0, 3, 0x61, 0x62, 0x63]));
    expect(frameMessage(Buffer.alloc(0))).to.deep.equal(Buffer.from([0, 0, 0, 0, 0]));
  });

  it('reassembles any sequence of messages however the stream is split into chunks', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }), (messages, cuts) => {
        const wire = Buffer.concat(messages.map((m) => frameMessage(m)));
        const d = new MessageDeframer(1024);
        const out: Buffer[] = [];
        let at = 0;
        let i = 0;
        while (at < wire.length) {
          const n = cuts[i++ % cuts.length]!;
          out.push(...d.push(wire.subarray(at, at + n)));
          at += n;
        }
        expect(out.map((b) => [...b])).to.deep.equal(messages.map((m) => [...m]));
        expect(d.partial()).to.equal(false);
      }),
      { numRuns: 300 },
    );
  });

  it('reports a message cut off by the end of the stream as partial', () => {
    const d = new MessageDeframer(1024);
    expect(d.push(frameMessage(Buffer.from('hello')).subarray(0, 7))).to.deep.equal([]);
    expect(d.partial()).to.equal(true);
  });

  function frameError(chunk: Buffer, max = 1024): DiscoveryError {
    try {
      new MessageDeframer(max).push(chunk);
    } catch (err) {
      expect(err).to.be.instanceOf(DiscoveryError);
      expect((err as DiscoveryError).code).to.equal('TRELLIS_DISCOVERY_BAD_FRAME');
      return err as DiscoveryError;
    }
    throw new Error('expected TRELLIS_DISCOVERY_BAD_FRAME');
  }

  it('refuses a message over the limit from its header alone, as RESOURCE_EXHAUSTED', () => {
    const e = frameError(Buffer.from([0, 0, 0x10, 0, 1]), 1024 * 1024);
    expect(e.details['grpcCode']).to.equal(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(e.message).to.include('1048577 vs. 1048576');
  });

  it('refuses a compressed message (none was negotiated) and an invalid flag, as INTERNAL', () => {
    expect(frameError(Buffer.from([1, 0, 0, 0, 0])).details['grpcCode']).to.equal(GrpcStatus.INTERNAL);
    expect(frameError(Buffer.from([2, 0, 0, 0, 0])).message).to.include('invalid frame flag 2');
  });
});

describe('gRPC status mapping', () => {
  it('reads grpc-status, percent-decodes grpc-message and keeps the rest as metadata', () => {
    expect(statusFromTrailers({ ':status': '200', 'grpc-status': '8', 'grpc-message': 'queue%20full%3A 100%25', 'trellis-error-code': 'TRELLIS_CP_OVERLOADED', 'trellis-retry-after-ms': '250' })).to.deep.equal({
      code: GrpcStatus.RESOURCE_EXHAUSTED,
      details: 'queue full: 100%',
      metadata: { 'trellis-error-code': 'TRELLIS_CP_OVERLOADED', 'trellis-retry-after-ms': '250' },
    });
  });

  it('treats missing or garbled grpc-status as UNKNOWN, and keeps an invalid percent escape as sent', () => {
    expect(statusFromTrailers({}).code).to.equal(GrpcStatus.UNKNOWN);
    expect(statusFromTrailers({ 'grpc-status': 'x1' }).code).to.equal(GrpcStatus.UNKNOWN);
    expect(decodeGrpcMessage('100%')).to.equal('100%');
  });

  const http: Array<[number, number]> = [
    [400, GrpcStatus.INTERNAL],
    [401, GrpcStatus.UNAUTHENTICATED],
    [403, GrpcStatus.PERMISSION_DENIED],
    [404, GrpcStatus.UNIMPLEMENTED],
    [429, GrpcStatus.UNAVAILABLE],
    [502, GrpcStatus.UNAVAILABLE],
    [503, GrpcStatus.UNAVAILABLE],
    [504, GrpcStatus.UNAVAILABLE],
    [500, GrpcStatus.UNKNOWN],
  ];
  for (const [h, g] of http) {
    it(`maps HTTP ${h} without grpc-status to ${grpcStatusName(g)}`, () => expect(statusFromHttp(h)).to.equal(g));
  }

  it('maps stream resets as grpc-js does: REFUSED_STREAM unavailable, CANCEL cancelled, ENHANCE_YOUR_CALM exhausted, others internal', () => {
    expect([7, 8, 11, 12, 2, 0].map((c) => statusFromRstCode(c).code)).to.deep.equal([
      GrpcStatus.UNAVAILABLE,
      GrpcStatus.CANCELLED,
      GrpcStatus.RESOURCE_EXHAUSTED,
      GrpcStatus.PERMISSION_DENIED,
      GrpcStatus.INTERNAL,
      GrpcStatus.INTERNAL,
    ]);
  });
});

describe('discovery error codes', () => {
  it('documents every discovery client and protobuf codec code in docs/errors.md', () => {
    const doc = readFileSync(join(__dirname, '..', '..', '..', '..', 'docs', 'errors.md'), 'utf8');
    const missing = [...Object.values(DiscoveryErrorCode), BAD_MESSAGE_CODE].filter((c) => !doc.includes('`' + c + '`'));
    expect(missing).to.deep.equal([]);
  });
});

describe('call metadata checks', () => {
  it('refuses metadata that would override the transport headers or that HTTP/2 forbids, naming the key only', () => {
    for (const key of ['content-type', 'te', 'user-agent', 'host', 'connection', 'transfer-encoding', 'upgrade', 'grpc-timeout', 'token-bin', 'Authorization']) {
      let err: unknown;
      try {
        checkMetadata({ [key]: 'v4lue' });
      } catch (e) {
        err = e;
      }
      expect(err, key).to.be.instanceOf(DiscoveryError);
      expect((err as DiscoveryError).code).to.equal(DiscoveryErrorCode.BAD_METADATA);
      expect((err as Error).message).not.to.contain('v4lue');
    }
    expect(() => checkMetadata({ authorization: 'Bearer abc', 'x-trellis-node': 'n1' })).not.to.throw();
  });
});
