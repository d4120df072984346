/**
 * Hand-written protobuf codec for the five messages of
 * `trellis.discovery.v1` (shared/proto/trellis/discovery/v1/discovery.proto):
 * Node, ErrorDetail, DiscoveryRequest (with its optional sidecar report),
 * Resource, DiscoveryResponse.
 *
 * Decoded values have exactly the shape @grpc/proto-loader gives with the
 * control plane's options (`keepCase`, `defaults: true`): snake_case fields,
 * absent scalars as their zero value, absent sub-messages as null, absent
 * bytes as an empty Buffer. Decoding follows the protobuf rules a peer may
 * rely on: unknown fields are skipped by wire type, a known field with an
 * unexpected wire type is treated as unknown, repeated uint32 is accepted
 * packed or unpacked, a sub-message seen twice is merged, the last map entry
 * for a key wins. Encoding writes proto3's canonical form (zero values
 * omitted, repeated scalars packed). Malformed input throws ProtocolError
 * `TRELLIS_PROTOCOL_BAD_MESSAGE`. Pure: no I/O.
 */
import { BAD_MESSAGE_CODE, ProtoReader, ProtoWriter, WireType } from './protobuf-wire';
import { ProtocolError } from './resources';

/** What a sidecar says about itself. */
export interface NodeMessage {
  spiffe_id: string;
  namespace: string;
  labels: Record<string, string>;
  service: string;
  inbound_ports: number[];
  address: string;
}

/** Why a response was rejected. */
export interface ErrorDetailMessage {
  code: number;
  message: string;
}

/** A request on the discovery stream (subscription, ACK, NACK or CSR). */
export interface DiscoveryRequestMessage {
  node: NodeMessage | null;
  type_url: string;
  version_info: string;
  response_nonce: string;
  resource_names: string[];
  error_detail: ErrorDetailMessage | null;
  csr: Buffer;
  /** A sidecar report (JSON, see sidecar-report.ts); empty on every other request. */
  report: Buffer;
}

/** One named resource of a response. */
export interface ResourceMessage {
  name: string;
  body: Buffer;
}

/** A response on the discovery stream. */
export interface DiscoveryResponseMessage {
  type_url: string;
  version_info: string;
  nonce: string;
  resources: ResourceMessage[];
}

/** A request to encode: any field may be left out (= its zero value). */
export type DiscoveryRequestInit = {
  [K in keyof DiscoveryRequestMessage]?: K extends 'node' ? Partial<NodeMessage> | null : K extends 'error_detail' ? Partial<ErrorDetailMessage> | null : DiscoveryRequestMessage[K];
};

/** A response to encode: any field may be left out (= its zero value). */
export type DiscoveryResponseInit = Partial<Omit<DiscoveryResponseMessage, 'resources'>> & { resources?: ReadonlyArray<Partial<ResourceMessage>> };

// ---- encoding --------------------------------------------------------------

/** Encodes a Node. */
export function encodeNode(n: Partial<NodeMessage>): Buffer {
  const w = new ProtoWriter();
  if (n.spiffe_id) w.string(1, n.spiffe_id);
  if (n.namespace) w.string(2, n.namespace);
  for (const [k, v] of Object.entries(n.labels ?? {})) {
    w.bytes(3, new ProtoWriter().string(1, k).string(2, v).finish());
  }
  if (n.service) w.string(4, n.service);
  const ports = n.inbound_ports ?? [];
  ports.forEach((p, i) => checkUint32(p, `Node.inbound_ports[${i}]`));
  if (ports.length > 0) w.packedVarints(5, ports);
  if (n.address) w.string(6, n.address);
  return w.finish();
}

/** Encodes an ErrorDetail. */
export function encodeErrorDetail(e: Partial<ErrorDetailMessage>): Buffer {
  const w = new ProtoWriter();
  const code = e.code ?? 0;
  if (!Number.isInteger(code) || code < -0x80000000 || code > 0x7fffffff) throw encodeError('ErrorDetail.code', `not an int32: ${code}`);
  if (code !== 0) w.varint(1, code);
  if (e.message) w.string(2, e.message);
  return w.finish();
}

/** Encodes a DiscoveryRequest. */
export function encodeDiscoveryRequest(r: DiscoveryRequestInit): Buffer {
  const w = new ProtoWriter();
  if (r.node) w.bytes(1, encodeNode(r.node));
  if (r.type_url) w.string(2, r.type_url);
  if (r.version_info) w.string(3, r.version_info);
  if (r.response_nonce) w.string(4, r.response_nonce);
  for (const name of r.resource_names ?? []) w.string(5, name);
  if (r.error_detail) w.bytes(6, encodeErrorDetail(r.error_detail));
  if (r.csr && r.csr.length > 0) w.bytes(7, r.csr);
  if (r.report && r.report.length > 0) w.bytes(8, r.report);
  return w.finish();
}

/** Encodes a Resource. */
export function encodeResourceMessage(r: Partial<ResourceMessage>): Buffer {
  const w = new ProtoWriter();
  if (r.name) w.string(1, r.name);
  if (r.body && r.body.length > 0) w.bytes(2, r.body);
  return w.finish();
}

/** Encodes a DiscoveryResponse. */
export function encodeDiscoveryResponse(r: DiscoveryResponseInit): Buffer {
  const w = new ProtoWriter();
  if (r.type_url) w.string(1, r.type_url);
  if (r.version_info) w.string(2, r.version_info);
  if (r.nonce) w.string(3, r.nonce);
  for (const res of r.resources ?? []) w.bytes(4, encodeResourceMessage(res));
  return w.finish();
}

// ---- decoding --------------------------------------------------------------

