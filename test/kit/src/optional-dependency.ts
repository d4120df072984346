/**
 * Test suites that need something `npm ci` does not bring: the third-party
 * corpora beside the checkout, SoftHSM2, root with `ip netns` and iptables,
 * a Kubernetes API server, a native addon, a browser.
 *
 * One rule for all of them. Locally, a suite whose dependency is missing is
 * skipped, and the run shows ONE line per missing dependency, saying what is
 * missing, how to get it, and how many suites it skipped (a pending test at
 * the top of the run, so mocha counts it as skipped). Under CI the dependency
 * is required: with `TRELLIS_REQUIRE_<NAME>=1` (set by `.ci/run`) each suite
 * that needs it fails instead, naming what is missing, because a skip there
 * would claim coverage nobody ran.
 *
 * Two ways in, for the two moments a suite can know:
 * - `describeWith(dep, title, fn)` / `itWith(dep, ...)` decide when the file
 *   loads, for suites that build their cases from the dependency (corpus
 *   files read at definition time); the suite body does not even run when
 *   the dependency is missing.
 * - `skipUnless(ctx, dep)` decides in a `before()` hook or a test, for suites
 *   that only touch the dependency at run time.
 */

/** Something a suite needs that may not be installed here. */
export interface OptionalDependency {
  /** What it is, in a few words: `the test corpora`, `SoftHSM2`. */
  readonly name: string;
  /** The environment variable that makes it required (`TRELLIS_REQUIRE_CORPORA`). */
  readonly requireEnv: string;
  /** Why it cannot be used here, saying how to get it; undefined when it can. Probed once. */
  missing(): string | undefined;
  /** True when `requireEnv` is `1`: a missing dependency fails the suites instead of skipping them. */
  required(): boolean;
}

/** How to probe one dependency. */
export interface OptionalDependencySpec {
  name: string;
  requireEnv: string;
  /** Returns what is missing and how to get it, or undefined when usable. Called at most once. */
  probe(): string | undefined;
}

/** Defines a dependency; its probe runs the first time a suite asks. */
export function optionalDependency(spec: OptionalDependencySpec): OptionalDependency {
  let probed = false;
  let reason: string | undefined;
  return Object.freeze({
    name: spec.name,
    requireEnv: spec.requireEnv,
    missing(): string | undefined {
      if (!probed) {
        probed = true;
        try {
          reason = spec.probe();
        } catch (err) {
          reason = `probing it failed: ${(err as Error).message}`;
        }
      }
      return reason;
    },
    required(): boolean {
      return process.env[spec.requireEnv] === '1';
    },
  });
}

type Deps = OptionalDependency | readonly OptionalDependency[];

/** The first dependency in `deps` that is missing here, with its reason. */
function firstMissing(deps: Deps): { dep: OptionalDependency; reason: string } | undefined {
  for (const dep of Array.isArray(deps) ? (deps as readonly OptionalDependency[]) : [deps as OptionalDependency]) {
    const reason = dep.missing();
    if (reason !== undefined) return { dep, reason };
  }
  return undefined;
}

/** The message a required-but-missing dependency fails with. */
function requiredMessage(dep: OptionalDependency, reason: string): string {
  return `${dep.requireEnv}=1 but ${dep.name} cannot be used here: ${reason}`;
}

/** The one pending test per skipped dependency, with how many suites it stands for. */
const skipLines = new Map<string, { test: Mocha.Test; suites: number; reason: string }>();
/** Dependencies already announced at run time by skipUnless (one console line each). */
const announced = new Set<string>();

function skipLine(dep: OptionalDependency, reason: string, suites: number): string {
  return `skipped ${suites} suite${suites === 1 ? '' : 's'} needing ${dep.name}: ${reason} (${dep.requireEnv}=1 makes this a failure)`;
}

/** Records one more suite skipped for `dep`, adding or retitling its single line at the top of the run. */
function recordSkip(dep: OptionalDependency, reason: string): void {
  const entry = skipLines.get(dep.name);
  if (entry) {
    entry.suites++;
    entry.test.title = skipLine(dep, entry.reason, entry.suites);
    return;
  }
  // A pending test (no function), moved to the root suite so it prints once, unindented, before the suites run.
  const test = it(skipLine(dep, reason, 1));
  const parent = test.parent;
  if (parent && !parent.root) {
    parent.tests.splice(parent.tests.indexOf(test), 1);
    let root: Mocha.Suite = parent;
    while (root.parent) root = root.parent;
    root.addTest(test);
  }
  skipLines.set(dep.name, { test, suites: 1, reason });
}

/**
 * `describe(title, fn)` when every dependency in `deps` is usable here.
 * Otherwise `fn` never runs: the suite is counted in its dependency's one
 * skip line, or, when that dependency is required, replaced by a suite with
 * one failing test that says what is missing.
 */
export function describeWith(deps: Deps, title: string, fn: (this: Mocha.Suite) => void): void {
  const miss = firstMissing(deps);
  if (!miss) {
    describe(title, fn);
    return;
  }
  if (miss.dep.required()) {
    describe(title, () => {
      it(`Should have ${miss.dep.name}`, () => {
        throw new Error(requiredMessage(miss.dep, miss.reason));
      });
    });
    return;
  }
  recordSkip(miss.dep, miss.reason);
}

/** `it(title, fn)` when every dependency in `deps` is usable; otherwise as describeWith does for a suite. */
export function itWith(deps: Deps, title: string, fn: Mocha.Func | Mocha.AsyncFunc): void {
  const miss = firstMissing(deps);
  if (!miss) {
    it(title, fn);
    return;
  }
  if (miss.dep.required()) {
    it(title, () => {
      throw new Error(requiredMessage(miss.dep, miss.reason));
    });
    return;
  }
  recordSkip(miss.dep, miss.reason);
}

/**
 * For a `before()` hook or a test: returns when every dependency is usable;
 * throws when a missing one is required; otherwise prints the one line for
 * that dependency (the first time in this run) and skips (`ctx.skip()`).
 */
export function skipUnless(ctx: Mocha.Context, deps: Deps): void {
  const miss = firstMissing(deps);
  if (!miss) return;
  if (miss.dep.required()) throw new Error(requiredMessage(miss.dep, miss.reason));
  if (!announced.has(miss.dep.name) && !skipLines.has(miss.dep.name)) {
    announced.add(miss.dep.name);
    // eslint-disable-next-line no-console
    console.log(`  - skipping what needs ${miss.dep.name}: ${miss.reason} (${miss.dep.requireEnv}=1 makes this a failure)`);
  }
  ctx.skip();
}
