/**
 * The discovery messages as @grpc/proto-loader decodes them (snake_case
 * fields, `longs: String`, `defaults: true`), so the session code is typed
 * without generated stubs.
 */

/** Node as it arrives. */
export interface WireNode {
  spiffe_id: string;
  namespace: string;
  labels: Record<string, string>;
  service: string;
  inbound_ports: number[];
  address: string;
}

/** DiscoveryRequest as it arrives. */
export interface WireRequest {
  node: WireNode | null;
  type_url: string;
  version_info: string;
  response_nonce: string;
  resource_names: string[];
  error_detail: { code: number; message: string } | null;
  csr: Buffer;
}

/** DiscoveryResponse as we send it. */
export interface WireResponse {
  type_url: string;
  version_info: string;
  nonce: string;
  resources: Array<{ name: string; body: Buffer }>;
}

/** Options for proto-loader shared by server and client so both decode alike. */
export const PROTO_LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
