/**
 * `npm run bench -- sidecar-rss [--runs=N] [--policies=N] [--repo=DIR]`: the
 * resident memory of a real sidecar after a real control plane pushed it a
 * policy set (default 20 AuthorizationPolicies), idle and after a burst of
 * requests has stopped, over several runs (default 3) with their median.
 * The dataplane benchmark reports one such run as `rss_idle_with_policies_mb`;
 * this one is cheap enough to repeat, and `--repo` measures another checkout
 * (for example main) with the same harness. The idle RSS is also split by
 * kind (`idle_file_mb`, `idle_anon_mb`; see dataplane/bench-process.ts),
 * beside the floor of the runtime itself (`runtime_floor_mb`: bare node
 * processes with a TLS context and the HTTP modules, which no sidecar on
 * this runtime can go below).
 */
import { measureIdleRssWithPolicies, type IdleRssWithPolicies } from './dataplane/idle-rss-with-policies';
import { runtimeFloorMb } from './dataplane/bench-process';

function flag(flags: string[], name: string): string | undefined {
  return flags.find((x) => x.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** The benchmark entry point. */
export async function run(flags: string[]): Promise<Record<string, unknown>> {
  const runs = Number(flag(flags, 'runs') ?? 3);
  const policyCount = Number(flag(flags, 'policies') ?? 20);
  const repoRoot = flag(flags, 'repo');
  const samples: IdleRssWithPolicies[] = [];
  for (let i = 0; i < runs; i++) samples.push(await measureIdleRssWithPolicies({ policyCount, ...(repoRoot ? { repoRoot } : {}) }));
  return {
    policies: policyCount,
    runs,
    ...(repoRoot ? { repo: repoRoot } : {}),
    rss_idle_with_policies_mb: median(samples.map((s) => s.idle_after_push_mb)),
    rss_after_traffic_mb: median(samples.map((s) => s.after_traffic_mb)),
    // The idle RSS by kind: `file` is mostly the node binary's pages, shared by every sidecar on a node
    // that runs the same image; `anon` is what each sidecar adds on its own.
    idle_file_mb: median(samples.map((s) => s.idle_breakdown_mb.file)),
    idle_anon_mb: median(samples.map((s) => s.idle_breakdown_mb.anon)),
    // Bare processes of the same node binary: empty, with one TLS context, and with node:http and node:http2 as well.
    runtime_floor_mb: runtimeFloorMb(),
    samples: samples.map((s) => ({ idle: s.idle_after_push_mb, after_traffic: s.after_traffic_mb, idle_breakdown: s.idle_breakdown_mb })),
  };
}
