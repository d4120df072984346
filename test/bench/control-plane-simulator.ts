/**
 * The sidecar fleet for `npm run bench -- control-plane`, run as its own
 * process so its CPU and memory are not the control plane's. Each simulated
 * sidecar is a real DiscoveryClient with its own TLS connection, EC key and
 * CSR. Protocol with the parent (JSON lines): it prints
 * {"phase":"certified",...} once every sidecar holds an SVID, then reads
 * {"policyWrittenAt":ms} on stdin and prints {"phase":"converged",...} once
 * every sidecar has accepted an authz version newer than the one it had.
 *
 * argv[2]: JSON {addresses, rootPem, controlPlaneSpiffeId, sidecars, tokens: string[], trustDomain}
 */
import { generateKeyPairSync } from 'node:crypto';
import { createInterface } from 'node:readline';
import { AUTHORIZATION_POLICIES_TYPE_URL, silentLogger } from '@trellis/shared';
import { buildCsr } from '@trellis/sidecar';
import { DiscoveryClient } from '@trellis/sidecar/dist/src/discovery/discovery-client';

interface Config {
  addresses: string[];
  rootPem: string;
  controlPlaneSpiffeId: string;
  sidecars: number;
  tokens: string[];
  trustDomain: string;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};

let errors = 0;
const errorsByCode: Record<string, number> = {};
let certified = 0;
const authzVersions: string[][] = [];
const acceptedAt: number[] = [];
let baselineVersions: string[] | null = null;
const clients: DiscoveryClient[] = [];
const start = Date.now();

for (let i = 0; i < cfg.sidecars; i++) {
  const sa = `sa-${i % cfg.tokens.length}`;
  const token = cfg.tokens[i % cfg.tokens.length]!;
  const spiffeId = `spiffe://${cfg.trustDomain}/ns/bench/sa/${sa}`;
  authzVersions.push([]);
  const c = new DiscoveryClient({
    addresses: cfg.addresses,
    bootstrapBundlePem: cfg.rootPem,
    getToken: async () => token,
    node: { spiffeId, namespace: 'bench', labels: { app: 'bench' }, service: '', inboundPorts: [] },
    controlPlaneSpiffeId: cfg.controlPlaneSpiffeId,
    logger: silentLogger,
    backoff: { initialMs: 100, maxMs: 5000 },
  });
  c.on(AUTHORIZATION_POLICIES_TYPE_URL, (_r, version) => {
    authzVersions[i]!.push(version);
    if (baselineVersions && version !== baselineVersions[i]) acceptedAt[i] ??= Date.now();
    checkConverged();
  });
  c.onStreamEnded((e) => {
    errors++;
    const k = e.serverCode ?? `GRPC_${e.grpcCode}`;
    errorsByCode[k] = (errorsByCode[k] ?? 0) + 1;
  });
  clients.push(c);
  c.start();
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = buildCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, spiffeId);
  c.requestSvid(csr).then(
    () => {
      certified++;
      if (certified === cfg.sidecars) {
        // Wait until every sidecar also has its first authz version, so the change is measured from a settled state.
        const settle = setInterval(() => {
          if (authzVersions.every((v) => v.length > 0)) {
            clearInterval(settle);
            out({ phase: 'certified', all_certified_ms: Date.now() - start, errors, errors_by_code: errorsByCode, sim_cpu_s: process.cpuUsage().user / 1e6 });
          }
        }, 20);
      }
    },
    (err: Error) => {
      errors++;
      out({ phase: 'error', message: err.message });
    },
  );
}

let writtenAt = 0;
let reported = false;
function checkConverged(): void {
  if (!baselineVersions || reported) return;
  if (acceptedAt.filter((x) => x !== undefined).length < cfg.sidecars) return;
  reported = true;
  const lat = acceptedAt.map((t) => t - writtenAt).sort((a, b) => a - b);
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  out({ phase: 'converged', converge_p50_ms: q(0.5), converge_p99_ms: q(0.99), converge_max_ms: lat[lat.length - 1] });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line) as { policyWrittenAt?: number; stop?: boolean };
  if (msg.policyWrittenAt !== undefined) {
    writtenAt = msg.policyWrittenAt;
    baselineVersions = authzVersions.map((v) => v[0]!);
    for (let i = 0; i < cfg.sidecars; i++) {
      const v = authzVersions[i]!;
      if (v.length > 1) acceptedAt[i] = Date.now();
    }
    checkConverged();
  }
  if (msg.stop) {
    for (const c of clients) c.stop();
    process.exit(0);
  }
});
