/**
 * X.501 Names as text (RFC 4514), for logs and messages; decisions compare
 * the DER, never this text.
 */
import { decodeOid, decodeString, readChildren, type Tlv } from './der';
import { NAME_ATTRIBUTE_SHORT } from './oids';

/** Renders a Name per RFC 4514: last RDN first, multi-valued RDNs joined with `+`. */
export function nameText(buf: Buffer, name: Tlv): string {
  const rdns: string[] = [];
  for (const rdn of readChildren(buf, name)) {
    const parts: string[] = [];
    for (const atv of readChildren(buf, rdn)) {
      const [t, v] = readChildren(buf, atv);
      const type = decodeOid(buf, t!);
      let value: string;
      try {
        value = decodeString(buf, v!);
      } catch {
        value = '#' + buf.subarray(v!.offset, v!.end).toString('hex');
      }
      parts.push(`${NAME_ATTRIBUTE_SHORT[type] ?? type}=${value.replace(/([,+"\\<>;])/g, '\\$1')}`);
    }
    rdns.push(parts.join('+'));
  }
  return rdns.reverse().join(',');
}
