/**
 * `trellis bundle export`: our trust bundle as a SPIFFE bundle document
 * (JWK set, `use: x509-svid`) for federated trust domains, or as PEM.
 * Wiring only; formatting lives in @trellis/shared.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { readBundleRoots, readIntermediateSlots } from '@trellis/control-plane';
import { DurationError, formatPemBundle, formatSpiffeBundle, parseDurationSeconds, parsePemBundle, UsageError } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString, requiredString } from '../flags';

/** `bundle export`. */
export const commands: Command[] = [
  {
    name: 'bundle export',
    summary: 'Write the trust bundle as a SPIFFE bundle document (or PEM) for federation',
    usage: 'trellis bundle export --ca-dir DIR [--format spiffe|pem] [--out FILE] [--sequence N] [--refresh-hint 5m]',
    description: `Every root in DIR/root.pem (both during a root rotation) as one x509-svid JWK each, with
the certificate in x5c and no kid, as the SPIFFE Trust Domain and Bundle spec asks. Give the
file to the trust domains that federate with us; they list it under federatesWith.`,
    options: { 'ca-dir': { type: 'string' }, format: { type: 'string' }, out: { type: 'string' }, sequence: { type: 'string' }, 'refresh-hint': { type: 'string' } },
    async run(ctx) {
      const caDir = resolve(ctx.cwd, requiredString(ctx, 'ca-dir'));
      const format = optionalString(ctx, 'format') ?? 'spiffe';
      if (format !== 'spiffe' && format !== 'pem') throw new UsageError(`--format must be "spiffe" or "pem", got "${format}"`, { flag: 'format' });
      const seqText = optionalString(ctx, 'sequence');
      const sequence = seqText === undefined ? undefined : Number(seqText);
      if (sequence !== undefined && (!Number.isSafeInteger(sequence) || sequence < 0)) throw new UsageError(`--sequence must be a non-negative integer, got "${seqText}"`, { flag: 'sequence' });
      let refresh: number | undefined;
      const hint = optionalString(ctx, 'refresh-hint');
      if (hint !== undefined) {
        try {
          refresh = parseDurationSeconds(hint, '--refresh-hint');
        } catch (err) {
          if (err instanceof DurationError) throw new UsageError(err.message, { flag: 'refresh-hint' });
          throw err;
        }
      }
      const td = readIntermediateSlots(caDir).current.trustDomain;
      const parsed = parsePemBundle(td, readBundleRoots(caDir).join(''), `${caDir}/root.pem`);
      const bundle = { ...parsed, sequenceNumber: sequence, refreshHintSeconds: refresh };
      const text = format === 'pem' ? formatPemBundle(bundle) : formatSpiffeBundle(bundle);
      const out = optionalString(ctx, 'out');
      if (out === undefined) {
        ctx.stdout.write(text);
        return;
      }
      writeFileSync(resolve(ctx.cwd, out), text, { mode: 0o644 });
      ctx.stderr.write(`wrote the ${td} bundle (${bundle.x509Authorities.length} root(s)) to ${resolve(ctx.cwd, out)}\n`);
    },
  },
];
