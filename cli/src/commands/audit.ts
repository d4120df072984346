/**
 * `trellis audit verify`: checks the CA's audit log (every record complete
 * and hash-chained to the one before it). Wiring only; the chain lives in
 * @trellis/control-plane's ca/audit-chain.ts.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CA_FILES, CaError, CaErrorCode, verifyAuditChain } from '@trellis/control-plane';
import { UsageError } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString, outputFormat } from '../flags';

/** `audit verify`. */
export const commands: Command[] = [
  {
    name: 'audit verify',
    summary: 'Check that the CA audit log is complete and its hash chain unbroken',
    usage: 'trellis audit verify (--ca-dir DIR | --file FILE) [-o json]',
    description: `Reads DIR/audit.log (or FILE) and checks every line: a complete JSON record whose hash
matches its content and whose "prev" is the hash of the record before it, so a record that was
edited, removed, inserted or cut short is found. Prints the number of records and the chain's
head (the last hash): keep the head elsewhere (a SIEM, a ticket) to detect records removed from
the end later, which no chain can show on its own. Lines written before hash chaining are counted
and covered by the first chained record. Exits 1 with TRELLIS_CA_AUDIT_CHAIN_BROKEN naming the
first bad line and why.`,
    options: { 'ca-dir': { type: 'string' }, file: { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const caDir = optionalString(ctx, 'ca-dir');
      const file = optionalString(ctx, 'file');
      if ((caDir === undefined) === (file === undefined)) throw new UsageError('give exactly one of --ca-dir DIR or --file FILE', { flag: 'ca-dir' });
      const path = file !== undefined ? resolve(ctx.cwd, file) : join(resolve(ctx.cwd, caDir!), CA_FILES.auditLog);
      let bytes: Buffer;
      try {
        bytes = readFileSync(path);
      } catch (err) {
        throw new UsageError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { flag: file !== undefined ? 'file' : 'ca-dir' });
      }
      const r = verifyAuditChain(bytes);
      if (outputFormat(ctx) === 'json') ctx.stdout.write(JSON.stringify({ file: path, ...r }) + '\n');
      else if (r.ok) ctx.stdout.write(`${path}: ${r.records} record(s), chain intact${r.unchainedPrefixLines > 0 ? ` (${r.unchainedPrefixLines} line(s) written before chaining, covered by the first record)` : ''}\n  head ${r.head}\n`);
      if (!r.ok) {
        throw new CaError(CaErrorCode.AUDIT_CHAIN_BROKEN, `${path}:${r.problem!.line}: ${r.problem!.reason} (${r.records} record(s) before it are intact)`, { file: path, line: r.problem!.line, reason: r.problem!.reason });
      }
    },
  },
];
