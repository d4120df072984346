/**
 * The walk-through `npm start` runs against the example mesh: each step
 * exercises one promise of Trellis over real connections and prints a clear
 * PASS/FAIL line. The steps use the example's workloads by role, so they are
 * looked up by name from the mesh file rather than hard-coded ports.
 */
import { connect } from 'node:net';
import { request, Agent } from 'node:http';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest, type AdminTarget } from '@trellis/control-plane';
import type { MeshConfig, WorkloadConfig } from './mesh-config';
import { getJson } from './admin-client';
import { workloadSpiffeId } from './mesh-runner';

export interface StepResult {
  step: number;
  title: string;
  ok: boolean;
  detail: string;
}

export interface ScenarioDeps {
  /** Where PASS/FAIL lines go. */
  out: NodeJS.WritableStream;
  signal?: AbortSignal;
  /** Upper bound for the rotation step; defaults to 2.5 × the SVID TTL. */
  rotationTimeoutMs?: number;
  /** The control plane's admin API with the mesh's admin credentials. */
  admin: AdminTarget;
}

interface Reply {
  status: number;
  body: string;
}

function get(port: number, path = '/', agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: agent ?? false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Sends a plaintext HTTP request straight at a port and reports what came back (if anything). */
function plaintextProbe(port: number): Promise<{ answered: boolean; firstBytes: string }> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (): void => {
      sock.destroy();
      resolve({ answered: data.startsWith('HTTP/'), firstBytes: data.slice(0, 40) });
    };
    sock.setTimeout(3000, done);
    sock.on('connect', () => sock.write('GET / HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n'));
    sock.on('data', (c: Buffer) => {
      data += c.toString('latin1');
    });
    sock.on('error', done);
    sock.on('close', done);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually(timeoutMs: number, fn: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return true;
    await sleep(250);
  }
  return false;
}

function byName(config: MeshConfig, name: string): WorkloadConfig {
  const w = config.workloads.find((x) => x.name === name);
  if (!w) throw new Error(`the scenario needs a workload named "${name}" in ${config.file}`);
  return w;
}

function outboundTo(w: WorkloadConfig, service: string): number {
  const o = w.outbound.find((x) => x.service === service || x.service.startsWith(service + ':') || x.service.startsWith(service + '.'));
  if (!o) throw new Error(`the scenario needs ${w.name} to have an outbound listener for ${service}`);
  return o.port;
}

interface ConfigDump {
  identity?: { spiffeId?: string; serial?: string; serialHex?: string; notAfter?: string };
  svid?: { serial?: string; serialHex?: string };
}

async function serialOf(w: WorkloadConfig): Promise<string | undefined> {
  const d = await getJson<ConfigDump>(w.admin, '/config_dump');
  return d?.identity?.serial ?? d?.identity?.serialHex ?? d?.svid?.serial ?? d?.svid?.serialHex;
}

