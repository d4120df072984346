/**
 * A PolicySource reading `*.yaml|*.yml|*.json` policy files from a directory,
 * polled for changes. Each file keeps its last good parse: a file with errors
 * is reported in status() and its previous policies stay in force. A policy
 * without creationTimestamp is dated by its file's mtime, so replicas sharing
 * the directory build identical sets (and identical versions).
 *
 * Stop-gap until the policy engineer's PolicyStore (control-plane/src/policy)
 * is wired in; it uses only the shared parser and decisions.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildPolicySet, formatIssue, parsePolicyFile, type EffectiveMtlsMode, type Logger, type Policy, type PolicyIssue } from '@trellis/shared';
import type { PolicySource, PolicyView } from './policy-source';
import { policyViewFromSet } from './policy-view';

interface FileState {
  stamp: string;
  policies: Policy[];
  issues: PolicyIssue[];
  lastGoodAt: string | null;
}

/** Starts watching `dir`; the first load happens synchronously. */
export function policyDirSource(dir: string, opts: { rootNamespace: string; defaultMode: EffectiveMtlsMode; pollMs: number; logger: Logger }): PolicySource {
  const files = new Map<string, FileState>();
  const listeners = new Set<() => void>();
  let view: PolicyView = policyViewFromSet(buildPolicySet([]), opts);
  let dirError: string | null = null;
  let generation = 0;

  const scan = (): boolean => {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => /\.(ya?ml|json)$/.test(n)).sort();
      dirError = null;
    } catch (err) {
      dirError = `${dir}: ${(err as Error).message}`;
      return false;
    }
    let changed = false;
    for (const gone of [...files.keys()].filter((f) => !names.includes(f))) {
      files.delete(gone);
      changed = true;
    }
    for (const name of names) {
      const path = join(dir, name);
      let stamp: string;
      let mtime: Date;
      try {
        const st = statSync(path);
        stamp = `${st.mtimeMs}:${st.size}`;
        mtime = st.mtime;
      } catch {
        continue;
      }
      const prev = files.get(name);
      if (prev && prev.stamp === stamp) continue;
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        opts.logger.error('policy file unreadable; keeping its last good policies', { file: path, error: err });
        continue;
      }
      const parsed = parsePolicyFile(text, path, { firstSeen: mtime, rootNamespace: opts.rootNamespace });
      const errors = parsed.issues.filter((i) => i.severity === 'error');
      if (errors.length > 0) {
        for (const e of errors) opts.logger.error('policy file rejected; keeping its last good policies', { file: path, issue: formatIssue(e), code: e.code });
        files.set(name, { stamp, policies: prev?.policies ?? [], issues: parsed.issues, lastGoodAt: prev?.lastGoodAt ?? null });
        continue;
      }
      files.set(name, { stamp, policies: parsed.policies, issues: parsed.issues, lastGoodAt: new Date().toISOString() });
      changed = true;
    }
    if (changed) {
      view = policyViewFromSet(buildPolicySet([...files.values()].flatMap((f) => f.policies)), opts);
      generation++;
      opts.logger.info('policies loaded', { dir, files: files.size, generation });
    }
    return changed;
  };
  scan();
  const timer = setInterval(() => {
    if (scan()) for (const l of listeners) l();
  }, opts.pollMs);
  timer.unref();

  return {
    current: () => view,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    status: () => ({
      dir,
      error: dirError,
      generation,
      files: [...files.entries()].map(([name, f]) => ({
        file: name,
        policies: f.policies.map((p) => `${p.kind} ${p.metadata.namespace}/${p.metadata.name}`),
        lastGoodAt: f.lastGoodAt,
        issues: f.issues.map((i) => ({ severity: i.severity, code: i.code, line: i.line, path: i.path, message: i.message })),
      })),
    }),
    close: () => {
      clearInterval(timer);
      listeners.clear();
    },
  };
}
