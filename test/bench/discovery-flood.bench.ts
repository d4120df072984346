/**
 * `npm run bench -- discovery-flood`: what one workload identity can make the
 * control plane hold. A real `trellis control-plane` process; one SVID
 * obtained with a join token; then `--streams` (default 600) discovery
 * streams opened at once over mTLS with that SVID, each on its own TLS
 * connection, each sending a first request whose node carries
 * `--label-bytes` (default 1 MiB) of labels. Separately, `--idle` (default
 * 200) plain TCP connections that never speak TLS.
 *
 * Reports the control plane's RSS (VmRSS from /proc) before, at its peak
 * while the streams are open (sampled every 50 ms) and 3 s after the last
 * stream settled; how many streams were accepted and how many were refused,
 * by Trellis error code; and how many idle connections the server had closed
 * by `--hold` seconds (default 15).
 *
 * Flags: --streams N, --label-bytes N, --empty-node (no labels: a node the
 * control plane accepts, so only the stream cap refuses), --idle N, --hold S,
 * and --cp-args "..." (extra `trellis control-plane` flags, e.g.
 * "--max-streams-per-identity 1000").
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { AUTHORIZATION_POLICIES_TYPE_URL, DISCOVERY_SERVICE, encodeDiscoveryRequest } from '@trellis/shared';
import { GrpcBidiCall } from '@trellis/sidecar';
import { makeTmpDir } from '@trellis/testkit';
import { CP_ID, FakeSidecar, initCa, joinToken, startControlPlaneProcess, TD } from '../integration/control-plane-harness';
import { numberFlag, stringFlag } from './bench-flags';

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the flood once and reports what the control plane held. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const streams = numberFlag(flags, 'streams', 600);
  const labelBytes = numberFlag(flags, 'label-bytes', 1024 * 1024);
  const idle = numberFlag(flags, 'idle', 200);
  const holdS = numberFlag(flags, 'hold', 15);
  const cpArgs = (stringFlag(flags, 'cp-args') ?? '').split(' ').filter(Boolean);
  const tmp = makeTmpDir('trellis-bench-flood-');
  const calls: GrpcBidiCall[] = [];
  try {
    const caDir = join(tmp.dir, 'ca');
    const policyDir = join(tmp.dir, 'policies');
    mkdirSync(policyDir);
    initCa(caDir);
    const cp = await startControlPlaneProcess(caDir, policyDir, cpArgs);
    const pid = cp.child.pid!;
    try {
      const id = `spiffe://${TD}/ns/flood/sa/one`;
      const token = joinToken(caDir, id);
      const first = new FakeSidecar({ addresses: [cp.address], caDir, spiffeId: id, token: () => token, namespace: 'flood' }).start();
      await first.rotate();
      first.stop();
      const creds = first.creds!;
      await sleep(1000);
      const before = rssMb(pid);

      // 16 labels sharing the byte budget, as a sidecar's --labels would carry them.
      const labels: Record<string, string> = {};
      const per = Math.max(1, Math.floor(labelBytes / 16));
      if (!flags.includes('--empty-node')) for (let i = 0; i < 16; i++) labels[`k${i}`] = String.fromCharCode(97 + i).repeat(per);
      const request = encodeDiscoveryRequest({ type_url: AUTHORIZATION_POLICIES_TYPE_URL, version_info: '', response_nonce: '', node: { spiffe_id: id, namespace: 'flood', labels } });

      let peak = before;
      const sampler = setInterval(() => {
        try {
          peak = Math.max(peak, rssMb(pid));
        } catch {
          /* exited */
        }
      }, 50);
      const refused = new Map<string, number>();
      let accepted = 0;
      let settled = 0;
      const root = readFileSync(join(caDir, 'root.pem'), 'utf8');
      const allSettled = new Promise<void>((resolve) => {
        const done = (): void => {
          if (++settled === streams) resolve();
        };
        for (let i = 0; i < streams; i++) {
          let counted = false;
          const call: GrpcBidiCall = new GrpcBidiCall(
            {
              address: cp.address,
              path: `/${DISCOVERY_SERVICE}/StreamResources`,
              tls: { caPem: root, certPem: creds.chainPem, keyPem: creds.keyPem, servername: 'trellis-control-plane', checkServerIdentity: () => undefined },
              metadata: {},
              maxReceiveMessageBytes: 16 * 1024 * 1024,
              keepaliveMs: 60_000,
              keepaliveTimeoutMs: 20_000,
              connectTimeoutMs: 60_000,
            },
            {
              onMetadata: () => undefined,
              // A response means the server took the node and serves this stream.
              onMessage: () => {
                if (counted) return;
                counted = true;
                accepted++;
                done();
              },
              onStatus: (s) => {
                if (counted) return;
                counted = true;
                const code = s.metadata['trellis-error-code'] ?? `GRPC_${s.code}`;
                refused.set(code, (refused.get(code) ?? 0) + 1);
                done();
              },
            },
          );
          call.write(request);
          calls.push(call);
        }
      });
      await allSettled;
      const openAtSettle = rssMb(pid);
      await sleep(3000);
      clearInterval(sampler);
      const after = rssMb(pid);
      for (const c of calls) c.cancel();
      calls.length = 0;

      // Connections that never authenticate: plain TCP, never a TLS ClientHello.
      const [host, port] = [cp.address.slice(0, cp.address.lastIndexOf(':')), Number(cp.address.slice(cp.address.lastIndexOf(':') + 1))];
      let closedByServer = 0;
      const sockets = Array.from({ length: idle }, () => {
        const s = connect({ host, port });
        s.on('error', () => undefined);
        s.on('close', () => closedByServer++);
        return s;
      });
      await sleep(holdS * 1000);
      const idleClosed = closedByServer;
      for (const s of sockets) s.destroy();

      return {
        streams,
        label_bytes: flags.includes('--empty-node') ? 0 : labelBytes,
        accepted,
        refused: Object.fromEntries(refused),
        rss_before_mb: before,
        rss_peak_mb: peak,
        rss_when_settled_mb: openAtSettle,
        rss_after_mb: after,
        idle_connections: idle,
        [`idle_closed_by_server_within_${holdS}s`]: idleClosed,
        control_plane_alive: cp.child.exitCode === null,
        control_plane_id: CP_ID,
      };
    } finally {
      for (const c of calls) c.cancel();
      await cp.stop();
    }
  } finally {
    tmp.cleanup();
  }
}
