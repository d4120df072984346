/**
 * PKCS#11 token operations the signer needs: find the slot, log in, find or
 * generate the key pair, read the public key and the key's protection
 * attributes. Thin adapters over `pkcs11js` that turn return values into
 * {@link HsmError}s naming the token and key; no signing policy lives here.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { endianness } from 'node:os';
import { der } from '@trellis/shared';
import { describeKey, generationParams, type CaKeyType, type SignatureAlgorithm } from '../ca/key-types';
import { ecPointFromAttribute } from './ecdsa-signature';
import { HsmError, HsmErrorCode } from './hsm-error';
import { pkcs11ErrorName, type Pkcs11Api, type Pkcs11Binding, type Pkcs11ModuleRef } from './pkcs11-module';

/** Which slot to use: by token label or by slot ID. */
export interface SlotSelector {
  tokenLabel?: string;
  slot?: number;
}

/** Which key pair to use: CKA_LABEL and optionally CKA_ID (hex). */
export interface KeySelector {
  keyLabel: string;
  keyId?: string;
}

/** Handles of a key pair on the token. */
export interface TokenKeyPair {
  privateKey: Buffer;
  publicKey: Buffer;
}

/** The public half of a token key, as node:crypto and X.509 need it. */
export interface TokenPublicKey {
  publicKey: KeyObject;
  spkiDer: Buffer;
  keyType: string;
  algorithm: SignatureAlgorithm;
  /** For EC keys, the coordinate size in bytes (the raw signature is twice that). */
  ecSize?: number;
}

/** How the token says the private key is protected. */
export interface KeyProtection {
  sensitive: boolean;
  extractable: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  /** Generated on the token (CKA_LOCAL). */
  local: boolean;
}

const CURVES: Record<string, { oid: string; crv: 'P-256' | 'P-384'; size: number }> = {
  'P-256': { oid: '1.2.840.10045.3.1.7', crv: 'P-256', size: 32 },
  'P-384': { oid: '1.3.132.0.34', crv: 'P-384', size: 48 },
};

/** A slot handle's numeric ID (handles are native-endian CK_ULONGs). */
export function slotId(handle: Buffer): number {
  const v = handle.length >= 8
    ? endianness() === 'LE' ? handle.readBigUInt64LE(0) : handle.readBigUInt64BE(0)
    : BigInt(endianness() === 'LE' ? handle.readUInt32LE(0) : handle.readUInt32BE(0));
  return Number(v);
}

/** Finds the slot holding the configured token. TOKEN_NOT_FOUND lists the labels it saw. */
export function findSlot(binding: Pkcs11Binding, api: Pkcs11Api, sel: SlotSelector, module: string): Buffer {
  const slots = api.C_GetSlotList(true);
  const seen: string[] = [];
  for (const s of slots) {
    const info = api.C_GetTokenInfo(s);
    if ((info.flags & binding.CKF_TOKEN_INITIALIZED) === 0) continue;
    const label = info.label.trim();
    seen.push(label);
    if (sel.tokenLabel !== undefined && label === sel.tokenLabel) return s;
    if (sel.slot !== undefined && slotId(s) === sel.slot) return s;
  }
  const want = sel.tokenLabel !== undefined ? `token labelled "${sel.tokenLabel}"` : `slot ${sel.slot}`;
  throw new HsmError(HsmErrorCode.TOKEN_NOT_FOUND, `PKCS#11 module ${module} has no initialised ${want} (tokens: ${seen.map((l) => `"${l}"`).join(', ') || 'none'})`, { module, tokens: seen });
}

/**
 * Opens a read/write session on `slot` and logs the user in with `pin`.
 * LOGIN_FAILED names the PKCS#11 reason (e.g. CKR_PIN_INCORRECT), never the
 * PIN. When the token is already logged in (through another session of this
 * process) the PIN is accepted only if it is the one that login checked:
 * fails closed rather than let a wrong PIN ride on someone else's login.
 */
export function openUserSession(mod: Pick<Pkcs11ModuleRef, 'binding' | 'api' | 'verifiedPins'>, slot: Buffer, pin: string, what: string): Buffer {
  const { binding, api } = mod;
  const session = api.C_OpenSession(slot, binding.CKF_SERIAL_SESSION | binding.CKF_RW_SESSION);
  const pinHash = createHash('sha256').update(pin).digest();
  const id = slotId(slot);
  const fail = (reason: string, err?: unknown): HsmError => {
    try {
      api.C_CloseSession(session);
    } catch {
      // Closing a session after a failed login is best effort.
    }
    return new HsmError(HsmErrorCode.LOGIN_FAILED, `${what}: login refused (${reason})`, { reason }, { cause: err });
  };
  try {
    api.C_Login(session, binding.CKU_USER, pin);
  } catch (err) {
    if (err instanceof binding.Pkcs11Error && err.code === binding.CKR_USER_ALREADY_LOGGED_IN) {
      const known = mod.verifiedPins.get(id);
      if (known && known.equals(pinHash)) return session;
      throw fail('token already logged in with a PIN this signer cannot match');
    }
    throw fail(pkcs11ErrorName(binding, err) ?? (err as Error).message, err);
  }
  mod.verifiedPins.set(id, pinHash);
  return session;
}

