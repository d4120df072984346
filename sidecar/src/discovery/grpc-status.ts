/**
 * gRPC status codes and how an HTTP/2 response maps onto them, following
 * the gRPC over HTTP/2 spec (PROTOCOL-HTTP2.md, http-grpc-status-mapping.md)
 * and what @grpc/grpc-js reports for the same events, so the discovery
 * client sees the codes it saw before. Pure.
 */

/** The gRPC status codes. */
export const GrpcStatus = Object.freeze({
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
});

const NAMES: readonly string[] = Object.keys(GrpcStatus);

/** The name of a status code (`UNAVAILABLE`), or the number as text when unknown. */
export function grpcStatusName(code: number): string {
  return NAMES[code] ?? String(code);
}

/** How a call ended: its status, message and trailing metadata (lower-case keys). */
export interface CallStatus {
  code: number;
  details: string;
  metadata: Readonly<Record<string, string>>;
}

/** The status for a response that carries no grpc-status, from its HTTP status. */
export function statusFromHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** HTTP/2 error codes of RST_STREAM (RFC 9113 §7) that gRPC maps specially. */
const RST = Object.freeze({ NO_ERROR: 0, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11, INADEQUATE_SECURITY: 12 });

/** The status for a stream reset before any trailers arrived. */
export function statusFromRstCode(rstCode: number): { code: number; details: string } {
  switch (rstCode) {
    case RST.REFUSED_STREAM:
      return { code: GrpcStatus.UNAVAILABLE, details: 'stream refused by the server' };
    case RST.CANCEL:
      return { code: GrpcStatus.CANCELLED, details: 'stream cancelled by the server' };
    case RST.ENHANCE_YOUR_CALM:
      return { code: GrpcStatus.RESOURCE_EXHAUSTED, details: 'server reset the stream: ENHANCE_YOUR_CALM' };
    case RST.INADEQUATE_SECURITY:
      return { code: GrpcStatus.PERMISSION_DENIED, details: 'server reset the stream: INADEQUATE_SECURITY' };
    default:
      return { code: GrpcStatus.INTERNAL, details: `server reset the stream with code ${rstCode}` };
  }
}

/**
 * The status carried by a trailers block (or the headers of a trailers-only
 * response). A missing or unparsable grpc-status is UNKNOWN, as the spec
 * says; grpc-message is percent-decoded.
 */
export function statusFromTrailers(headers: Readonly<Record<string, string | string[] | undefined>>): CallStatus {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(':') || k === 'grpc-status' || k === 'grpc-message' || v === undefined) continue;
    metadata[k] = Array.isArray(v) ? v.join(',') : v;
  }
  const raw = first(headers['grpc-status']);
  const code = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : GrpcStatus.UNKNOWN;
  const details = decodeGrpcMessage(first(headers['grpc-message']) ?? (raw === undefined ? 'no grpc-status in trailers' : ''));
  return { code, details, metadata };
}

/** Percent-decodes a grpc-message; invalid escapes are kept as sent. */
export function decodeGrpcMessage(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
