/**
 * A CA {@link Signer} whose private key lives in a PKCS#11 token (an HSM,
 * or SoftHSM2 in tests).
 *
 * The key never leaves the token: Trellis only asks it to sign. At open the
 * signer finds the key pair, refuses (fails closed, KEY_EXPORTABLE) a private
 * key the token marks extractable or not sensitive, and reads the public key
 * back to build the SubjectPublicKeyInfo. ECDSA uses `CKM_ECDSA` over a
 * digest computed here, and the raw `r || s` the token returns is re-encoded
 * as the DER X.509 requires; RSA uses `CKM_SHA256_RSA_PKCS`.
 *
 * Signing runs asynchronously (the binding's worker threads) over a small
 * pool of sessions, so a slow network HSM never blocks the event loop and
 * several signatures can be in flight. A session the token has dropped
 * (device removed, session closed, logged out) is discarded and the
 * signature retried once on a fresh session, after looking the key up
 * again. For that re-login the PIN stays in the signer's memory; it is never
 * logged nor put in an error.
 */
import { createHash, type KeyObject } from 'node:crypto';
import type { Signer } from '../ca/signer';
import type { SignatureAlgorithm } from '../ca/key-types';
import { silentLogger, type Logger } from '@trellis/shared';
import { ecdsaRawToDer } from './ecdsa-signature';
import { HsmError, HsmErrorCode } from './hsm-error';
import { acquirePkcs11Module, pkcs11ErrorName, requirePkcs11Binding, type BindingLoader, type Pkcs11ModuleRef } from './pkcs11-module';
import { findKeyPair, findSlot, openUserSession, readKeyProtection, readTokenPublicKey, type KeyProtection } from './pkcs11-token';
import { readPin, type PinDeps, type Pkcs11SignerConfig } from './signer-config';

/** A {@link Signer} backed by a PKCS#11 token; `close()` releases its sessions. */
export interface Pkcs11Signer extends Signer {
  /** Always `pkcs11`: tells logs and `trellis check` where the key lives. */
  readonly kind: 'pkcs11';
  /** What the token reports about the private key's protection. */
  readonly protection: Readonly<KeyProtection>;
  /** Token label (or slot) and key label, for logs. Never the PIN. */
  readonly description: string;
  sign(tbs: Buffer): Promise<Buffer>;
  /** Closes the sessions and releases the module; later `sign` calls fail with CLOSED. */
  close(): void;
}

/** Collaborators of {@link openPkcs11Signer}. */
export interface Pkcs11SignerDeps extends PinDeps {
  logger?: Logger;
  /** Replaces `require('pkcs11js')` (tests simulate a missing binding). */
  loadBinding?: BindingLoader;
}

/** Return values after which a fresh session (and a fresh key lookup: handles may change when a token is re-inserted) can succeed. */
const SESSION_LOST = ['CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED', 'CKR_USER_NOT_LOGGED_IN', 'CKR_DEVICE_REMOVED', 'CKR_TOKEN_NOT_PRESENT', 'CKR_DEVICE_ERROR', 'CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID'];

/**
 * Opens the signer described by `config`: loads the module, finds the token,
 * logs in with the PIN from its file or environment variable, finds the key
 * pair and checks it. Fails with an {@link HsmError}: BINDING_UNAVAILABLE,
 * MODULE_FAILED, PIN_UNAVAILABLE, TOKEN_NOT_FOUND, LOGIN_FAILED,
 * KEY_NOT_FOUND, KEY_AMBIGUOUS, KEY_EXPORTABLE, UNSUPPORTED_KEY.
 */
export function openPkcs11Signer(config: Pkcs11SignerConfig, deps: Pkcs11SignerDeps = {}): Pkcs11Signer {
  const pin = readPin(config.pin, deps);
  const logger = deps.logger ?? silentLogger;
  const mod = acquirePkcs11Module(config.module, deps.loadBinding ?? requirePkcs11Binding);
  try {
    return new TokenSigner(config, pin, mod, logger);
  } catch (err) {
    mod.release();
    throw err;
  }
}

