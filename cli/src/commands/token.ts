/**
 * `trellis token create`: mints a join token for a workload outside
 * Kubernetes. Wiring only; tokens and their use records live in
 * @trellis/control-plane (join-token.ts, join-token-store.ts).
 */
import { resolve } from 'node:path';
import { createJoinToken, JoinTokenStore, loadCertificateAuthority, workloadMetadataProblems } from '@trellis/control-plane';
import { parseDurationSeconds, parseSpiffeId, UsageError } from '@trellis/shared';
import type { Command, CommandContext } from '../command';
import { labelsFlag, optionalString, requiredString, stringList } from '../flags';

export const commands: Command[] = [
  {
    name: 'token create',
    summary: 'Mint a join token that lets one workload obtain its first SVID',
    usage: 'trellis token create --ca-dir DIR --spiffe-id ID [--service NAME --ports 8080,...] [--labels k=v,...] [--ttl 15m] [--uses 1]',
    description: `Prints the token (tj1.…) on stdout. It is signed with the join-token key kept
0600 in DIR/join-tokens/ (created on first use); each use is recorded on disk
there, so a spent token stays spent across restarts and replicas.
The SPIFFE ID must be in the CA's trust domain. Treat the token as a secret.

The token also binds what the workload is known by, and the control plane
publishes only that, never what its sidecar announces:
  --service NAME     the service it belongs to
  --ports P,...      the inbound (sidecar listener) ports its endpoints are published on
                     (needs --service; without --ports no endpoint is published)
  --labels k=v,...   its labels, which policies select on (Kubernetes label syntax)
Without them the workload may call others but serves no endpoints and carries
no labels; a sidecar announcing more is refused (TRELLIS_CP_ATTESTATION_MISMATCH).`,
    options: {
      'ca-dir': { type: 'string' },
      'spiffe-id': { type: 'string' },
      ttl: { type: 'string' },
      uses: { type: 'string' },
      service: { type: 'string' },
      labels: { type: 'string', multiple: true },
      ports: { type: 'string', multiple: true },
    },
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
      const workload = workloadFlags(ctx);
      const ca = await loadCertificateAuthority(caDir);
      ca.close();
      if (td !== ca.trustDomain) throw new UsageError(`--spiffe-id ${spiffeId} is outside the CA's trust domain ${ca.trustDomain}`, { flag: 'spiffe-id' });
      const key = new JoinTokenStore(caDir).key(true);
      const { token } = await createJoinToken(key, { spiffeId, ttlSeconds, uses: Number(usesText), nowMs: Date.now(), workload });
      ctx.stdout.write(token + '\n');
      return 0;
    },
  },
];

/**
 * `--service`, `--labels` and `--ports`, checked with the bounds the control
 * plane enforces, so a token that would be refused is never minted. Usage
 * errors name the flag.
 */
function workloadFlags(ctx: CommandContext): { service: string; labels: Record<string, string>; inboundPorts: number[] } {
  const service = optionalString(ctx, 'service') ?? '';
  const labels = labelsFlag(ctx, 'labels');
  const inboundPorts: number[] = [];
  for (const item of stringList(ctx, 'ports').flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '')) {
    const port = Number(item);
    if (!/^\d{1,5}$/.test(item) || port < 1 || port > 65535) throw new UsageError(`--ports takes port numbers 1..65535 (comma-separated or repeated), got "${item}"`, { flag: 'ports' });
    if (inboundPorts.includes(port)) throw new UsageError(`--ports: ${port} is given twice`, { flag: 'ports' });
    inboundPorts.push(port);
  }
  if (service === '' && inboundPorts.length > 0) throw new UsageError('--ports needs --service: the ports are published for that service', { flag: 'service' });
  const problems = workloadMetadataProblems({ service, labels, inboundPorts });
  if (problems.length > 0) {
    // Each problem starts with its field ("labels.app: ..."); name the flag that set it.
    const flagOf = (p: string): string => ({ service: 'service', labels: 'labels', inboundPorts: 'ports' })[/^\w+/.exec(p)![0] as 'service'] ?? 'labels';
    throw new UsageError(problems.map((p) => `--${flagOf(p)}: ${p}`).join('\n'), { flag: flagOf(problems[0]!) });
  }
  return { service, labels, inboundPorts };
}
