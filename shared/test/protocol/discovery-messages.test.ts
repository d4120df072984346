/**
 * Wire compatibility of the hand-written discovery codec with protobufjs /
 * @grpc/proto-loader (what the control plane speaks): every message encoded
 * by one side decodes on the other to the same value, for generated inputs
 * as well as the edge cases protobuf allows (unpacked repeated uint32,
 * unknown fields of every wire type, negative int32, merged sub-messages).
 */
import { expect } from 'chai';
import fc from 'fast-check';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { join } from 'node:path';
import { DISCOVERY_PROTO_FILE, PROTO_ROOT } from '../../src/protocol/proto-path';
import {
  decodeDiscoveryRequest,
  decodeDiscoveryResponse,
  decodeErrorDetail,
  decodeNode,
  decodeResourceMessage,
  encodeDiscoveryRequest,
  encodeDiscoveryResponse,
  encodeErrorDetail,
  encodeNode,
  encodeResourceMessage,
  type DiscoveryRequestMessage,
  type DiscoveryResponseMessage,
  type NodeMessage,
} from '../../src/protocol/discovery-messages';
import { ProtocolError } from '../../src/protocol/resources';

// The control plane's proto-loader options (control-plane/src/discovery/wire-types.ts).
const OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const def = protoLoader.loadSync(DISCOVERY_PROTO_FILE, { ...OPTIONS, includeDirs: [PROTO_ROOT] });
const method = (def['trellis.discovery.v1.Discovery'] as unknown as Record<string, protoLoader.MethodDefinition<object, object>>)['StreamResources']!;
const root = protobuf.loadSync(join(PROTO_ROOT, DISCOVERY_PROTO_FILE));
const type = (name: string): protobuf.Type => root.lookupType(`trellis.discovery.v1.${name}`);
// protobufjs parses without keepCase here, so its objects are camelCase; map them for comparison.
const pbObject = (name: string, buf: Uint8Array): Record<string, unknown> => type(name).toObject(type(name).decode(buf), { longs: String, enums: String, bytes: Buffer as unknown as StringConstructor, defaults: true });
const pbEncode = (name: string, obj: Record<string, unknown>): Buffer => Buffer.from(type(name).encode(type(name).fromObject(obj)).finish());

const label = fc.string({ maxLength: 12 }).filter((s) => s !== '__proto__');
const text = fc.string({ maxLength: 40, unit: 'grapheme' });
const node = fc.record({
  spiffe_id: text,
  namespace: text,
  labels: fc.dictionary(label, text, { maxKeys: 4 }),
  service: text,
  inbound_ports: fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 5 }),
  address: text,
});
const errorDetail = fc.record({ code: fc.integer({ min: -0x80000000, max: 0x7fffffff }), message: text });
const bytes = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));
const request: fc.Arbitrary<DiscoveryRequestMessage> = fc.record({
  node: fc.option(node, { nil: null }),
  type_url: text,
  version_info: text,
  response_nonce: text,
  resource_names: fc.array(text, { maxLength: 4 }),
  error_detail: fc.option(errorDetail, { nil: null }),
  csr: bytes,
  report: bytes,
});
const response: fc.Arbitrary<DiscoveryResponseMessage> = fc.record({
  type_url: text,
  version_info: text,
  nonce: text,
  resources: fc.array(fc.record({ name: text, body: bytes }), { maxLength: 4 }),
});

function badMessage(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ProtocolError);
    expect((err as ProtocolError).code).to.equal('TRELLIS_PROTOCOL_BAD_MESSAGE');
    return err as ProtocolError;
  }
  throw new Error('expected TRELLIS_PROTOCOL_BAD_MESSAGE');
}