class TokenSigner implements Pkcs11Signer {
  readonly kind = 'pkcs11' as const;
  readonly algorithm: SignatureAlgorithm;
  readonly keyType: string;
  readonly publicKey: KeyObject;
  readonly publicKeyDer: Buffer;
  readonly protection: Readonly<KeyProtection>;
  readonly description: string;
  private readonly slot: Buffer;
  private privateKey: Buffer;
  private readonly ecSize: number | undefined;
  private readonly idle: Buffer[] = [];
  private readonly waiting: Array<{ resolve: (s: Buffer) => void; reject: (e: unknown) => void }> = [];
  private openCount = 0;
  private closed = false;
  /** Set when a session was lost: the next fresh session looks the key up again before signing. */
  private refindPending = false;

  constructor(
    private readonly config: Pkcs11SignerConfig,
    private readonly pin: string,
    private readonly mod: Pkcs11ModuleRef,
    private readonly logger: Logger,
  ) {
    const { binding, api } = mod;
    this.description = `${config.tokenLabel !== undefined ? `token "${config.tokenLabel}"` : `slot ${config.slot}`} key "${config.keyLabel}"`;
    this.slot = findSlot(mod.binding, mod.api, config, config.module);
    const session = this.openSession();
    try {
      const pair = findKeyPair(binding, api, session, config, this.description);
      this.privateKey = pair.privateKey;
      const protection = readKeyProtection(binding, api, session, pair.privateKey);
      if (protection.extractable || !protection.sensitive) {
        throw new HsmError(
          HsmErrorCode.KEY_EXPORTABLE,
          `${this.description}: the private key is ${protection.extractable ? 'extractable' : 'not sensitive'}; Trellis signs only with keys that cannot leave the token (generate one with "trellis hsm keygen")`,
          { key: config.keyLabel, ...protection },
        );
      }
      this.protection = Object.freeze(protection);
      const pub = readTokenPublicKey(binding, api, session, pair.publicKey, this.description);
      this.publicKey = pub.publicKey;
      this.publicKeyDer = pub.spkiDer;
      this.keyType = pub.keyType;
      this.algorithm = pub.algorithm;
      this.ecSize = pub.ecSize;
    } catch (err) {
      this.closeSession(session);
      throw err;
    }
    this.idle.push(session);
    logger.info('hsm signer opened', { module: config.module, token: config.tokenLabel ?? config.slot, key: config.keyLabel, keyType: this.keyType });
  }

