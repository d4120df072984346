/**
 * The optional dependencies of the Trellis test suites, each with its probe
 * and the `TRELLIS_REQUIRE_*` variable `.ci/run` sets (see
 * optional-dependency.ts for the rule). Dependencies whose probe needs a
 * package's own code (the native addons, the pinned Node) are defined beside
 * their suites with the same `optionalDependency`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './cli-runner';
import { optionalDependency } from './optional-dependency';

/** The shared corpora folder: `TRELLIS_CORPORA_DIR`, else `../shared/corpora` beside the checkout. */
export const CORPORA_DIR = process.env.TRELLIS_CORPORA_DIR ?? join(REPO_ROOT, '..', 'shared', 'corpora');

/** The corpus folders the suites read (each has a SOURCE.md naming its upstream). */
const CORPUS_FOLDERS = ['go-spiffe', 'spiffe-id', 'istio-inject', 'istio-security-policies', 'k8s-admission', 'x509-limbo'];

/** Third-party test data (SPIFFE, go-spiffe, Istio, Kubernetes, x509-limbo) kept outside the repository. */
export const CORPORA = optionalDependency({
  name: 'the test corpora',
  requireEnv: 'TRELLIS_REQUIRE_CORPORA',
  probe() {
    const how = 'copy the Trellis project\'s shared/corpora folder there (CI lays it beside the checkout), or set TRELLIS_CORPORA_DIR to it';
    if (!existsSync(CORPORA_DIR)) return `not found at ${CORPORA_DIR}; ${how}`;
    const absent = CORPUS_FOLDERS.filter((f) => !existsSync(join(CORPORA_DIR, f)));
    if (absent.length > 0) return `${CORPORA_DIR} lacks ${absent.join(', ')}; ${how}`;
    return undefined;
  },
});

/** A path under the corpora folder (use inside a suite gated on CORPORA). */
export function corpusPath(...parts: string[]): string {
  return join(CORPORA_DIR, ...parts);
}

/** Reads and parses a JSON file under the corpora folder. */
export function readCorpusJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(readFileSync(corpusPath(...parts), 'utf8')) as T;
}

/** Reads a file under the corpora folder as bytes. */
export function readCorpusFile(...parts: string[]): Buffer {
  return readFileSync(corpusPath(...parts));
}

/** Where Debian's `softhsm2` package puts the PKCS#11 module (`TRELLIS_SOFTHSM_MODULE` overrides). */
export const SOFTHSM_MODULE = process.env.TRELLIS_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

/** SoftHSM2 (module and softhsm2-util) plus the pkcs11js binding, for the HSM suites. */
export const SOFTHSM = optionalDependency({
  name: 'SoftHSM2',
  requireEnv: 'TRELLIS_REQUIRE_SOFTHSM',
  probe() {
    if (!existsSync(SOFTHSM_MODULE)) return `module ${SOFTHSM_MODULE} not found (apt-get install -y softhsm2, or set TRELLIS_SOFTHSM_MODULE)`;
    const r = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return 'softhsm2-util is not runnable (apt-get install -y softhsm2)';
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('pkcs11js');
    } catch (err) {
      return `the pkcs11js binding does not load (${(err as Error).message.split('\n')[0]}; npm ci builds it)`;
    }
    return undefined;
  },
});

