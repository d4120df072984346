/**
 * `trellis ca ...`: create, install and use the subordinate CA. Wiring only;
 * the behaviour lives in @trellis/control-plane's CA.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  CA_KEY_TYPES,
  importIntermediate,
  installNextIntermediate,
  activateNextIntermediate,
  withLifecycleLock,
  SLOT_DIRS,
  initCertificateAuthority,
  loadCertificateAuthority,
  loadSigner,
  writeIntermediateCsr,
  type CaKeyType,
} from '@trellis/control-plane';
import { DurationError, parseDurationSeconds, UsageError } from '@trellis/shared';
import type { Command, CommandContext } from '../command';
import { flag, optionalString, requiredString } from '../flags';

function dirFlag(ctx: CommandContext): string {
  return resolve(ctx.cwd, requiredString(ctx, 'dir'));
}

function keyTypeFlag(ctx: CommandContext): CaKeyType {
  const v = optionalString(ctx, 'key-type') ?? 'ec-p256';
  if (!(CA_KEY_TYPES as readonly string[]).includes(v)) {
    throw new UsageError(`--key-type must be one of ${CA_KEY_TYPES.join(', ')}, got "${v}"`, { flag: 'key-type' });
  }
  return v as CaKeyType;
}

function readInput(ctx: CommandContext, name: string): { path: string; text: string; bytes: Buffer } {
  const path = resolve(ctx.cwd, requiredString(ctx, name));
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new UsageError(`--${name} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { flag: name });
  }
  return { path, text: bytes.toString('utf8'), bytes };
}

const TD_DEFAULT = 'cluster.local';

/** `ca init`, `ca intermediate-csr`, `ca import`, `ca sign`. */
export const commands: Command[] = [
  {
    name: 'ca init',
    summary: 'Create an offline root and an intermediate CA in a directory',
    usage: 'trellis ca init --dir DIR [--trust-domain cluster.local] [--key-type ec-p256|ec-p384|rsa-2048] [--force]',
    description: `Writes root.pem, root.key, intermediate.pem, intermediate.key and chain.pem (keys 0600).
The root is self-signed for 10 years; the intermediate is valid 1 year, pathLen 0,
with URI SAN spiffe://<trust-domain>. Move root.key offline afterwards: the
control plane needs only the intermediate. Refuses an existing CA without --force.`,
    options: { dir: { type: 'string' }, 'trust-domain': { type: 'string' }, 'key-type': { type: 'string' }, force: { type: 'boolean' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const r = await initCertificateAuthority(dirFlag(ctx), {
        trustDomain: optionalString(ctx, 'trust-domain') ?? TD_DEFAULT,
        keyType: keyTypeFlag(ctx),
        force: flag(ctx, 'force'),
      });
      if (optionalString(ctx, 'output') === 'json') {
        ctx.stdout.write(JSON.stringify(r) + '\n');
        return;
      }
      ctx.stdout.write(`created CA for trust domain ${r.trustDomain} in ${r.dir} (${r.keyType})\n` +
        `  root valid until         ${r.rootNotAfter.toISOString()}\n` +
        `  intermediate valid until ${r.intermediateNotAfter.toISOString()}\n` +
        `  files: ${r.files.join(', ')}\n`);
    },
  },
  {
    name: 'ca intermediate-csr',
    summary: 'Generate the intermediate key and a CSR for an enterprise root to sign',
    usage: 'trellis ca intermediate-csr --dir DIR [--trust-domain cluster.local] [--key-type ec-p256|ec-p384|rsa-2048] [--force]',
    description: `Writes intermediate.key (0600) and intermediate.csr and prints the CSR PEM.
Have your root CA sign it as a CA certificate (CA:true, pathLen 0, keyCertSign),
then install the result with "trellis ca import".`,
    options: { dir: { type: 'string' }, 'trust-domain': { type: 'string' }, 'key-type': { type: 'string' }, force: { type: 'boolean' } },
    async run(ctx) {
      const r = await writeIntermediateCsr(dirFlag(ctx), {
        trustDomain: optionalString(ctx, 'trust-domain') ?? TD_DEFAULT,
        keyType: keyTypeFlag(ctx),
        force: flag(ctx, 'force'),
      });
      ctx.stdout.write(r.csrPem);
    },
  },
  {
    name: 'ca import',
    summary: 'Install an intermediate certificate signed by an existing root',
    usage: 'trellis ca import --dir DIR --cert FILE --chain FILE',
    description: `--cert is the signed intermediate; --chain holds the root(s) it chains to and any
intermediates in between. The certificate must match the dir's intermediate.key,
be a signing CA with URI SAN spiffe://<trust-domain> and chain to a given root.
When DIR holds a prepared next intermediate (DIR/next/, see "trellis ca prepare-intermediate"),
the certificate is for that key: it is installed and activated, and new leaves come from it at once
(the offline-root rotation: prepare, sign-intermediate where the root lives, import).`,
    options: { dir: { type: 'string' }, cert: { type: 'string' }, chain: { type: 'string' } },
    async run(ctx) {
      const dir = dirFlag(ctx);
      const cert = readInput(ctx, 'cert');
      const chain = readInput(ctx, 'chain');
      if (existsSync(join(dir, SLOT_DIRS.next, 'intermediate.key'))) {
        const now = new Date();
        const r = await withLifecycleLock(dir, () => {
          installNextIntermediate(dir, cert.text, { now, chainPem: chain.text, source: cert.path });
          return activateNextIntermediate(dir, { now, force: true });
        }, { waitMs: 10_000 });
        ctx.stdout.write(`imported and activated the next intermediate in ${dir}\n  valid until ${r.current.facts.notAfter.toISOString()}; new leaves come from it now\n`);
        return;
      }
      const r = importIntermediate(dir, cert.text, chain.text, { certSource: cert.path, chainSource: chain.path });
      ctx.stdout.write(`imported intermediate for trust domain ${r.trustDomain} into ${r.dir}\n` +
        `  intermediate valid until ${r.intermediateNotAfter.toISOString()}\n` +
        `  files: ${r.files.join(', ')}\n`);
    },
  },
  {
    name: 'ca sign',
    summary: 'Issue an X.509-SVID for a CSR and print the leaf + intermediate chain (PEM)',
    usage: 'trellis ca sign --dir DIR --csr FILE --spiffe-id ID [--ttl 1h]',
    description: `--csr is a PKCS#10 CSR (PEM or DER) whose URI SAN is empty or exactly --spiffe-id.
--ttl accepts 90s, 15m, 1h, ... between 1m and 24h (default 1h). Appends a line to audit.log.
When DIR holds signer.yaml (see "trellis hsm keygen"), the intermediate key in the HSM signs.`,
    options: { dir: { type: 'string' }, csr: { type: 'string' }, 'spiffe-id': { type: 'string' }, ttl: { type: 'string' } },
    async run(ctx) {
      const dir = dirFlag(ctx);
      const spiffeId = requiredString(ctx, 'spiffe-id');
      const ttlText = optionalString(ctx, 'ttl');
      let ttlSeconds: number | undefined;
      if (ttlText !== undefined) {
        try {
          ttlSeconds = parseDurationSeconds(ttlText, '--ttl');
        } catch (err) {
          if (err instanceof DurationError) throw new UsageError(err.message, { flag: 'ttl' });
          throw err;
        }
      }
      const csr = readInput(ctx, 'csr');
      // A CA dir with signer.yaml keeps its key in an HSM; otherwise intermediate.key signs.
      const signer = loadSigner(dir, { env: ctx.env });
      try {
        const ca = await loadCertificateAuthority(dir, signer ? { signer } : {});
        try {
          const svid = await ca.issue({ csr: csr.bytes, spiffeId, ttlSeconds, requester: `cli:${ctx.env.USER ?? 'unknown'}` });
          ctx.stdout.write(svid.chainPem);
        } finally {
          ca.close();
        }
      } finally {
        signer?.close();
      }
    },
  },
];