  async sign(tbs: Buffer): Promise<Buffer> {
    try {
      return await this.signOnce(tbs);
    } catch (err) {
      if (!(err instanceof LostSession)) throw err;
      this.logger.warn('hsm session lost; retrying on a fresh session', { key: this.config.keyLabel, reason: err.reason });
      // Whatever dropped one session (token reset, logout, device re-inserted) usually dropped the idle ones too.
      for (const idle of this.idle.splice(0)) this.closeSession(idle);
      this.refindPending = true;
      try {
        return await this.signOnce(tbs);
      } catch (again) {
        if (again instanceof LostSession) throw this.signFailed(again.cause, again.reason);
        throw again;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.idle.splice(0)) this.closeSession(s);
    for (const w of this.waiting.splice(0)) w.reject(new HsmError(HsmErrorCode.CLOSED, `${this.description}: the HSM signer is closed`, {}));
    this.mod.release();
    this.logger.info('hsm signer closed', { key: this.config.keyLabel });
  }

  private async signOnce(tbs: Buffer): Promise<Buffer> {
    const { binding, api } = this.mod;
    const session = await this.acquire();
    let healthy = true;
    try {
      const ec = this.ecSize !== undefined;
      const data = ec ? createHash(this.algorithm.hash).update(tbs).digest() : tbs;
      const mechanism = ec ? binding.CKM_ECDSA : rsaMechanism(binding, this.algorithm.hash);
      const out = Buffer.alloc(ec ? 2 * this.ecSize! : 512);
      let raw: Buffer;
      try {
        api.C_SignInit(session, { mechanism }, this.privateKey);
        raw = await new Promise<Buffer>((resolve, reject) => {
          api.C_Sign(session, data, out, (err, sig) => (err ? reject(err) : resolve(sig)));
        });
      } catch (err) {
        const reason = pkcs11ErrorName(binding, err);
        if (reason !== undefined && SESSION_LOST.includes(reason)) {
          healthy = false;
          throw new LostSession(reason, err);
        }
        throw this.signFailed(err, reason);
      }
      if (!ec) return Buffer.from(raw);
      const der = ecdsaRawToDer(raw);
      if (!der || raw.length !== 2 * this.ecSize!) throw this.signFailed(undefined, `token returned a ${raw.length}-byte ECDSA signature, expected ${2 * this.ecSize!}`);
      return der;
    } finally {
      this.releaseSession(session, healthy);
    }
  }

  private signFailed(cause: unknown, reason: string | undefined): HsmError {
    return new HsmError(HsmErrorCode.SIGN_FAILED, `${this.description}: signing failed (${reason ?? (cause as Error | undefined)?.message ?? 'unknown'})`, { key: this.config.keyLabel, reason }, { cause });
  }

  private openSession(): Buffer {
    const s = openUserSession(this.mod, this.slot, this.pin, this.description);
    this.openCount++;
    return s;
  }

  private closeSession(s: Buffer): void {
    this.openCount--;
    try {
      this.mod.api.C_CloseSession(s);
    } catch {
      // The token may already have dropped it.
    }
  }

  private acquire(): Promise<Buffer> {
    if (this.closed) return Promise.reject(new HsmError(HsmErrorCode.CLOSED, `${this.description}: the HSM signer is closed`, {}));
    const s = this.idle.pop();
    if (s) return Promise.resolve(s);
    if (this.openCount < this.config.sessions) {
      let fresh: Buffer | undefined;
      try {
        fresh = this.openSession();
        if (this.refindPending) {
          this.refindKey(fresh);
          this.refindPending = false;
        }
        return Promise.resolve(fresh);
      } catch (err) {
        if (fresh) this.closeSession(fresh);
        return Promise.reject(err);
      }
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private releaseSession(s: Buffer, healthy: boolean): void {
    if (!healthy) {
      this.closeSession(s);
      const next = this.waiting.shift();
      if (next) this.acquire().then(next.resolve, next.reject);
      return;
    }
    if (this.closed) {
      this.closeSession(s);
      return;
    }
    const next = this.waiting.shift();
    if (next) next.resolve(s);
    else this.idle.push(s);
  }

  /** After a session was lost the object handles may have changed (token re-inserted): look the key up again. */
  private refindKey(session: Buffer): void {
    const { binding, api } = this.mod;
    const pair = findKeyPair(binding, api, session, this.config, this.description);
    const pub = readTokenPublicKey(binding, api, session, pair.publicKey, this.description);
    if (!pub.spkiDer.equals(this.publicKeyDer)) {
      // Signing with it would produce certificates the intermediate does not vouch for.
      throw new HsmError(HsmErrorCode.KEY_CHANGED, `${this.description}: after reconnecting, the key under this label is not the key the signer opened with; refusing to sign`, { key: this.config.keyLabel });
    }
    this.privateKey = pair.privateKey;
  }
}

class LostSession extends Error {
  constructor(readonly reason: string, override readonly cause: unknown) {
    super(reason);
  }
}

function rsaMechanism(binding: import('./pkcs11-module').Pkcs11Binding, hash: SignatureAlgorithm['hash']): number {
  switch (hash) {
    case 'sha256':
      return binding.CKM_SHA256_RSA_PKCS;
    case 'sha384':
      return binding.CKM_SHA384_RSA_PKCS;
    case 'sha512':
      return binding.CKM_SHA512_RSA_PKCS;
  }
}
