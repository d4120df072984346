/**
 * Writer shims kept for code that imported them from here before the CA
 * moved to the shared DER toolkit (`der` from @trellis/shared), which is
 * where new code should go. Thin wrappers: no DER logic lives in this file.
 */
import { der } from '@trellis/shared';

/** A whole TLV: `tag`, length, then the concatenated `parts` (same as `der.tlv`). */
export function tlvOf(tag: number, parts: Buffer[]): Buffer {
  return der.tlv(tag, ...parts);
}

/** A complete OBJECT IDENTIFIER TLV (same as `der.oid`). */
export function oidTlv(dotted: string): Buffer {
  return der.oid(dotted);
}
