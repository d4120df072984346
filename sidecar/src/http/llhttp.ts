/**
 * llhttp, the HTTP/1.1 parser the node binary carries and node:http runs on,
 * reached through `_http_common` as node:http reaches it. Only the subset
 * the sidecar uses is typed here: the inbound's request side
 * (h1-connection.ts) and the app-side response reader
 * (h1-response-reader.ts) both parse strictly, with no lenient flags.
 */

/** One llhttp parser as `_http_common` exposes it. */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Parses `data`: the bytes consumed, or an Error carrying llhttp's `code` (and `bytesParsed`). */
  execute(data: Buffer): number | Error;
  finish(): undefined | Error;
  remove(): void;
  free(): void;
  [callback: number]: unknown;
}

export interface LlhttpParserClass {
  new (): LlhttpParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
  readonly kLenientNone: number;
}

const common = process.getBuiltinModule('_http_common') as unknown as { HTTPParser: LlhttpParserClass; methods: readonly string[] };

export const HTTPParser: LlhttpParserClass = common.HTTPParser;

/** Method names by llhttp's method number (what a request's headers-complete callback is given). */
export const HTTP_METHODS: readonly string[] = common.methods;

/**
 * What a headers-complete callback returns: go on reading the body (0);
 * the message has no body whatever its headers say (1); stop right after
 * this head, which counts as a whole message, and leave the bytes after it
 * unread (2: what llhttp does for an upgrade; `execute` then returns how
 * many bytes it consumed).
 */
export const HEAD_READ_BODY = 0;
export const HEAD_NO_BODY = 1;
export const HEAD_STOP = 2;