describe('discovery message codec (wire compatibility with proto-loader)', () => {
  it('decodes every DiscoveryRequest proto-loader encodes to the value proto-loader decodes', () => {
    fc.assert(
      fc.property(request, (req) => {
        const wire = method.requestSerialize(req);
        expect(decodeDiscoveryRequest(wire)).to.deep.equal(method.requestDeserialize(wire));
      }),
      { numRuns: 300 },
    );
  });

  it('encodes every DiscoveryRequest so that proto-loader decodes it to the same value', () => {
    fc.assert(
      fc.property(request, (req) => {
        const ours = encodeDiscoveryRequest(req);
        expect(method.requestDeserialize(ours)).to.deep.equal(req);
        expect(decodeDiscoveryRequest(ours)).to.deep.equal(req);
      }),
      { numRuns: 300 },
    );
  });

  it('decodes every DiscoveryResponse proto-loader encodes, and encodes responses proto-loader decodes alike', () => {
    fc.assert(
      fc.property(response, (res) => {
        const theirs = method.responseSerialize(res);
        expect(decodeDiscoveryResponse(theirs)).to.deep.equal(method.responseDeserialize(theirs));
        const ours = encodeDiscoveryResponse(res);
        expect(method.responseDeserialize(ours)).to.deep.equal(res);
        expect(decodeDiscoveryResponse(ours)).to.deep.equal(res);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips Node, ErrorDetail and Resource through protobufjs both ways', () => {
    fc.assert(
      fc.property(node, errorDetail, fc.record({ name: text, body: bytes }), (n, e, r) => {
        const camelNode = { spiffeId: n.spiffe_id, namespace: n.namespace, labels: n.labels, service: n.service, inboundPorts: n.inbound_ports, address: n.address };
        expect(decodeNode(pbEncode('Node', camelNode))).to.deep.equal(n);
        expect(pbObject('Node', encodeNode(n))).to.deep.equal(camelNode);
        expect(decodeErrorDetail(pbEncode('ErrorDetail', e))).to.deep.equal(e);
        expect(pbObject('ErrorDetail', encodeErrorDetail(e))).to.deep.equal(e);
        expect(decodeResourceMessage(pbEncode('Resource', r))).to.deep.equal(r);
        expect(pbObject('Resource', encodeResourceMessage(r))).to.deep.equal(r);
      }),
      { numRuns: 300 },
    );
  });

  it('accepts inbound_ports unpacked (one varint per port), as proto2 encoders send them', () => {
    // field 5, wire type 0, three times; then field 5 packed with one more port.
    const wire = Buffer.from([0x28, 0x90, 0x3f, 0x28, 0x50, 0x28, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x2a, 0x02, 0xbb, 0x03]);
    expect(decodeNode(wire).inbound_ports).to.deep.equal([8080, 80, 0xffffffff, 443]);
    const pb = type('Node').toObject(type('Node').decode(wire)) as { inboundPorts: number[] };
    expect(pb.inboundPorts).to.deep.equal([8080, 80, 0xffffffff, 443]);
  });

  it('decodes a negative ErrorDetail.code sent as a 10-byte varint', () => {
    const wire = pbEncode('ErrorDetail', { code: -3, message: 'x' });
    expect(wire.length).to.equal(14);
    expect(decodeErrorDetail(wire)).to.deep.equal({ code: -3, message: 'x' });
    expect(encodeErrorDetail({ code: -3, message: 'x' }).equals(wire)).to.equal(true);
  });

  it('skips unknown fields of every wire type, including nested groups', () => {
    const known = encodeDiscoveryResponse({ type_url: 't', nonce: 'n', resources: [{ name: 'a', body: Buffer.from('{}') }] });
    const unknown = Buffer.from([
      0x48, 0x96, 0x01, // field 9 varint 150
      0x51, 1, 2, 3, 4, 5, 6, 7, 8, // field 10 fixed64
      0x5a, 0x03, 0x61, 0x62, 0x63, // field 11 length-delimited "abc"
      0x65, 1, 2, 3, 4, // field 12 fixed32
      0x6b, 0x08, 0x01, 0x73, 0x08, 0x02, 0x74, 0x6c, // field 13 group holding a varint and group 14
      0x22, 0x00, // field 4 (resources) with an empty Resource
      0x1a, 0x02, 0x08, 0x01, // field 3 (nonce): the string "\b\x01", later replaced by the known part
    ]);
    const decoded = decodeDiscoveryResponse(Buffer.concat([unknown, known]));
    const theirs = method.responseDeserialize(Buffer.concat([unknown, known]));
    expect(decoded).to.deep.equal(theirs);
    expect(decoded.resources.map((r) => r.name)).to.deep.equal(['', 'a']);
  });

  it('treats a known field with an unexpected wire type as unknown instead of misreading it', () => {
    // type_url (field 1) sent as a varint, then the real type_url.
    const wire = Buffer.concat([Buffer.from([0x08, 0x05]), encodeDiscoveryResponse({ type_url: 'real' })]);
    expect(decodeDiscoveryResponse(wire).type_url).to.equal('real');
  });

  it('merges a sub-message that appears twice, as the protobuf encoding spec requires (protobufjs keeps the last instead)', () => {
    const a = encodeDiscoveryRequest({ node: { spiffe_id: 'spiffe://a/x', labels: { app: 'web' }, inbound_ports: [1] } });
    const b = encodeDiscoveryRequest({ node: { namespace: 'shop', labels: { tier: 'front' }, inbound_ports: [2] } });
    const wire = Buffer.concat([a, b]);
    const ours = decodeDiscoveryRequest(wire);
    expect(ours.node).to.deep.include({ spiffe_id: 'spiffe://a/x', namespace: 'shop', inbound_ports: [1, 2], labels: { app: 'web', tier: 'front' } });
  });

  it('never lets a label named __proto__ reach the labels prototype', () => {
    const n = decodeNode(encodeNode({ labels: { ['__proto__']: 'x', app: 'web' } as Record<string, string> }));
    expect(Object.getPrototypeOf(n.labels)).to.equal(Object.prototype);
    expect(Object.keys(n.labels).sort()).to.deep.equal(['__proto__', 'app']);
  });

  const malformed: Array<[string, number[], string]> = [
    ['a truncated varint', [0x48, 0x96], 'truncated varint'],
    ['a varint longer than 10 bytes', [0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 'varint'],
    ['a length past the end', [0x0a, 0x05, 0x61], 'exceeds'],
    ['a resource whose body overruns it', [0x22, 0x03, 0x12, 0x05, 0x61], 'DiscoveryResponse.resources[0].body'],
    ['field number 0', [0x02, 0x00], 'invalid field number'],
    ['wire type 6', [0x0e], 'invalid wire type'],
    ['wire type 7', [0x0f], 'invalid wire type'],
    ['a stray end-group', [0x0c], 'unexpected wire type 4'],
    ['an unterminated group', [0x6b, 0x08, 0x01], 'unterminated group'],
    ['a group closed by another field', [0x6b, 0x74], 'group ended by field 14'],
    ['a truncated fixed64', [0x51, 1, 2, 3], 'truncated fixed-width'],
    ['invalid UTF-8 in a string', [0x0a, 0x02, 0xc3, 0x28], 'type_url: invalid UTF-8'],
  ];
  for (const [what, bytesIn, reason] of malformed) {
    it(`rejects ${what} with TRELLIS_PROTOCOL_BAD_MESSAGE naming the field`, () => {
      expect(badMessage(() => decodeDiscoveryResponse(Buffer.from(bytesIn))).message).to.include(reason);
    });
  }

  it('rejects groups nested past the depth limit with TRELLIS_PROTOCOL_BAD_MESSAGE, not a stack overflow', () => {
    // 0x2b opens a group of field 5; 200,000 of them would overflow the stack of a naive recursive skip.
    expect(badMessage(() => decodeDiscoveryResponse(Buffer.alloc(200_000, 0x2b))).message).to.include('groups nested deeper than 64');
    // 64 levels, properly closed, are still skipped.
    const ok = Buffer.concat([Buffer.alloc(64, 0x2b), Buffer.alloc(64, 0x2c)]);
    expect(decodeDiscoveryResponse(ok).resources).to.deep.equal([]);
  });

  it('rejects a malformed Node inside a request, naming the path', () => {
    const inner = Buffer.from([0x1a, 0x04, 0x0a, 0x09, 0x61, 0x62]); // labels entry whose key overruns
    const wire = Buffer.concat([Buffer.from([0x0a, inner.length]), inner]);
    expect(badMessage(() => decodeDiscoveryRequest(wire)).message).to.include('DiscoveryRequest.node.labels.key');
  });

  it('never throws anything but TRELLIS_PROTOCOL_BAD_MESSAGE on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (a) => {
        for (const decode of [decodeDiscoveryRequest, decodeDiscoveryResponse, decodeNode]) {
          try {
            decode(a);
          } catch (err) {
            expect((err as ProtocolError).code).to.equal('TRELLIS_PROTOCOL_BAD_MESSAGE');
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses to encode a port or code outside its protobuf type', () => {
    badMessage(() => encodeNode({ inbound_ports: [-1] }));
    badMessage(() => encodeNode({ inbound_ports: [2 ** 32] }));
    badMessage(() => encodeErrorDetail({ code: 2 ** 31 }));
  });

  it('keeps the proto-loader shape for an empty message: zero values, null sub-messages, an empty csr Buffer', () => {
    const empty: NodeMessage = { spiffe_id: '', namespace: '', labels: {}, service: '', inbound_ports: [], address: '' };
    expect(decodeNode(Buffer.alloc(0))).to.deep.equal(empty);
    expect(decodeDiscoveryRequest(Buffer.alloc(0))).to.deep.equal(method.requestDeserialize(Buffer.alloc(0)));
    expect(encodeDiscoveryRequest({}).length).to.equal(0);
  });
});
