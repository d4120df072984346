/**
 * One Trellis sidecar as its own process, with static state handed over on
 * stdin (JSON: credentials PEMs, bundle, listeners): the dataplane benchmark
 * measures the data path, so the control plane is left out and the process
 * runs exactly the Sidecar class `trellis sidecar` runs. Prints
 * `{"inbound":[ports],"outbound":[ports]}` once listening.
 */
import { join } from 'node:path';
import type { Logger } from '@trellis/shared';
import type * as SidecarLib from '@trellis/sidecar';
import type { InboundSpec, OutboundSpec } from '@trellis/sidecar';

/**
 * The code comes from the same one-file bundle `trellis sidecar` runs
 * (cli/dist/trellis-sidecar.js, see cli/src/sidecar-entry.ts), so the idle
 * and loaded RSS measured here are what a pod's sidecar pays; loading the
 * packages' dist folders instead costs ~4 MB more at start-up.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Sidecar, makeCredentials, makeTrustBundle, policiesFromWire, sharedAuthorizer, silentLogger } = require(join(__dirname, '..', '..', '..', '..', 'cli', 'dist', 'trellis-sidecar.js')) as Pick<
  typeof SidecarLib,
  'Sidecar' | 'makeCredentials' | 'makeTrustBundle' | 'policiesFromWire' | 'sharedAuthorizer'
> & { silentLogger: Logger };

interface Input {
  keyPem: string;
  chainPem: string;
  rootsPem: string[];
  inbound: InboundSpec[];
  outbound: OutboundSpec[];
  dataPath?: 'auto' | 'native' | 'node';
  /** AuthorizationPolicies in wire form (none: allow all). */
  policies?: unknown; // the compiled AuthorizationPolicies body, as a control plane pushes it
}

async function main(): Promise<void> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  const input = JSON.parse(text) as Input;
  const sidecar = new Sidecar(
    { inbound: input.inbound, outbound: input.outbound, workload: { namespace: 'bench', labels: {} }, dataPath: input.dataPath },
    { logger: silentLogger, authorize: sharedAuthorizer(), processMetrics: false },
  );
  sidecar.state.update({
    credentials: makeCredentials(input.keyPem, input.chainPem),
    bundle: makeTrustBundle(input.rootsPem),
    peerAuth: { mode: 'STRICT', portModes: {} },
    authz: { policies: input.policies ? policiesFromWire(input.policies) : [] },
  });
  await sidecar.start();
  const dataPath = sidecar.dataPath;
  process.stdout.write(JSON.stringify({ inbound: sidecar.inbound.map((l) => l.port), outbound: sidecar.outbound.map((l) => l.port), dataPath }) + '\n');
  process.on('SIGTERM', () => {
    void sidecar.stop(0).then(() => process.exit(0));
  });
}

main().catch((err) => {
  process.stderr.write(`bench-sidecar: ${(err as Error).message}\n`);
  process.exit(1);
});