function findObjects(api: Pkcs11Api, session: Buffer, template: Array<{ type: number; value?: unknown }>): Buffer[] {
  api.C_FindObjectsInit(session, template as Parameters<Pkcs11Api['C_FindObjectsInit']>[1]);
  try {
    return api.C_FindObjects(session, 16);
  } finally {
    api.C_FindObjectsFinal(session);
  }
}

function keyTemplate(binding: Pkcs11Binding, cls: number, sel: KeySelector): Array<{ type: number; value?: unknown }> {
  const t: Array<{ type: number; value?: unknown }> = [
    { type: binding.CKA_CLASS, value: cls },
    { type: binding.CKA_LABEL, value: sel.keyLabel },
  ];
  if (sel.keyId !== undefined) t.push({ type: binding.CKA_ID, value: Buffer.from(sel.keyId, 'hex') });
  return t;
}

/** The key pair with the configured label (and id). KEY_NOT_FOUND / KEY_AMBIGUOUS otherwise. */
export function findKeyPair(binding: Pkcs11Binding, api: Pkcs11Api, session: Buffer, sel: KeySelector, what: string): TokenKeyPair {
  const priv = findObjects(api, session, keyTemplate(binding, binding.CKO_PRIVATE_KEY, sel));
  const pub = findObjects(api, session, keyTemplate(binding, binding.CKO_PUBLIC_KEY, sel));
  const name = `key "${sel.keyLabel}"${sel.keyId !== undefined ? ` (id ${sel.keyId})` : ''}`;
  if (priv.length === 0 || pub.length === 0) {
    throw new HsmError(HsmErrorCode.KEY_NOT_FOUND, `${what}: no ${priv.length === 0 ? 'private' : 'public'} ${name} on the token (generate it with "trellis hsm keygen")`, { key: sel.keyLabel });
  }
  if (priv.length > 1 || pub.length > 1) {
    throw new HsmError(HsmErrorCode.KEY_AMBIGUOUS, `${what}: ${Math.max(priv.length, pub.length)} key pairs match ${name}; set keyId to choose one`, { key: sel.keyLabel });
  }
  return { privateKey: priv[0]!, publicKey: pub[0]! };
}

/** True when any private key on the token has this label. */
export function keyLabelExists(binding: Pkcs11Binding, api: Pkcs11Api, session: Buffer, label: string): boolean {
  return findObjects(api, session, [{ type: binding.CKA_CLASS, value: binding.CKO_PRIVATE_KEY }, { type: binding.CKA_LABEL, value: label }]).length > 0;
}

/**
 * Generates a key pair inside the token: both halves CKA_TOKEN (persistent),
 * the private half CKA_PRIVATE, CKA_SENSITIVE and not CKA_EXTRACTABLE, usable
 * only to sign. `id` becomes CKA_ID of both halves.
 */
export function generateTokenKeyPair(binding: Pkcs11Binding, api: Pkcs11Api, session: Buffer, label: string, id: Buffer, keyType: CaKeyType): TokenKeyPair {
  const p = generationParams(keyType);
  const common = [
    { type: binding.CKA_TOKEN, value: true },
    { type: binding.CKA_LABEL, value: label },
    { type: binding.CKA_ID, value: id },
  ];
  const priv = [
    ...common,
    { type: binding.CKA_CLASS, value: binding.CKO_PRIVATE_KEY },
    { type: binding.CKA_PRIVATE, value: true },
    { type: binding.CKA_SENSITIVE, value: true },
    { type: binding.CKA_EXTRACTABLE, value: false },
    { type: binding.CKA_SIGN, value: true },
    { type: binding.CKA_DECRYPT, value: false },
    { type: binding.CKA_UNWRAP, value: false },
    { type: binding.CKA_DERIVE, value: false },
  ];
  let mechanism: number;
  let pub: Array<{ type: number; value?: unknown }>;
  if (p.kind === 'ec') {
    const curve = CURVES[p.namedCurve]!;
    mechanism = binding.CKM_EC_KEY_PAIR_GEN;
    pub = [...common, { type: binding.CKA_CLASS, value: binding.CKO_PUBLIC_KEY }, { type: binding.CKA_KEY_TYPE, value: binding.CKK_EC }, { type: binding.CKA_VERIFY, value: true }, { type: binding.CKA_EC_PARAMS, value: der.oid(curve.oid) }];
    priv.push({ type: binding.CKA_KEY_TYPE, value: binding.CKK_EC });
  } else {
    mechanism = binding.CKM_RSA_PKCS_KEY_PAIR_GEN;
    pub = [...common, { type: binding.CKA_CLASS, value: binding.CKO_PUBLIC_KEY }, { type: binding.CKA_KEY_TYPE, value: binding.CKK_RSA }, { type: binding.CKA_VERIFY, value: true }, { type: binding.CKA_MODULUS_BITS, value: p.modulusLength }, { type: binding.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }];
    priv.push({ type: binding.CKA_KEY_TYPE, value: binding.CKK_RSA });
  }
  const pair = api.C_GenerateKeyPair(session, { mechanism }, pub as never, priv as never);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey };
}