/** Decodes a Node. */
export function decodeNode(buf: Uint8Array): NodeMessage {
  return readNode(new ProtoReader(buf, 'Node'), emptyNode());
}

/** Decodes an ErrorDetail. */
export function decodeErrorDetail(buf: Uint8Array): ErrorDetailMessage {
  return readErrorDetail(new ProtoReader(buf, 'ErrorDetail'), { code: 0, message: '' });
}

/** Decodes a DiscoveryRequest. */
export function decodeDiscoveryRequest(buf: Uint8Array): DiscoveryRequestMessage {
  const r = new ProtoReader(buf, 'DiscoveryRequest');
  const out: DiscoveryRequestMessage = { node: null, type_url: '', version_info: '', response_nonce: '', resource_names: [], error_detail: null, csr: Buffer.alloc(0), report: Buffer.alloc(0) };
  while (r.more()) {
    const { field, wireType } = r.key();
    if (wireType !== WireType.LEN || field > 8) {
      r.skip(wireType, field);
      continue;
    }
    switch (field) {
      case 1:
        out.node = readNode(r.sub('node', 'DiscoveryRequest.node'), out.node ?? emptyNode());
        break;
      case 2:
        out.type_url = r.string('type_url');
        break;
      case 3:
        out.version_info = r.string('version_info');
        break;
      case 4:
        out.response_nonce = r.string('response_nonce');
        break;
      case 5:
        out.resource_names.push(r.string(`resource_names[${out.resource_names.length}]`));
        break;
      case 6:
        out.error_detail = readErrorDetail(r.sub('error_detail', 'DiscoveryRequest.error_detail'), out.error_detail ?? { code: 0, message: '' });
        break;
      case 7:
        out.csr = r.bytes('csr');
        break;
      case 8:
        out.report = r.bytes('report');
        break;
    }
  }
  return out;
}

/** Decodes a Resource. */
export function decodeResourceMessage(buf: Uint8Array): ResourceMessage {
  return readResource(new ProtoReader(buf, 'Resource'));
}

/** Decodes a DiscoveryResponse. */
export function decodeDiscoveryResponse(buf: Uint8Array): DiscoveryResponseMessage {
  const r = new ProtoReader(buf, 'DiscoveryResponse');
  const out: DiscoveryResponseMessage = { type_url: '', version_info: '', nonce: '', resources: [] };
  while (r.more()) {
    const { field, wireType } = r.key();
    if (wireType !== WireType.LEN || field > 4) {
      r.skip(wireType, field);
      continue;
    }
    switch (field) {
      case 1:
        out.type_url = r.string('type_url');
        break;
      case 2:
        out.version_info = r.string('version_info');
        break;
      case 3:
        out.nonce = r.string('nonce');
        break;
      case 4: {
        const i = out.resources.length;
        out.resources.push(readResource(r.sub(`resources[${i}]`, `DiscoveryResponse.resources[${i}]`)));
        break;
      }
    }
  }
  return out;
}

function emptyNode(): NodeMessage {
  return { spiffe_id: '', namespace: '', labels: {}, service: '', inbound_ports: [], address: '' };
}

function readNode(r: ProtoReader, out: NodeMessage): NodeMessage {
  while (r.more()) {
    const { field, wireType } = r.key();
    if (field === 5 && wireType === WireType.VARINT) {
      out.inbound_ports.push(r.uint32(`inbound_ports[${out.inbound_ports.length}]`));
      continue;
    }
    if (wireType !== WireType.LEN || field > 6) {
      r.skip(wireType, field);
      continue;
    }
    switch (field) {
      case 1:
        out.spiffe_id = r.string('spiffe_id');
        break;
      case 2:
        out.namespace = r.string('namespace');
        break;
      case 3: {
        const entry = r.sub('labels', `${r.path}.labels`);
        let key = '';
        let value = '';
        while (entry.more()) {
          const k = entry.key();
          if (k.field === 1 && k.wireType === WireType.LEN) key = entry.string('key');
          else if (k.field === 2 && k.wireType === WireType.LEN) value = entry.string('value');
          else entry.skip(k.wireType, k.field);
        }
        // A plain object keyed by untrusted input: never let a label named __proto__ reach the prototype.
        Object.defineProperty(out.labels, key, { value, enumerable: true, writable: true, configurable: true });
        break;
      }
      case 4:
        out.service = r.string('service');
        break;
      case 5: {
        const packed = r.sub('inbound_ports', `${r.path}.inbound_ports`);
        while (packed.more()) out.inbound_ports.push(packed.uint32(`[${out.inbound_ports.length}]`));
        break;
      }
      case 6:
        out.address = r.string('address');
        break;
    }
  }
  return out;
}

function readErrorDetail(r: ProtoReader, out: ErrorDetailMessage): ErrorDetailMessage {
  while (r.more()) {
    const { field, wireType } = r.key();
    if (field === 1 && wireType === WireType.VARINT) out.code = r.int32('code');
    else if (field === 2 && wireType === WireType.LEN) out.message = r.string('message');
    else r.skip(wireType, field);
  }
  return out;
}

function readResource(r: ProtoReader): ResourceMessage {
  const out: ResourceMessage = { name: '', body: Buffer.alloc(0) };
  while (r.more()) {
    const { field, wireType } = r.key();
    if (field === 1 && wireType === WireType.LEN) out.name = r.string('name');
    else if (field === 2 && wireType === WireType.LEN) out.body = r.bytes('body');
    else r.skip(wireType, field);
  }
  return out;
}

function checkUint32(v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw encodeError(field, `not a uint32: ${v}`);
}

function encodeError(field: string, reason: string): ProtocolError {
  return new ProtocolError(BAD_MESSAGE_CODE, `${field}: ${reason}`, { field });
}
