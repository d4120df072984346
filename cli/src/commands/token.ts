/**
 * `trellis token create`: mints a join token for a workload outside
 * Kubernetes. Wiring only; tokens and their use records live in
 * @trellis/control-plane (join-token.ts, join-token-store.ts).
 */
import { resolve } from 'node:path';
import { createJoinToken, JoinTokenStore, loadCertificateAuthority } from '@trellis/control-plane';
import { parseDurationSeconds, parseSpiffeId, UsageError } from '@trellis/shared';
import type { Command } from '../command';
import { optionalString, requiredString } from '../flags';

export const commands: Command[] = [
  {
    name: 'token create',
    summary: 'Mint a join token that lets one workload obtain its first SVID',
    usage: 'trellis token create --ca-dir DIR --spiffe-id ID [--ttl 15m] [--uses 1]',
    description: `Prints the token (tj1.…) on stdout. It is signed with the join-token key kept
0600 in DIR/join-tokens/ (created on first use); each use is recorded on disk
there, so a spent token stays spent across restarts and replicas.
The SPIFFE ID must be in the CA's trust domain. Treat the token as a secret.`,
    options: { 'ca-dir': { type: 'string' }, 'spiffe-id': { type: 'string' }, ttl: { type: 'string' }, uses: { type: 'string' } },
    async run(ctx) {
      const caDir = resolve(ctx.cwd, requiredString(ctx, 'ca-dir'));
      const spiffeId = requiredString(ctx, 'spiffe-id');
      let td: string;
      try {
        td = parseSpiffeId(spiffeId).trustDomain;
      } catch (err) {
        throw new UsageError(`--spiffe-id: ${(err as Error).message}`, { flag: 'spiffe-id' });
      }
      let ttlSeconds: number;
      try {
        ttlSeconds = parseDurationSeconds(optionalString(ctx, 'ttl') ?? '15m', '--ttl');
      } catch (err) {
        throw new UsageError((err as Error).message, { flag: 'ttl' });
      }
      const usesText = optionalString(ctx, 'uses') ?? '1';
      if (!/^\d+$/.test(usesText) || Number(usesText) < 1 || Number(usesText) > 1000) throw new UsageError(`--uses must be an integer 1..1000, got "${usesText}"`, { flag: 'uses' });
      const ca = await loadCertificateAuthority(caDir);
      ca.close();
      if (td !== ca.trustDomain) throw new UsageError(`--spiffe-id ${spiffeId} is outside the CA's trust domain ${ca.trustDomain}`, { flag: 'spiffe-id' });
      const key = new JoinTokenStore(caDir).key(true);
      const { token } = await createJoinToken(key, { spiffeId, ttlSeconds, uses: Number(usesText), nowMs: Date.now() });
      ctx.stdout.write(token + '\n');
      return 0;
    },
  },
];
