/**
 * Pods as Linux network namespaces, for end-to-end tests.
 *
 * A `PodNetwork` is a bridge in the root namespace with an address of its own
 * (the "node"), and each pod is a namespace with a veth pair onto that bridge
 * and an address on the same subnet. Everything is named with a per-run
 * suffix and removed by `destroy()`, so parallel or aborted runs don't clash.
 * Needs root, iproute2 and iptables: gate suites on @trellis/testkit's NETNS.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Pod {
  name: string;
  /** Namespace name, for `ip netns exec`. */
  netns: string;
  ip: string;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
}

/** A bridge plus pods on one /24. */
export class PodNetwork {
  readonly id = randomBytes(3).toString('hex');
  readonly bridge = `trbr${this.id}`;
  /** The root namespace's address on the bridge (where the control plane listens). */
  readonly hostIp: string;
  private readonly pods: Pod[] = [];
  private readonly children: ChildProcess[] = [];

  /** `subnet` is the first three octets, e.g. `10.231.7`. */
  constructor(private readonly subnet: string) {
    this.hostIp = `${subnet}.1`;
  }

  /** Creates the bridge. */
  create(): void {
    run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${this.hostIp}/24`, 'dev', this.bridge]);
    run('ip', ['link', 'set', this.bridge, 'up']);
  }

  /** Adds a pod namespace with its own address on the bridge. */
  addPod(name: string): Pod {
    const n = this.pods.length + 10;
    const netns = `tr${this.id}${name}`.slice(0, 30);
    const hostVeth = `trv${this.id}${n}`;
    const ip = `${this.subnet}.${n}`;
    run('ip', ['netns', 'add', netns]);
    run('ip', ['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    run('ip', ['link', 'set', hostVeth, 'master', this.bridge, 'up']);
    run('ip', ['netns', 'exec', netns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    run('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'eth0', 'up']);
    run('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
    run('ip', ['netns', 'exec', netns, 'ip', 'route', 'add', 'default', 'via', this.hostIp]);
    const pod = { name, netns, ip };
    this.pods.push(pod);
    return pod;
  }

  /** Runs a command to completion inside `pod`. */
  execSync(pod: Pod, cmd: string, args: string[]): { status: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', pod.netns, cmd, ...args], { encoding: 'utf8', timeout: 60_000 });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Starts a long-running command inside `pod`; it is killed by `destroy()`. */
  spawn(pod: Pod, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', pod.netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.push(child);
    return child;
  }

  /** Kills every child started here and removes the pods and the bridge. */
  async destroy(): Promise<void> {
    await Promise.all(
      this.children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    for (const pod of this.pods) spawnSync('ip', ['netns', 'del', pod.netns]);
    spawnSync('ip', ['link', 'del', this.bridge]);
  }
}
