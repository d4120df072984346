/**
 * 90 s of steady traffic with 1-minute certificates: every sidecar renews
 * twice or more, and each renewal moves its discovery stream to the new
 * certificate. Nothing may fail, no stream may be reset for an expired
 * credential, and the caller's endpoints must never change.
 */
import { sleep, type FaultRow, type Scenario } from '../fault-row';
import { childLog, startLocalMesh } from '../local-mesh';
import { SteadyLoad } from '../steady-load';

export const streamRenewals: Scenario = {
  name: 'stream-credential-renewals',
  summary: '90 s of traffic across 1-minute certificates (each sidecar renews 2-3 times, each renewal moves its stream)',
  async run(): Promise<FaultRow> {
    const mesh = await startLocalMesh();
    const load = new SteadyLoad(mesh.frontendToPayments).start();
    try {
      const t0 = Date.now();
      await sleep(90_000);
      const counts = load.count(t0 + 2000);
      const logs = ['frontend/sidecar', 'payments/sidecar'].map((c) => childLog(mesh, c));
      const expiredResets = logs.reduce((n, l) => n + (l.match(/TRELLIS_CP_CREDENTIAL_EXPIRED/g) ?? []).length, 0);
      const installs = logs.map((l) => (l.match(/"msg":"SVID installed"/g) ?? []).length);
      const endpointUpdates = (childLog(mesh, 'frontend/sidecar').match(/"msg":"endpoints applied"/g) ?? []).length;
      const disconnects = logs.reduce((n, l) => n + (l.match(/"msg":"control plane disconnected/g) ?? []).length, 0);
      return {
        fault: this.name,
        injected: this.summary,
        requests: counts,
        timeToRecoverMs: counts.failed === 0 ? 0 : null,
        lost: counts.failed === 0 ? 'nothing' : `${counts.failed} requests`,
        details: { svidsInstalled: { frontend: installs[0], payments: installs[1] }, credentialExpiredResets: expiredResets, controlPlaneDisconnects: disconnects, frontendEndpointUpdates: endpointUpdates, failureReasons: load.reasons(t0 + 2000) },
      };
    } finally {
      await load.stop();
      await mesh.stop();
    }
  },
};
