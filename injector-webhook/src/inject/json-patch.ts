/**
 * RFC 6902 JSON Patch operations and RFC 6901 pointer escaping.
 *
 * Annotation keys contain `/` (`sidecar.trellis.dev/status`), which must be
 * written `~1` in a path or the patch addresses the wrong member.
 */

/** One RFC 6902 operation (the subset the injector emits). */
export type JsonPatchOp =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** Escapes one reference token: `~` → `~0`, then `/` → `~1` (that order, per RFC 6901). */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Joins reference tokens into a JSON pointer, escaping each. */
export function pointer(...tokens: Array<string | number>): string {
  return tokens.map((t) => '/' + escapePointerToken(String(t))).join('');
}

/** The patch as the base64 text AdmissionResponse.patch carries. */
export function encodePatch(ops: readonly JsonPatchOp[]): string {
  return Buffer.from(JSON.stringify(ops), 'utf8').toString('base64');
}

/** Decodes AdmissionResponse.patch back into operations. */
export function decodePatch(base64: string): JsonPatchOp[] {
  return JSON.parse(Buffer.from(base64, 'base64').toString('utf8')) as JsonPatchOp[];
}
