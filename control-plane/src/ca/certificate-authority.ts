/**
 * The subordinate CA the control plane issues X.509-SVIDs with.
 *
 * Loaded once from a CA dir (intermediate cert + key through a Signer, the
 * chain and the root bundle; the root key is not needed). `issue()` is the
 * hot path: validate the request, parse and check the CSR, decide the
 * validity, fill the pre-encoded template, sign, re-check what was signed,
 * append the audit line and flush it to disk before returning. The `trellis ca sign` command and the control
 * plane's gRPC service both call it.
 */
import { generateKeyPairSync, randomFillSync, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { normaliseSerial, parseSpiffeId, randomSerial, silentLogger, SpiffeIdError, trustDomainOfCaUriSans, type Logger, derToPem } from '@trellis/shared';
import { openAuditLog, type AuditSink } from './audit-log';
import { CaError, CaErrorCode } from './ca-error';
import { readCaCertificate, verifyCaChain, certificateHasKey, type CaCertificate } from './ca-chain';
import { CA_FILES, readCaFiles } from './ca-dir';
import { loadSigner } from '../hsm/load-signer';
import { parseCsr, type CsrVerifyOptions } from './csr';
import { defaultNativeEcdsaVerify, type NativeEcdsaVerify } from './native-ecdsa';
import { subjectPublicKeyBits } from './key-types';
import { checkIssuedSvid, type ExpectedSvid } from './issued-check';
import { readBackIssuedSvid } from './issued-readback';
import type { IssuedSvid as AuthorityIssuedSvid } from '../issuance/svid-authority';
import { pemCertificates } from './pem';
import { createFileSigner, type Signer } from './signer';
import { checkCsrIdentity, svidValidity } from './svid-profile';
import { SvidTemplate } from './svid-template';

/** A request to issue one SVID. The caller has already authenticated the requester and authorized `spiffeId`. */
export interface IssueRequest {
  /** PKCS#10 CSR, DER or PEM. */
  csr: Buffer;
  /** The identity to issue; the CSR may only repeat it or leave it out. */
  spiffeId: string;
  /** Default 3600; allowed 60..86400. */
  ttlSeconds?: number;
  /** Who asked (for the audit log), e.g. a pod's service account or `cli`. */
  requester: string;
  /**
   * DNS SANs to add beside the SPIFFE ID, for serving certificates that a
   * non-SPIFFE client checks by hostname (the Kubernetes API server calling
   * the injector webhook). Only trusted in-process callers set this; the
   * discovery stream never does.
   */
  dnsNames?: readonly string[];
}

/** A freshly issued X.509-SVID: what every SvidAuthority returns, plus the DER and the key type. */
export interface IssuedSvid extends AuthorityIssuedSvid {
  leafDer: Buffer;
  /** Leaf key type: `ec-p256`, `ec-p384` or `rsa-<bits>`. */
  keyType: string;
}

/** Collaborators of a loaded CA. */
export interface CertificateAuthorityDeps {
  /** Current time; default `() => new Date()`. */
  clock?: () => Date;
  logger?: Logger;
  /** Signs with the intermediate key; default: the file-backed `intermediate.key`. An HSM signer plugs in here. */
  signer?: Signer;
  /** Audit sink; default: the hash-chained `audit.log` in the CA dir. */
  audit?: AuditSink;
  /** Told after each audit write (null: durable; else the error): storage health and metrics. Ignored with `audit`. */
  onAuditWrite?(err: Error | null): void;
  /**
   * Also verify the signature of every issued certificate with the
   * intermediate's public key (on top of the structural re-check). Default
   * false: it costs a second ECDSA verify per SVID; the signer is probed
   * once at load time instead. Turn it on for signers that can fail silently.
   */
  verifyEverySignature?: boolean;
  /** Environment for an HSM PIN given by variable name in signer.yaml; default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * How CSR signatures on P-256/P-384 keys are checked: undefined = the
   * native verifier (`@trellis/ecdsa-verify`) when it is built and passes its
   * self-test, else node:crypto; null = always node:crypto. Same verdicts either way.
   */
  nativeVerify?: NativeEcdsaVerify | null;
}

/** Issuance events for metrics/tracing subscribers; publishing is free when nobody listens. */
export const ISSUED_CHANNEL = 'trellis:ca:issued';
const issuedChannel = channel(ISSUED_CHANNEL);

/** A CA loaded from a directory. Create with {@link loadCertificateAuthority}. */
export class CertificateAuthority {
  private readonly template: SvidTemplate;
  private readonly chainTail: string;
  private readonly serialPool = Buffer.allocUnsafe(16 * 256);
  private serialNext = this.serialPool.length;
  private readonly csrOptions: CsrVerifyOptions;
  /** Which verifier checks EC CSR signatures: `native` (the addon) or `node` (node:crypto). */
  readonly csrVerifier: 'native' | 'node';

  /** @internal use {@link loadCertificateAuthority}. */
  constructor(
    /** The trust domain, from the intermediate's URI SAN. */
    readonly trustDomain: string,
    private readonly intermediate: CaCertificate,
    uppers: CaCertificate[],
    private readonly roots: CaCertificate[],
    private readonly signer: Signer,
    private readonly audit: AuditSink,
    private readonly clock: () => Date,
    private readonly logger: Logger,
    private readonly verifyKey: KeyObject | undefined,
    nativeVerify: NativeEcdsaVerify | null,
  ) {
    this.csrOptions = Object.freeze({ nativeVerify });
    this.csrVerifier = nativeVerify ? 'native' : 'node';
    this.template = new SvidTemplate(intermediate.facts.subject, intermediate.keyId, signer.algorithm);
    this.chainTail = [intermediate, ...uppers].map((c) => c.pem).join('');
  }

  /** The intermediate certificate, PEM. */
  get intermediatePem(): string {
    return this.intermediate.pem;
  }

  /** When the intermediate expires; no SVID outlives it. */
  get intermediateNotAfter(): Date {
    return this.intermediate.facts.notAfter;
  }

  /** When each trusted root expires, in bundle order. */
  get rootNotAfters(): Date[] {
    return this.roots.map((r) => r.facts.notAfter);
  }

  /** The earliest root expiry. */
  get rootNotAfter(): Date {
    return new Date(Math.min(...this.roots.map((r) => r.facts.notAfter.getTime())));
  }

  /** The roots workloads should trust, PEM, one per entry. */
  trustBundle(): { rootsPem: string[] } {
    return { rootsPem: this.roots.map((r) => r.pem) };
  }

  /**
   * Issues an X.509-SVID for `req.spiffeId`. Fails closed with a CaError:
   * BAD_REQUEST, BAD_SPIFFE_ID (invalid, other trust domain, or no path),
   * TTL_OUT_OF_RANGE, BAD_PEM/BAD_DER, UNSUPPORTED_KEY, BAD_CSR_SIGNATURE,
   * CSR_IDENTITY_MISMATCH, INTERMEDIATE_EXPIRED, SELF_CHECK_FAILED, and
   * AUDIT_WRITE_FAILED when its audit record could not be made durable (the
   * certificate is then discarded: nothing is returned without its record).
   */
  async issue(req: IssueRequest): Promise<IssuedSvid> {
    if (typeof req.requester !== 'string' || req.requester === '') {
      throw new CaError(CaErrorCode.BAD_REQUEST, 'requester is required (who is asking, for the audit log)', { field: 'requester' });
    }
    if (!Buffer.isBuffer(req.csr)) throw new CaError(CaErrorCode.BAD_REQUEST, 'csr must be a Buffer (DER or PEM)', { field: 'csr' });
    const spiffeId = this.checkSpiffeId(req.spiffeId);
    const validity = svidValidity(this.clock(), req.ttlSeconds, this.intermediate.facts);
    const dnsNames = checkDnsNames(req.dnsNames);
    const csr = parseCsr(req.csr, 'CSR', this.csrOptions);
    checkCsrIdentity(csr, spiffeId);

    const serial = this.nextSerial();
    const tbs = this.template.encodeTbs({
      serial,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      spkiDer: csr.spkiDer,
      publicKeyBits: subjectPublicKeyBits(csr.spkiDer),
      spiffeId,
      dnsNames,
      rsa: csr.keyType.startsWith('rsa'),
    });
    const signed = this.signer.sign(tbs);
    const signature = signed instanceof Promise ? await signed : signed;
    const leafDer = this.template.encodeCertificate(tbs, signature);
    readBackIssuedSvid(leafDer, { ...this.expected(serial, spiffeId, dnsNames, validity, csr.spkiDer), issuerPublicKey: this.verifyKey });

    const serialHex = normaliseSerial(serial.toString('hex'));
    // Durable before it is handed out: a record that cannot be written and flushed fails the issuance (AUDIT_WRITE_FAILED).
    await this.audit.append({
      time: this.clock().toISOString(),
      serial: serialHex,
      spiffeId,
      notAfter: validity.notAfter.toISOString(),
      keyType: csr.keyType,
      requester: req.requester,
    });
    if (issuedChannel.hasSubscribers) issuedChannel.publish({ serial: serialHex, spiffeId, notAfter: validity.notAfter, keyType: csr.keyType, requester: req.requester });
    const leafPem = derToPem(leafDer, 'CERTIFICATE');
    return { serialHex, spiffeId, notBefore: validity.notBefore, notAfter: validity.notAfter, leafDer, leafPem, chainPem: leafPem + this.chainTail, keyType: csr.keyType };
  }

  /**
   * Runs the template once through the full check (the shared certificate
   * parser and `validateLeafSvid`, beside the per-request read-back) on
   * unsigned probes with and without DNS SANs. Nothing is signed, audited or
   * handed out. Throws SELF_CHECK_FAILED when the template is broken.
   * @internal called by {@link loadCertificateAuthority}.
   */
  probeTemplate(): void {
    // The intermediate's own window: no clock involved, so loading never depends on the time of day.
    const validity = { notBefore: this.intermediate.facts.notBefore, notAfter: this.intermediate.facts.notAfter };
    const spkiDer = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    for (const dnsNames of [undefined, ['template-probe.trellis.invalid']]) {
      const serial = this.nextSerial();
      const spiffeId = `spiffe://${this.trustDomain}/trellis/template-probe`;
      const tbs = this.template.encodeTbs({ serial, notBefore: validity.notBefore, notAfter: validity.notAfter, spkiDer, publicKeyBits: subjectPublicKeyBits(spkiDer), spiffeId, dnsNames, rsa: false });
      const probe = this.template.encodeCertificate(tbs, Buffer.alloc(8));
      const want = this.expected(serial, spiffeId, dnsNames, validity, spkiDer);
      checkIssuedSvid(probe, want);
      readBackIssuedSvid(probe, want);
    }
  }

  /** What a certificate this CA issues for these values must say (checked before it is handed out). */
  private expected(serial: Buffer, spiffeId: string, dnsNames: readonly string[] | undefined, validity: { notBefore: Date; notAfter: Date }, spkiDer: Buffer): ExpectedSvid {
    return {
      serial,
      spiffeId,
      dnsNames,
      trustDomain: this.trustDomain,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      spkiDer,
      issuerDer: this.intermediate.facts.subject,
      issuerKeyId: this.intermediate.keyId,
      algorithm: this.signer.algorithm,
    };
  }

  /** Releases the audit log. */
  close(): void {
    this.audit.close();
    (this.signer as Partial<{ close(): void }>).close?.();
    this.logger.debug('ca closed', { trustDomain: this.trustDomain });
  }

  private checkSpiffeId(input: unknown): string {
    if (typeof input !== 'string') throw new CaError(CaErrorCode.BAD_SPIFFE_ID, 'spiffeId must be a string', { field: 'spiffeId' });
    let id;
    try {
      id = parseSpiffeId(input);
    } catch (err) {
      if (err instanceof SpiffeIdError) {
        throw new CaError(CaErrorCode.BAD_SPIFFE_ID, `invalid SPIFFE ID "${input}": ${err.message}`, { field: 'spiffeId', reason: err.code }, { cause: err });
      }
      throw err;
    }
    if (id.trustDomain !== this.trustDomain) {
      throw new CaError(CaErrorCode.BAD_SPIFFE_ID, `SPIFFE ID "${input}" is outside this CA's trust domain ${this.trustDomain}`, { field: 'spiffeId' });
    }
    if (id.path === '') {
      throw new CaError(CaErrorCode.BAD_SPIFFE_ID, `SPIFFE ID "${input}" names the trust domain itself; a workload ID needs a path`, { field: 'spiffeId' });
    }
    return id.toString();
  }

  /** The shared serial generator, fed from a pool of random bytes refilled 256 serials at a time (issuance is hot). */
  private nextSerial(): Buffer {
    return randomSerial(() => {
      if (this.serialNext >= this.serialPool.length) {
        randomFillSync(this.serialPool);
        this.serialNext = 0;
      }
      const s = this.serialPool.subarray(this.serialNext, this.serialNext + 16);
      this.serialNext += 16;
      return s;
    });
  }
}

/**
 * Loads the CA in `dir`. Needs `intermediate.pem`, `intermediate.key` (unless
 * `deps.signer` is given), `chain.pem` and `root.pem`; `root.key` is never
 * read. Refuses with DIR_MISSING, DIR_INCOMPLETE, BAD_PEM, KEY_MISMATCH,
 * CHAIN_INVALID or INTERMEDIATE_EXPIRED; probes the signer once so a wrong
 * key fails here rather than on the first request.
 */
export async function loadCertificateAuthority(dir: string, deps: CertificateAuthorityDeps = {}): Promise<CertificateAuthority> {
  const clock = deps.clock ?? (() => new Date());
  const logger = deps.logger ?? silentLogger;
  // A CA dir with signer.yaml keeps its intermediate key in an HSM (PKCS#11);
  // every command that loads the CA then signs through the token, no key file needed.
  const hsmSigner = deps.signer ? undefined : loadSigner(dir, { logger, env: deps.env ?? process.env });
  const names: string[] = [CA_FILES.intermediateCert, CA_FILES.chain, CA_FILES.rootCert];
  if (!deps.signer && !hsmSigner) names.push(CA_FILES.intermediateKey);
  const files = readCaFiles(dir, names);
  const source = (n: string): string => join(dir, n);

  const intDers = pemCertificates(files.get(CA_FILES.intermediateCert)!, source(CA_FILES.intermediateCert));
  if (intDers.length !== 1) {
    throw new CaError(CaErrorCode.BAD_PEM, `${source(CA_FILES.intermediateCert)}: expected exactly one certificate, found ${intDers.length}`, { file: source(CA_FILES.intermediateCert) });
  }
  const intermediate = readCaCertificate(intDers[0]!, source(CA_FILES.intermediateCert));
  const chain = pemCertificates(files.get(CA_FILES.chain)!, source(CA_FILES.chain)).map((d, i) => readCaCertificate(d, `${source(CA_FILES.chain)} certificate ${i + 1}`));
  if (!chain[0] || !chain[0].der.equals(intermediate.der)) {
    throw new CaError(CaErrorCode.CHAIN_INVALID, `${source(CA_FILES.chain)} must start with the intermediate certificate`, { file: source(CA_FILES.chain) });
  }
  const roots = pemCertificates(files.get(CA_FILES.rootCert)!, source(CA_FILES.rootCert)).map((d, i) => readCaCertificate(d, `${source(CA_FILES.rootCert)} certificate ${i + 1}`));

  const signer = deps.signer ?? hsmSigner ?? createFileSigner(files.get(CA_FILES.intermediateKey)!, source(CA_FILES.intermediateKey));
  if (!certificateHasKey(intermediate, signer.publicKey)) {
    throw new CaError(CaErrorCode.KEY_MISMATCH, `${source(CA_FILES.intermediateKey)} is not the key of ${source(CA_FILES.intermediateCert)}`, { dir });
  }
  await probeSigner(signer);
  const now = clock();
  if (now >= intermediate.facts.notAfter) {
    throw new CaError(CaErrorCode.INTERMEDIATE_EXPIRED, `the intermediate in ${dir} expired at ${intermediate.facts.notAfter.toISOString()}`, { dir, notAfter: intermediate.facts.notAfter.toISOString() });
  }
  verifyCaChain(intermediate, chain.slice(1), roots, now);

  const td = trustDomainOfCaUriSans(intermediate.facts.subjectAltName.uris, 'the intermediate');
  if (!td.ok) throw new CaError(CaErrorCode.CHAIN_INVALID, td.reason, { dir });

  // The log exists from load on (0640), as before any issuance: an unwritable CA dir fails here, not on the first request.
  if (!deps.audit) closeSync(openSync(join(dir, CA_FILES.auditLog), 'a', 0o640));
  const audit = deps.audit ?? openAuditLog(join(dir, CA_FILES.auditLog), { onWrite: deps.onAuditWrite, onRepair: (bytes) => logger.warn('audit log ended in an incomplete record (an interrupted write; nothing was issued for it): cut off', { file: join(dir, CA_FILES.auditLog), bytes }) });
  const nativeVerify = deps.nativeVerify === undefined ? defaultNativeEcdsaVerify() : deps.nativeVerify;
  const ca = new CertificateAuthority(td.trustDomain, intermediate, chain.slice(1), roots, signer, audit, clock, logger, deps.verifyEverySignature ? signer.publicKey : undefined, nativeVerify);
  try {
    ca.probeTemplate();
  } catch (err) {
    ca.close();
    throw err;
  }
  logger.info('ca loaded', {
    csrVerifier: nativeVerify ? 'native' : 'node',
    trustDomain: td.trustDomain,
    keyType: signer.keyType,
    intermediateNotAfter: intermediate.facts.notAfter.toISOString(),
    roots: roots.length,
  });
  return ca;
}

async function probeSigner(signer: Signer): Promise<void> {
  const probe = Buffer.from('trellis ca signer probe');
  const sig = await signer.sign(probe);
  let ok = false;
  try {
    ok = cryptoVerify(signer.algorithm.hash, probe, signer.publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new CaError(CaErrorCode.KEY_MISMATCH, 'the signer produced a signature its own public key does not verify', {});
}

const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** Validates requested DNS SANs: lowercase hostnames only, no wildcards, at most 16. */
function checkDnsNames(names: readonly string[] | undefined): readonly string[] | undefined {
  if (names === undefined || names.length === 0) return undefined;
  if (names.length > 16) throw new CaError(CaErrorCode.BAD_REQUEST, `at most 16 DNS names may be requested, got ${names.length}`, { field: 'dnsNames' });
  for (const n of names) {
    if (typeof n !== 'string' || !DNS_NAME.test(n)) {
      throw new CaError(CaErrorCode.BAD_REQUEST, `DNS name ${JSON.stringify(n)} is not a lowercase hostname (letters, digits, '-', '.'; no wildcard)`, { field: 'dnsNames' });
    }
  }
  return names;
}
