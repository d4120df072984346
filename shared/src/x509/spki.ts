/**
 * SubjectPublicKeyInfo read from DER: the key's algorithm and its Trellis key
 * type name, for certificates and CSRs alike. Pure; throws DerError or Error
 * (the caller names the structure) on malformed input.
 */
import { DerTag, decodeBitString, decodeOid, decodeUnsignedIntegerBytes, expectTlv, readChildren, readWhole, type Tlv } from './der';
import { Oid } from './oids';

/** `ec-p256`, `ec-p384`, `ec-p521`, `rsa-<modulus bits>`, `ed25519`, or `other`. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'ec-p521' | `rsa-${number}` | 'ed25519' | 'other';

/** The algorithm OID and key type of the SubjectPublicKeyInfo at `spki` in `buf`. */
export function spkiKeyType(buf: Buffer, spki: Tlv): { algorithm: string; keyType: KeyType } {
  const [algId, key] = readChildren(buf, spki);
  if (!algId || !key || algId.tag !== DerTag.SEQUENCE || key.tag !== DerTag.BIT_STRING) throw new Error('subjectPublicKeyInfo is not {AlgorithmIdentifier, BIT STRING}');
  const algParts = readChildren(buf, algId);
  const algorithm = decodeOid(buf, expectTlv(buf, algParts[0]?.offset ?? algId.end, DerTag.OID, 'spki algorithm', algId.end));
  if (algorithm === Oid.ecPublicKey) {
    const params = algParts[1];
    const curve = params && params.tag === DerTag.OID ? decodeOid(buf, params) : '';
    const keyType: KeyType = curve === Oid.prime256v1 ? 'ec-p256' : curve === Oid.secp384r1 ? 'ec-p384' : curve === Oid.secp521r1 ? 'ec-p521' : 'other';
    return { algorithm, keyType };
  }
  if (algorithm === Oid.rsaEncryption) {
    const bits = decodeBitString(buf, key).bytes;
    const rsaKey = readWhole(bits, DerTag.SEQUENCE, 'RSAPublicKey');
    const modulus = expectTlv(bits, rsaKey.start, DerTag.INTEGER, 'RSA modulus', rsaKey.end);
    const mag = decodeUnsignedIntegerBytes(bits, modulus);
    const top = mag[0] ?? 0;
    const size = mag.length === 0 ? 0 : (mag.length - 1) * 8 + (32 - Math.clz32(top));
    return { algorithm, keyType: `rsa-${size}` };
  }
  if (algorithm === Oid.ed25519) return { algorithm, keyType: 'ed25519' };
  return { algorithm, keyType: 'other' };
}