/** Root, Linux network namespaces and iptables usable inside them: pods for the redirect and e2e suites. */
export const NETNS = optionalDependency({
  name: 'root with network namespaces and iptables',
  requireEnv: 'TRELLIS_REQUIRE_NETNS',
  probe() {
    if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not running as root (network namespaces and iptables need it; run the suite as root)';
    for (const tool of ['ip', 'iptables', 'iptables-restore']) {
      if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (apt-get install -y iproute2 iptables)`;
    }
    // Try the real operations rather than guessing from uid: containers often refuse them.
    const probe = `trprobe${randomBytes(3).toString('hex')}`;
    const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
    if (add.status !== 0) return `the OS refused "ip netns add": ${add.stderr.trim()}`;
    const ipt = spawnSync('ip', ['netns', 'exec', probe, 'iptables', '-t', 'nat', '-L', '-n'], { encoding: 'utf8' });
    spawnSync('ip', ['netns', 'del', probe]);
    if (ipt.status !== 0) return `iptables cannot run inside a network namespace here: ${ipt.stderr.trim()}`;
    return undefined;
  },
});

/** `kubectl` (for `kubectl kustomize deploy/`). */
export const KUBECTL = optionalDependency({
  name: 'kubectl',
  requireEnv: 'TRELLIS_REQUIRE_KUBECTL',
  probe() {
    const r = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
    if (r.error) return 'kubectl is not on PATH (apt-get install -y kubernetes-client, or any kubectl 1.20+)';
    return undefined;
  },
});

/** The `openssl` command, the independent verifier of what the CA issues. */
export const OPENSSL = optionalDependency({
  name: 'openssl',
  requireEnv: 'TRELLIS_REQUIRE_OPENSSL',
  probe() {
    const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return 'the openssl command is not runnable (apt-get install -y openssl)';
    return undefined;
  },
});

/** Where Debian's `chromium` package puts the browser (`TRELLIS_CHROMIUM` overrides). */
export const CHROMIUM_PATH = process.env.TRELLIS_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Chromium for the tests that drive the dashboard in a real browser, through
 * playwright-core (which downloads no browser of its own): Debian's package,
 * headless. `.ci/run` installs it with apt.
 */
export const CHROMIUM = optionalDependency({
  name: 'Chromium',
  requireEnv: 'TRELLIS_REQUIRE_CHROMIUM',
  probe() {
    if (!existsSync(CHROMIUM_PATH)) return `${CHROMIUM_PATH} not found (apt-get install -y chromium, or set TRELLIS_CHROMIUM)`;
    try {
      require.resolve('playwright-core');
    } catch {
      return 'playwright-core is not installed (npm ci installs it)';
    }
    return undefined;
  },
});

/**
 * A system Node.js older than 24 (Debian's or the machine's own), as a
 * classical-only TLS peer (its OpenSSL 3.0 cannot do X25519MLKEM768) and to
 * show the CLI re-running itself on the pinned runtime. Not required in CI:
 * a machine may simply not have one.
 */
export const LEGACY_NODE = optionalDependency({
  name: 'a Node.js older than 24',
  requireEnv: 'TRELLIS_REQUIRE_LEGACY_NODE',
  probe() {
    return legacyNodePath() === null ? 'no Node.js older than 24 at /usr/bin/node or /usr/local/bin/node (any older system Node serves)' : undefined;
  },
});

let legacyNode: string | null | undefined;

/** The path of a system node older than 24, or null. Probed once. */
export function legacyNodePath(): string | null {
  if (legacyNode !== undefined) return legacyNode;
  legacyNode = null;
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const r = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (r.status === 0 && Number(r.stdout.split('.')[0]) < 24) {
      legacyNode = candidate;
      break;
    }
  }
  return legacyNode;
}

/**
 * Mounting a small tmpfs (root, and a kernel and container that allow
 * `mount -t tmpfs`): a real full disk for the durability suites.
 */
export const TMPFS = optionalDependency({
  name: 'mounting a tmpfs',
  requireEnv: 'TRELLIS_REQUIRE_TMPFS',
  probe() {
    if (process.platform !== 'linux') return `tmpfs mounts need Linux (this is ${process.platform})`;
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'not running as root (mount -t tmpfs needs it; run the suite as root)';
    const dir = mkdtempSync(join(tmpdir(), 'trellis-tmpfs-probe-'));
    try {
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { encoding: 'utf8' });
      if (m.status !== 0) return `the OS refused "mount -t tmpfs": ${(m.stderr || String(m.error)).trim()}`;
      spawnSync('umount', [dir]);
      return undefined;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});

/** A tmpfs of `size` (e.g. `1m`) mounted on a new temp dir; `unmount()` lazily unmounts and removes it. Needs {@link TMPFS}. */
export function mountTmpfs(size: string): { dir: string; unmount(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-tmpfs-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`mount -t tmpfs ${dir} failed: ${m.stderr.trim()}`);
  return {
    dir,
    unmount() {
      spawnSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
