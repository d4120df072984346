/**
 * Part of `npm run bench -- issuance`: X.509-SVIDs issued per second when the
 * intermediate key is in a PKCS#11 token (SoftHSM2), beside the same CA
 * with its key in a file, measured in the same run.
 *
 * `svids_per_s_hsm` issues one SVID at a time (as `svids_per_s` in the
 * issuance bench does); `svids_per_s_hsm_concurrent` keeps `--inflight=N`
 * (default 8) issuances in flight, which the signer's session pool spreads
 * over the token. `hsm_sign_per_s` is the raw signer rate (digest + token
 * sign + DER re-encode) and `ratio_hsm_to_file` the HSM rate over the file
 * rate. Rounds alternate and the best of each is kept. Flags: `--seconds=N`
 * per round (default 1), `--rounds=N` (default 3). Needs the softhsm2
 * package; without it the bench reports an error line.
 */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generateHsmKey,
  importHsmIntermediate,
  initCertificateAuthority,
  loadCertificateAuthority,
  loadSigner,
  parseSignerConfig,
  writeHsmIntermediateCsr,
  type CertificateAuthority,
} from '@trellis/control-plane';
import { der } from '@trellis/shared';
import { numberFlag } from './bench-flags';

const MODULE = process.env.TRELLIS_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
const TD = 'bench.local';

function makeCsr(): Buffer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const info = der.sequence(der.integer(0), der.sequence(), spki, der.tlv(0xa0));
  return der.sequence(info, der.sequence(der.oid('1.2.840.10045.4.3.2')), der.bitString(sign('sha256', info, privateKey)));
}

async function rate(seconds: number, inflight: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let n = 0;
  const worker = async (): Promise<void> => {
    while (process.hrtime.bigint() < end) await fn(n++);
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

function must(r: ReturnType<typeof spawnSync>, what: string): void {
  if (r.error || r.status !== 0) throw new Error(`${what} failed: ${r.error?.message ?? String(r.stderr)}`);
}

/** Runs the benchmark; the runner prints `{"bench":"issuance-hsm",...}`. */
export async function measureHsmIssuance(flags: string[]): Promise<Record<string, unknown>> {
  const seconds = numberFlag(flags, 'seconds', 1);
  const rounds = numberFlag(flags, 'rounds', 3);
  const inflight = numberFlag(flags, 'inflight', 8);
  if (!existsSync(MODULE)) throw new Error(`SoftHSM2 module ${MODULE} not found (apt-get install -y softhsm2)`);
  const tmp = mkdtempSync(join(tmpdir(), 'trellis-bench-hsm-'));
  const previousConf = process.env.SOFTHSM2_CONF;
  let fileCa: CertificateAuthority | undefined;
  let hsmCa: CertificateAuthority | undefined;
  let signer: ReturnType<typeof loadSigner>;
  try {
    mkdirSync(join(tmp, 'tokens'));
    const conf = join(tmp, 'softhsm2.conf');
    writeFileSync(conf, `directories.tokendir = ${join(tmp, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    process.env.SOFTHSM2_CONF = conf;
    const pin = randomBytes(6).toString('hex');
    must(spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--so-pin', randomBytes(6).toString('hex'), '--pin', pin]), 'softhsm2-util --init-token');
    writeFileSync(join(tmp, 'pin'), pin, { mode: 0o600 });

    const fileDir = join(tmp, 'file-ca');
    await initCertificateAuthority(fileDir, { trustDomain: TD, keyType: 'ec-p256' });
    const hsmDir = join(tmp, 'hsm-ca');
    generateHsmKey(hsmDir, parseSignerConfig({ type: 'pkcs11', module: MODULE, tokenLabel: 'bench', keyLabel: 'intermediate', pinFile: join(tmp, 'pin'), sessions: inflight }, 'bench', tmp));
    signer = loadSigner(hsmDir)!;
    await writeHsmIntermediateCsr(hsmDir, signer, TD);
    const ext = join(tmp, 'int.ext');
    writeFileSync(ext, `[v3]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://${TD}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
    must(spawnSync('openssl', ['x509', '-req', '-in', join(hsmDir, 'intermediate.csr'), '-CA', join(fileDir, 'root.pem'), '-CAkey', join(fileDir, 'root.key'),
      '-set_serial', '0x' + randomBytes(15).toString('hex'), '-days', '30', '-sha256', '-extfile', ext, '-extensions', 'v3', '-out', join(tmp, 'int.pem')]), 'openssl x509 -req');
    importHsmIntermediate(hsmDir, signer, readFileSync(join(tmp, 'int.pem'), 'utf8'), readFileSync(join(fileDir, 'root.pem'), 'utf8'));

    fileCa = await loadCertificateAuthority(fileDir);
    hsmCa = await loadCertificateAuthority(hsmDir, { signer });
    const csrs = Array.from({ length: 128 }, makeCsr);
    const ids = Array.from({ length: 64 }, (_, i) => `spiffe://${TD}/ns/ns-${i % 8}/sa/sa-${i}`);
    const issue = (ca: CertificateAuthority) => (i: number) => ca.issue({ csr: csrs[i % csrs.length]!, spiffeId: ids[i % ids.length]!, requester: 'bench' });
    const tbsLike = Buffer.alloc(420, 0x5a);
    const s = signer;

    let fileBest = 0;
    let hsmBest = 0;
    let hsmConcBest = 0;
    let signBest = 0;
    for (let r = 0; r < rounds; r++) {
      fileBest = Math.max(fileBest, await rate(seconds, 1, issue(fileCa)));
      hsmBest = Math.max(hsmBest, await rate(seconds, 1, issue(hsmCa)));
      hsmConcBest = Math.max(hsmConcBest, await rate(seconds, inflight, issue(hsmCa)));
      signBest = Math.max(signBest, await rate(seconds, 1, () => s.sign(tbsLike)));
    }
    return {
      svids_per_s_hsm: Math.round(hsmBest),
      svids_per_s_hsm_concurrent: Math.round(hsmConcBest),
      svids_per_s_file: Math.round(fileBest),
      hsm_sign_per_s: Math.round(signBest),
      ratio_hsm_to_file: Number((hsmBest / fileBest).toFixed(3)),
      inflight,
      module: 'softhsm2',
      key_type: 'ec-p256',
      rounds,
      seconds_per_round: seconds,
    };
  } finally {
    fileCa?.close();
    hsmCa?.close();
    signer?.close();
    if (previousConf === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previousConf;
    rmSync(tmp, { recursive: true, force: true });
  }
}
