/**
 * The discovery messages as @grpc/proto-loader decodes them (snake_case
 * fields, `longs: String`, `defaults: true`), so the session code is typed
 * without generated stubs.
 */

import type { DiscoveryRequestMessage, DiscoveryResponseMessage, NodeMessage } from '@trellis/shared';

/** Node as it arrives (the shape shared/src/protocol/discovery-messages.ts decodes to as well). */
export type WireNode = NodeMessage;

/** DiscoveryRequest as it arrives. */
export type WireRequest = DiscoveryRequestMessage;

/** DiscoveryResponse as we send it. */
export type WireResponse = DiscoveryResponseMessage;

/** Options for proto-loader shared by server and client so both decode alike. */
export const PROTO_LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
