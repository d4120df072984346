/**
 * The sidecar fleet for `npm run bench -- control-plane`, run as its own
 * process so its CPU and memory are not the server's. Every simulated sidecar
 * has its own TLS connection (its own secure context, no session reuse: a
 * sidecar's first connection has nothing to resume), its own EC key and CSR.
 * Keys and CSRs are made before the clock starts: a real sidecar makes its
 * key on its own CPU, not on the two cores it would share with the server
 * here. The bench runs several of these processes, each with a slice of the
 * fleet (sidecars are separate processes in a cluster; one process would
 * serialise them on one core). Protocol with the parent (JSON lines):
 *
 * Each prints {"phase":"ready"} once its keys are made and starts every
 * sidecar at once when it reads {"go":true}; times are reported as absolute
 * Date.now() values so the parent can merge the slices.
 *
 * mode "trellis" (a real DiscoveryClient per sidecar against `trellis
 * control-plane`): prints {"phase":"certified","at":ms,...} once every sidecar
 * of the slice holds an SVID and its first authz version, then reads
 * {"policyWrittenAt":ms} and prints {"phase":"converged","accepted_at":[...]}
 * once every sidecar has accepted an authz version newer than the one it had.
 * For repeated measurements, {"arm":true} takes every sidecar's current authz
 * version as the baseline and answers {"phase":"armed"}; the next
 * {"phase":"converged","accepted_at":[...]} comes once every sidecar has
 * accepted (ACKed) a version other than that baseline.
 *
 * mode "bare" (the platform floor, against bare-grpc-server.js): the same
 * connection pattern and the same node:http2 client transport: all connect at once, each
 * opens one stream with the same bearer metadata, sends one request with its
 * CSR and waits for one response; prints {"phase":"connected","at":ms,...}
 * once all have one, and keeps the streams open until told to stop.
 *
 * Both modes exit on {"stop":true}.
 * argv[2]: JSON {mode, addresses, rootPem, controlPlaneSpiffeId, first, sidecars, tokens: string[], trustDomain}
 * (this slice is sidecars first .. first+sidecars-1 of the fleet)
 */
import { generateKeyPairSync } from 'node:crypto';
import { createInterface } from 'node:readline';
import { AUTHORIZATION_POLICIES_TYPE_URL, DISCOVERY_SERVICE, encodeDiscoveryRequest, silentLogger, SVID_TYPE_URL } from '@trellis/shared';
import { buildWorkloadCsr } from '@trellis/shared';
import { DiscoveryClient } from '@trellis/sidecar';
import { GrpcBidiCall } from '@trellis/sidecar';

interface Config {
  mode: 'trellis' | 'bare';
  addresses: string[];
  rootPem: string;
  controlPlaneSpiffeId: string;
  first: number;
  sidecars: number;
  tokens: string[];
  trustDomain: string;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const out = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};
const identity = (i: number): { spiffeId: string; token: string } => ({
  spiffeId: `spiffe://${cfg.trustDomain}/ns/bench/sa/sa-${(cfg.first + i) % cfg.tokens.length}`,
  token: cfg.tokens[(cfg.first + i) % cfg.tokens.length]!,
});

// Before the clock: one key and CSR per sidecar (bare mode: the server never parses it, so one does).
const csrs: Buffer[] = [];
for (let i = 0; i < (cfg.mode === 'bare' ? 1 : cfg.sidecars); i++) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  csrs.push(buildWorkloadCsr(privateKey, publicKey.export({ type: 'spki', format: 'der' }) as Buffer, identity(i).spiffeId));
}
let cpuAtStart = process.cpuUsage();
const simCpuS = (): number => {
  const d = process.cpuUsage(cpuAtStart);
  return Math.round((d.user + d.system) / 1e3) / 1e3;
};
const stops: Array<() => void> = [];
let onPolicyWritten: (writtenAt: number) => void = () => undefined;
let onArm: () => void = () => undefined;
out({ phase: 'ready' });

createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line) as { go?: boolean; policyWrittenAt?: number; arm?: boolean; stop?: boolean };
  if (msg.go) {
    cpuAtStart = process.cpuUsage();
    if (cfg.mode === 'bare') runBare();
    else runTrellis();
  }
  if (msg.policyWrittenAt !== undefined) onPolicyWritten(msg.policyWrittenAt);
  if (msg.arm) onArm();
  if (msg.stop) {
    for (const s of stops) s();
    process.exit(0);
  }
});

function runTrellis(): void {
  let errors = 0;
  const errorsByCode: Record<string, number> = {};
  let certified = 0;
  const authzVersions: string[][] = [];
  let acceptedAt: number[] = [];
  let baselineVersions: string[] | null = null;
  let reported = false;
  const checkConverged = (): void => {
    if (!baselineVersions || reported) return;
    if (acceptedAt.filter((x) => x !== undefined).length < cfg.sidecars) return;
    reported = true;
    out({ phase: 'converged', accepted_at: acceptedAt });
  };
  onPolicyWritten = () => {
    baselineVersions = authzVersions.map((v) => v[0]!);
    for (let i = 0; i < cfg.sidecars; i++) {
      if (authzVersions[i]!.length > 1) acceptedAt[i] = Date.now();
    }
    checkConverged();
  };
  onArm = () => {
    baselineVersions = authzVersions.map((v) => v[v.length - 1]!);
    acceptedAt = [];
    reported = false;
    out({ phase: 'armed' });
  };

  for (let i = 0; i < cfg.sidecars; i++) {
    const { spiffeId, token } = identity(i);
    authzVersions.push([]);
    const c = new DiscoveryClient({
      addresses: cfg.addresses,
      bootstrapBundlePem: cfg.rootPem,
      getToken: async () => token,
      // A Kubernetes token attests no labels (yet): a sidecar claiming any would be refused.
      node: { spiffeId, namespace: 'bench', labels: {}, service: '', inboundPorts: [] },
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
    stops.push(() => c.stop());
    c.start();
    c.requestSvid(csrs[i]!).then(
      () => {
        certified++;
        if (certified === cfg.sidecars) {
          // Wait until every sidecar also has its first authz version, so the change is measured from a settled state.
          const settle = setInterval(() => {
            if (authzVersions.every((v) => v.length > 0)) {
              clearInterval(settle);
              out({ phase: 'certified', at: Date.now(), errors, errors_by_code: errorsByCode, sim_cpu_s: simCpuS() });
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
}

function runBare(): void {
  // The same client transport a real sidecar (and the trellis mode) uses: one
  // node:http2 + TLS session per sidecar, the shared protobuf codec.
  let answered = 0;
  let errors = 0;
  for (let i = 0; i < cfg.sidecars; i++) {
    const { spiffeId, token } = identity(i);
    let first = true;
    const call = new GrpcBidiCall(
      {
        address: cfg.addresses[0]!,
        path: `/${DISCOVERY_SERVICE}/StreamResources`,
        tls: { caPem: cfg.rootPem, servername: 'trellis-control-plane', checkServerIdentity: () => undefined },
        metadata: { authorization: `Bearer ${token}` },
        maxReceiveMessageBytes: 16 * 1024 * 1024,
        keepaliveMs: 30_000,
        keepaliveTimeoutMs: 20_000,
        connectTimeoutMs: 20_000,
      },
      {
        onMetadata: () => undefined,
        onMessage: () => {
          if (!first) return;
          first = false;
          if (++answered === cfg.sidecars) out({ phase: 'connected', at: Date.now(), errors, sim_cpu_s: simCpuS() });
        },
        onStatus: () => {
          errors++;
          out({ phase: 'error', message: `bare stream ${i} failed` });
        },
      },
    );
    call.write(encodeDiscoveryRequest({ node: { spiffe_id: spiffeId, namespace: 'bench', labels: { app: 'bench' } }, type_url: SVID_TYPE_URL, csr: csrs[0]! }));
    stops.push(() => call.cancel());
  }
}