function attr(api: Pkcs11Api, session: Buffer, obj: Buffer, type: number): Buffer {
  const [a] = api.C_GetAttributeValue(session, obj, [{ type }]);
  return a!.value as Buffer;
}

function bool(api: Pkcs11Api, session: Buffer, obj: Buffer, type: number): boolean {
  const v = attr(api, session, obj, type);
  return v.length > 0 && v[0] !== 0;
}

/** Reads how the token protects the private key (CKA_SENSITIVE, CKA_EXTRACTABLE, ...). */
export function readKeyProtection(binding: Pkcs11Binding, api: Pkcs11Api, session: Buffer, privateKey: Buffer): KeyProtection {
  return {
    sensitive: bool(api, session, privateKey, binding.CKA_SENSITIVE),
    extractable: bool(api, session, privateKey, binding.CKA_EXTRACTABLE),
    alwaysSensitive: bool(api, session, privateKey, binding.CKA_ALWAYS_SENSITIVE),
    neverExtractable: bool(api, session, privateKey, binding.CKA_NEVER_EXTRACTABLE),
    local: bool(api, session, privateKey, binding.CKA_LOCAL),
  };
}

/**
 * Reads the public key object back from the token and builds its
 * SubjectPublicKeyInfo. UNSUPPORTED_KEY for anything but EC P-256/P-384 and
 * RSA 2048..4096.
 */
export function readTokenPublicKey(binding: Pkcs11Binding, api: Pkcs11Api, session: Buffer, publicKey: Buffer, what: string): TokenPublicKey {
  const kt = attr(api, session, publicKey, binding.CKA_KEY_TYPE);
  const keyKind = kt.length >= 4 ? (endianness() === 'LE' ? kt.readUInt32LE(0) : kt.readUInt32BE(kt.length - 4)) : -1;
  let key: KeyObject;
  let ecSize: number | undefined;
  if (keyKind === binding.CKK_EC) {
    const params = attr(api, session, publicKey, binding.CKA_EC_PARAMS);
    const curve = Object.values(CURVES).find((c) => params.equals(der.oid(c.oid)));
    if (!curve) throw new HsmError(HsmErrorCode.UNSUPPORTED_KEY, `${what}: EC curve of the token key is not supported (use P-256 or P-384)`, {});
    const point = ecPointFromAttribute(attr(api, session, publicKey, binding.CKA_EC_POINT), curve.size);
    if (!point) throw new HsmError(HsmErrorCode.UNSUPPORTED_KEY, `${what}: CKA_EC_POINT of the token key is not an uncompressed ${curve.crv} point`, {});
    key = createPublicKey({
      key: { kty: 'EC', crv: curve.crv, x: point.subarray(1, 1 + curve.size).toString('base64url'), y: point.subarray(1 + curve.size).toString('base64url') },
      format: 'jwk',
    });
    ecSize = curve.size;
  } else if (keyKind === binding.CKK_RSA) {
    const n = attr(api, session, publicKey, binding.CKA_MODULUS);
    const e = attr(api, session, publicKey, binding.CKA_PUBLIC_EXPONENT);
    key = createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') }, format: 'jwk' });
  } else {
    throw new HsmError(HsmErrorCode.UNSUPPORTED_KEY, `${what}: token key type ${keyKind} is not supported (EC P-256/P-384 or RSA 2048..4096)`, {});
  }
  let described;
  try {
    described = describeKey(key, what);
  } catch (err) {
    throw new HsmError(HsmErrorCode.UNSUPPORTED_KEY, (err as Error).message, {}, { cause: err });
  }
  return { publicKey: key, spkiDer: key.export({ type: 'spki', format: 'der' }), keyType: described.keyType, algorithm: described.algorithm, ...(ecSize !== undefined ? { ecSize } : {}) };
}
