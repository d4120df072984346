/**
 * The protocols an inbound port declares for its app: the suffix of the
 * sidecar's `--inbound [HOST:]PORT=APP_PORT[/PROTOCOL]`, the `protocol` of a
 * `trellis up` mesh file's inbound port, and what injection derives from a
 * port's name. One list, read by each of them. Every suffix makes an HTTP
 * port; they differ in how the sidecar speaks to the app (the sidecar's
 * inbound-protocol.ts says how). No suffix is a TCP port.
 */

/** The suffixes an inbound spec takes, in the order messages and docs list them. */
export const INBOUND_PROTOCOLS = Object.freeze(['http', 'h2c', 'grpc', 'http1'] as const);

/** An inbound spec's suffix. */
export type InboundProtocol = (typeof INBOUND_PROTOCOLS)[number];

/** The allowed suffixes as a message lists them: `http, h2c, grpc or http1`. */
export const INBOUND_PROTOCOL_LIST = `${INBOUND_PROTOCOLS.slice(0, -1).join(', ')} or ${INBOUND_PROTOCOLS.at(-1)!}`;

/** True when `s` is one of INBOUND_PROTOCOLS (case-sensitive, as every suffix is written). */
export function isInboundProtocol(s: string): s is InboundProtocol {
  return (INBOUND_PROTOCOLS as readonly string[]).includes(s);
}
