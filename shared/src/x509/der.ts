/**
 * The DER toolkit: a strict zero-copy reader, a composable writer and their
 * error family. Used on hot paths (SVID issuance, peer certificate checks), so
 * both sides work on Buffers and offsets rather than ASN.1 object trees.
 */
export { DerError, DerErrorCode } from './der-error';
export type { DerErrorCodeValue } from './der-error';
export {
  DerTag,
  CONSTRUCTED,
  CONTEXT,
  readTlv,
  expectTlv,
  readWhole,
  readChildren,
  forEachChild,
  contents,
  encoded,
  decodeInteger,
  decodeSmallInteger,
  decodeUnsignedIntegerBytes,
  decodeOid,
  decodeBitString,
  decodeBoolean,
  decodeNull,
  decodeTime,
  decodeString,
} from './der-reader';
export type { Tlv, BitString } from './der-reader';
export {
  encodeLength,
  headerLength,
  tlv,
  sequence,
  set,
  integer,
  oid,
  bitString,
  namedBits,
  octetString,
  utf8String,
  printableString,
  ia5String,
  asciiBytes,
  boolean,
  nullValue,
  time,
  contextExplicit,
  contextImplicit,
} from './der-writer';