/** Runs the five steps; resolves with one result per step. */
export async function runScenario(config: MeshConfig, deps: ScenarioDeps): Promise<StepResult[]> {
  const frontend = byName(config, 'frontend');
  const payments = byName(config, 'payments');
  const ledger = byName(config, 'ledger');
  const results: StepResult[] = [];
  const report = (r: StepResult): void => {
    results.push(r);
    deps.out.write(`${r.ok ? 'PASS' : 'FAIL'} step ${r.step}: ${r.title}${r.detail ? ' — ' + r.detail : ''}\n`);
  };
  const attempt = async (step: number, title: string, fn: () => Promise<{ ok: boolean; detail: string }>): Promise<void> => {
    try {
      report({ step, title, ...(await fn()) });
    } catch (err) {
      report({ step, title, ok: false, detail: (err as Error).message });
    }
  };

  await attempt(1, 'frontend → payments succeeds over mTLS and payments sees the caller', async () => {
    const r = await get(outboundTo(frontend, 'payments'));
    const body = JSON.parse(r.body) as { service?: string; callerSpiffeId?: string | null };
    const want = workloadSpiffeId(config.trustDomain, frontend);
    return {
      ok: r.status === 200 && body.service === 'payments' && body.callerSpiffeId === want,
      detail: `HTTP ${r.status}, payments saw caller ${body.callerSpiffeId ?? 'none'}`,
    };
  });

  await attempt(2, "a plaintext connection straight to payments' inbound port is refused", async () => {
    const inbound = payments.inbound[0];
    if (!inbound) throw new Error('payments has no inbound port');
    const probe = await plaintextProbe(inbound.port);
    return { ok: !probe.answered, detail: probe.answered ? `got an answer: ${JSON.stringify(probe.firstBytes)}` : 'connection closed without an answer' };
  });

  await attempt(3, 'frontend → ledger is denied by AuthorizationPolicy, payments → ledger is allowed', async () => {
    const denied = await get(outboundTo(frontend, 'ledger')).then((r) => r.status, () => 0);
    const allowed = await get(outboundTo(payments, 'ledger'));
    const body = JSON.parse(allowed.body) as { callerSpiffeId?: string | null };
    const ok = denied !== 200 && allowed.status === 200 && body.callerSpiffeId === workloadSpiffeId(config.trustDomain, payments);
    return { ok, detail: `frontend → ledger: ${denied === 0 ? 'connection refused' : 'HTTP ' + denied}; payments → ledger: HTTP ${allowed.status}` };
  });

  await attempt(4, 'certificates rotate while traffic flows, with zero failed requests', async () => {
    const watched = [frontend, payments];
    const before = await Promise.all(watched.map(serialOf));
    if (before.some((s) => s === undefined)) throw new Error('could not read serials from /config_dump');
    const ttlMs = parseTtl(config.svidTtl);
    const timeout = deps.rotationTimeoutMs ?? Math.max(ttlMs * 2.5, 30_000);
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 2 });
    let ok = 0;
    let failed = 0;
    const deadline = Date.now() + timeout;
    let rotated = false;
    let n = 0;
    while (Date.now() < deadline && !deps.signal?.aborted) {
      // Alternate fresh connections (new handshakes) and a kept-alive one (a connection that outlives a rotation).
      const r = await get(outboundTo(frontend, 'payments'), '/', n++ % 2 === 0 ? undefined : keepAlive).catch(() => undefined);
      if (r && r.status === 200) ok++;
      else failed++;
      if (n % 20 === 0) {
        const now = await Promise.all(watched.map(serialOf));
        if (now.every((s, i) => s !== undefined && s !== before[i])) {
          rotated = true;
          break;
        }
      }
      await sleep(50);
    }
    keepAlive.destroy();
    return { ok: rotated && failed === 0, detail: `${rotated ? 'frontend and payments rotated' : 'no full rotation seen'}; ${ok} requests ok, ${failed} failed` };
  });

  await attempt(5, 'a policy edit takes effect without restarts; a broken edit keeps the last good policy', async () => {
    const file = join(config.policyDir, 'zz-scenario-allow-frontend.yaml');
    if (existsSync(file)) rmSync(file);
    const port = outboundTo(frontend, 'ledger');
    const status = (): Promise<number> => get(port).then((r) => r.status, () => 0);
    try {
      writeFileSync(file, allowFrontendPolicy(config, frontend, ledger));
      const applied = await eventually(10_000, async () => (await status()) === 200);
      writeFileSync(file, 'apiVersion: security.trellis.dev/v1\nkind: AuthorizationPolicy\nmetadata: { name: broken, namespace: shop }\nspec: { action: SOMETIMES }\n');
      await sleep(1500);
      const policies = await adminRequest<unknown>(deps.admin, 'GET', '/debug/policies').catch(() => undefined);
      const reported = JSON.stringify(policies ?? {}).includes('zz-scenario-allow-frontend.yaml');
      const kept = (await status()) === 200;
      return { ok: applied && reported && kept, detail: `edit applied: ${applied}; broken edit reported: ${reported}; last good kept: ${kept}` };
    } finally {
      rmSync(file, { force: true });
    }
  });

  return results;
}

function allowFrontendPolicy(config: MeshConfig, frontend: WorkloadConfig, ledger: WorkloadConfig): string {
  const principal = workloadSpiffeId(config.trustDomain, frontend).slice('spiffe://'.length);
  return [
    '# Written by the npm start scenario and removed again: lets frontend call ledger too.',
    'apiVersion: security.trellis.dev/v1',
    'kind: AuthorizationPolicy',
    'metadata:',
    '  name: scenario-allow-frontend',
    `  namespace: ${ledger.namespace}`,
    'spec:',
    '  selector:',
    `    matchLabels: { app: ${ledger.labels['app'] ?? ledger.name} }`,
    '  action: ALLOW',
    '  rules:',
    `    - from: [{ source: { principals: ["${principal}"] } }]`,
    '',
  ].join('\n');
}

function parseTtl(s: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(s);
  if (!m) return 3600_000;
  return Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 3600_000);
}
