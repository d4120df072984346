/**
 * `trellis ca new-intermediate | prepare-intermediate | sign-intermediate |
 * activate-intermediate | rotate-root | status`: the CA's life after
 * `ca init`. Wiring only; the behaviour lives in @trellis/control-plane's
 * lifecycle module.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  activateNextIntermediate,
  adminRequest,
  type AdminTarget,
  caStatusView,
  type CaStatusView,
  CA_KEY_TYPES,
  createEnvironmentIntermediate,
  ensureNewRoot,
  installNextIntermediate,
  loadRootRotationState,
  loadRootSigner,
  prepareNextIntermediate,
  proxiesFromAdmin,
  readBundleRoots,
  signIntermediateCsr,
  signNextIntermediateWithRoot,
  signRootRotationCsr,
  signRootRotationProof,
  startRootRotationWithRootDir,
  stepRootRotation,
  type CaKeyType,
  type ObservedProxy,
  withLifecycleLock,
  type RotationStep,
} from '@trellis/control-plane';
import { DurationError, parseDurationSeconds, UsageError } from '@trellis/shared';
import { ADMIN_CREDENTIALS_OPTION, adminTarget } from '../admin-target';
import type { Command, CommandContext } from '../command';
import { flag, optionalString, outputFormat, requiredString } from '../flags';

/** How long a command waits for the control plane's lifecycle step on the same CA dir to finish. */
const LOCK_WAIT_MS = 10_000;

function pathFlag(ctx: CommandContext, name: string): string {
  return resolve(ctx.cwd, requiredString(ctx, name));
}

function keyTypeFlag(ctx: CommandContext): CaKeyType | undefined {
  const v = optionalString(ctx, 'key-type');
  if (v === undefined) return undefined;
  if (!(CA_KEY_TYPES as readonly string[]).includes(v)) throw new UsageError(`--key-type must be one of ${CA_KEY_TYPES.join(', ')}, got "${v}"`, { flag: 'key-type' });
  return v as CaKeyType;
}

function daysFlag(ctx: CommandContext, name: string): number | undefined {
  const v = optionalString(ctx, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 36_500) throw new UsageError(`--${name} must be a whole number of days between 1 and 36500, got "${v}"`, { flag: name });
  return n;
}

function readInput(ctx: CommandContext, name: string): { path: string; text: string } {
  const path = pathFlag(ctx, name);
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    throw new UsageError(`--${name} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { flag: name });
  }
}

/** The connected sidecars' bundle ACKs from the control plane's admin endpoint; null when it cannot be asked. */
export async function observeProxies(ctx: CommandContext, target: AdminTarget | undefined): Promise<ObservedProxy[] | null> {
  if (target === undefined) return null;
  try {
    return proxiesFromAdmin(await adminRequest<unknown>(target, 'GET', '/debug/proxies', undefined, 5000));
  } catch (err) {
    ctx.stderr.write(`warning: cannot read the sidecars from the admin endpoint ${target.address} (${(err as Error).message}); sidecar ACKs unknown\n`);
    return null;
  }
}

/** `--admin` as a target with credentials, or undefined without --admin. */
function optionalAdmin(ctx: CommandContext): AdminTarget | undefined {
  const admin = optionalString(ctx, 'admin');
  return admin === undefined ? undefined : adminTarget(ctx, admin);
}

function printStep(ctx: CommandContext, caDir: string, step: RotationStep): void {
  if (outputFormat(ctx) === 'json') {
    ctx.stdout.write(JSON.stringify({ phase: step.state.phase, applied: step.applied, waitingFor: step.decision.waitingFor, laggingProxies: step.decision.laggingProxies, startedAt: step.state.startedAt, phaseSince: step.state.phaseSince, switchedAt: step.state.switchedAt, roots: readBundleRoots(caDir).length }) + '\n');
    return;
  }
  const applied = step.applied === 'switch-intermediate' ? 'switched to an intermediate under the new root; sidecars renew onto it\n'
    : step.applied === 'drop-old-root' ? 'dropped the old root from the trust bundle\n' : '';
  ctx.stdout.write(applied + `root rotation phase: ${step.state.phase}\n` + (step.decision.waitingFor ? `  waiting for: ${step.decision.waitingFor}\n` : step.state.phase === 'done' ? '  rotation complete\n' : ''));
  for (const p of step.decision.laggingProxies.slice(0, 20)) ctx.stdout.write(`  not yet ACKed: proxy ${p.id} ${p.spiffeId ?? '(unauthenticated)'} holds ${p.bundleAckedVersion ?? 'nothing'}\n`);
}

/** The CA lifecycle commands. */
export const commands: Command[] = [
  {
    name: 'ca new-intermediate',
    summary: 'Create a separate CA dir for one environment (dev, staging, prod) under a root',
    usage: 'trellis ca new-intermediate --root-dir DIR --out-dir DIR --name prod [--trust-domain cluster.local] [--key-type ec-p256|ec-p384|rsa-2048] [--validity-days 365] [--force]',
    description: `--root-dir holds root.pem and root.key (run this where the root lives). --out-dir becomes a
complete CA dir for the control plane of that environment: the root certificate (not its key),
a fresh intermediate key (0600) and certificate, chain.pem and environment.json. Each
environment has its own intermediate, so one environment's compromise does not reach the others.`,
    options: { 'root-dir': { type: 'string' }, 'out-dir': { type: 'string' }, name: { type: 'string' }, 'trust-domain': { type: 'string' }, 'key-type': { type: 'string' }, 'validity-days': { type: 'string' }, force: { type: 'boolean' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const r = await createEnvironmentIntermediate(pathFlag(ctx, 'root-dir'), pathFlag(ctx, 'out-dir'), {
        name: requiredString(ctx, 'name'),
        trustDomain: optionalString(ctx, 'trust-domain'),
        keyType: keyTypeFlag(ctx),
        validityDays: daysFlag(ctx, 'validity-days'),
        now: new Date(),
        force: flag(ctx, 'force'),
      });
      if (outputFormat(ctx) === 'json') {
        ctx.stdout.write(JSON.stringify(r) + '\n');
        return;
      }
      ctx.stdout.write(`created intermediate for environment ${r.name} (trust domain ${r.trustDomain}) in ${r.dir}\n  valid until ${r.intermediateNotAfter.toISOString()}\n  files: ${r.files.join(', ')}\n`);
    },
  },
  {
    name: 'ca prepare-intermediate',
    summary: 'Prepare the next intermediate (key + CSR in DIR/next/), and sign it when the root is at hand',
    usage: 'trellis ca prepare-intermediate --dir DIR [--root-dir DIR] [--validity-days 365] [--key-type ...] [--force]',
    description: `Writes DIR/next/intermediate.key (0600) and DIR/next/intermediate.csr for the same trust
domain as the current intermediate; an already prepared slot is kept unless --force.
With --root-dir (development, or an online root) the CSR is signed and installed at once;
otherwise take the CSR to the root and run "trellis ca sign-intermediate" there.`,
    options: { dir: { type: 'string' }, 'root-dir': { type: 'string' }, 'validity-days': { type: 'string' }, 'key-type': { type: 'string' }, force: { type: 'boolean' } },
    async run(ctx) {
      const dir = pathFlag(ctx, 'dir');
      const rootDir = optionalString(ctx, 'root-dir');
      const keyType = keyTypeFlag(ctx);
      const validityDays = daysFlag(ctx, 'validity-days');
      const { prepared, cert } = await withLifecycleLock(dir, async () => {
        const p = await prepareNextIntermediate(dir, { keyType, force: flag(ctx, 'force') });
        const c = rootDir === undefined ? null : await signNextIntermediateWithRoot(dir, resolve(ctx.cwd, rootDir), { now: new Date(), validityDays });
        return { prepared: p, cert: c };
      }, { waitMs: LOCK_WAIT_MS });
      if (cert) {
        ctx.stdout.write(`next intermediate signed and ready, valid until ${cert.facts.notAfter.toISOString()}\n  activate it: trellis ca activate-intermediate --dir ${dir}\n`);
        return;
      }
      ctx.stdout.write(`${prepared.created ? 'prepared' : 'already prepared'}: ${prepared.csrPath}\n  sign it where the root lives: trellis ca sign-intermediate --root-dir ROOT_DIR --csr ${prepared.csrPath} --out next.pem\n  then: trellis ca activate-intermediate --dir ${dir} --cert next.pem\n`);
    },
  },
  {
    name: 'ca sign-intermediate',
    summary: 'Sign an intermediate CSR with the (offline) root',
    usage: 'trellis ca sign-intermediate --root-dir DIR --csr FILE [--out FILE] [--trust-domain TD] [--validity-days 365]',
    description: `Run wherever root.pem and root.key live. The CSR must carry exactly one URI SAN
spiffe://<trust-domain> (and that one, with --trust-domain); the certificate gets the
intermediate profile (CA:true pathLen 0, keyCertSign + cRLSign) whatever else the CSR asks,
never outlives the root, and is verified against the root before it is written.`,
    options: { 'root-dir': { type: 'string' }, csr: { type: 'string' }, out: { type: 'string' }, 'trust-domain': { type: 'string' }, 'validity-days': { type: 'string' } },
    async run(ctx) {
      const csr = readInput(ctx, 'csr');
      const now = new Date();
      const root = await loadRootSigner(pathFlag(ctx, 'root-dir'), now);
      const signed = await signIntermediateCsr(root, csr.text, { now, validityDays: daysFlag(ctx, 'validity-days'), source: csr.path, expectTrustDomain: optionalString(ctx, 'trust-domain') });
      const out = optionalString(ctx, 'out');
      if (out === undefined) {
        ctx.stdout.write(signed.certPem);
        return;
      }
      writeFileSync(resolve(ctx.cwd, out), signed.certPem, { mode: 0o644 });
      ctx.stdout.write(`signed intermediate for ${signed.trustDomain}, valid until ${signed.notAfter.toISOString()}: ${resolve(ctx.cwd, out)}\n`);
    },
  },
  {
    name: 'ca activate-intermediate',
    summary: 'Install the signed next intermediate and make it the one the CA issues from',
    usage: 'trellis ca activate-intermediate --dir DIR [--cert FILE] [--when-due]',
    description: `--cert installs the certificate signed from DIR/next/intermediate.csr first (it must
match the prepared key and chain to DIR/root.pem). Without --when-due the switch happens now;
with it, only once the current intermediate is past five sixths of its life. The replaced
certificate moves to DIR/previous/; leaves it issued keep verifying until they expire.`,
    options: { dir: { type: 'string' }, cert: { type: 'string' }, 'when-due': { type: 'boolean' } },
    async run(ctx) {
      const dir = pathFlag(ctx, 'dir');
      const now = new Date();
      const cert = optionalString(ctx, 'cert') !== undefined ? readInput(ctx, 'cert') : null;
      const r = await withLifecycleLock(dir, () => {
        if (cert) installNextIntermediate(dir, cert.text, { now, source: cert.path });
        return activateNextIntermediate(dir, { now, force: !flag(ctx, 'when-due') });
      }, { waitMs: LOCK_WAIT_MS });
      if (!r.activated) {
        ctx.stdout.write(`not activated: ${r.decision.reason}${r.decision.at ? ` (due ${r.decision.at.toISOString()})` : ''}\n`);
        return;
      }
      ctx.stdout.write(`activated: new leaves now come from the intermediate valid until ${r.current.facts.notAfter.toISOString()}\n`);
    },
  },
  {
    name: 'ca rotate-root',
    summary: 'Start or advance a gated root rotation (new root in the bundle, switch, drop the old root)',
    usage: 'trellis ca rotate-root --admin ADDR [--admin-credentials DIR] [--root-dir NEW_ROOT_DIR] [--current-root-dir DIR] [--key-type ec-p256|ec-p384|rsa-2048] [--reload-grace 60s] [--wait] [--poll 5s] [-o json]\n       trellis ca rotate-root --ca-dir DIR [--root-dir NEW_ROOT_DIR] [--admin ADDR] [--reload-grace 60s] [--wait] [--poll 5s] [-o json]',
    description: `The first run adds the new root (read from --root-dir, or created there, on THIS machine) beside
the old one in the CA's root.pem, with the next intermediate it signed waiting in next/. Each later
run advances one phase when its gate is met, observed, never assumed:
  1 bundle  every sidecar connected to --admin has ACKed the bundle holding both roots
  2 renew   the CA issues under the new root; waits until no leaf issued before the switch
            (+ --reload-grace, the control plane's refresh interval) is unexpired (audit.log)
  3 done    the old root is dropped from the bundle
State is root-rotation.json in the CA dir, so a restart (of anything) resumes. --wait keeps
advancing until done, polling every --poll.
With --admin ADDR alone, the running control plane starts or advances the rotation of its own CA
dir, gated on the ACKs it observes itself. The new root's key never leaves --root-dir: this command
fetches the CSR of the next intermediate, signs it with the new root here and sends certificates
only. --current-root-dir (where the current root.pem and root.key are) signs that material as proof
that you hold the current root, which the control plane requires unless it runs with
--root-rotation-auth admin-identity. Needs admin credentials (--admin-credentials DIR or
TRELLIS_ADMIN_CREDENTIALS). With --ca-dir, this command writes DIR itself and --admin only
reports the sidecars' ACKs.`,
    options: { ...ADMIN_CREDENTIALS_OPTION, 'ca-dir': { type: 'string' }, 'root-dir': { type: 'string' }, 'current-root-dir': { type: 'string' }, admin: { type: 'string' }, 'reload-grace': { type: 'string' }, wait: { type: 'boolean' }, poll: { type: 'string' }, 'key-type': { type: 'string' }, 'validity-days': { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const seconds = (name: string, dflt: number): number => {
        const v = optionalString(ctx, name);
        if (v === undefined) return dflt;
        try {
          return parseDurationSeconds(v, `--${name}`);
        } catch (err) {
          if (err instanceof DurationError) throw new UsageError(err.message, { flag: name });
          throw err;
        }
      };
      const pollMs = seconds('poll', 5) * 1000;
      const pause = (): Promise<void> => new Promise<void>((r) => {
        const t = setTimeout(r, pollMs);
        ctx.stopSignal.addEventListener('abort', () => {
          clearTimeout(t);
          r();
        }, { once: true });
      });
      const grace = optionalString(ctx, 'reload-grace') === undefined ? undefined : seconds('reload-grace', 60);
      if (optionalString(ctx, 'ca-dir') === undefined && optionalString(ctx, 'admin') !== undefined) {
        let target = adminTarget(ctx, requiredString(ctx, 'admin'));
        let body: Record<string, unknown> = {};
        const status = await adminRequest<CaStatusView>(target, 'GET', '/lifecycle/status');
        const running = status.rootRotation !== null && status.rootRotation.phase !== 'done';
        if (!running) {
          const rootDir = optionalString(ctx, 'root-dir');
          if (rootDir === undefined) throw new UsageError('--root-dir is required to start a root rotation (where the new root is, or will be created)', { flag: 'root-dir' });
          const now = new Date();
          const prepared = await adminRequest<{ trustDomain: string; csrPem: string; rootProof: 'required' | 'optional' }>(target, 'POST', '/lifecycle/rotate-root/prepare', {});
          const currentRootDir = optionalString(ctx, 'current-root-dir');
          if (currentRootDir === undefined && prepared.rootProof === 'required') {
            throw new UsageError('this control plane starts a root rotation only with proof that you hold the current root: give --current-root-dir DIR (the current root.pem and root.key)', { flag: 'current-root-dir' });
          }
          const currentRoot = currentRootDir === undefined ? undefined : await loadRootSigner(resolve(ctx.cwd, currentRootDir), now);
          const newRoot = await ensureNewRoot(resolve(ctx.cwd, rootDir), { trustDomain: prepared.trustDomain, now, keyType: keyTypeFlag(ctx) });
          const material = await signRootRotationCsr(newRoot, prepared.csrPem, { trustDomain: prepared.trustDomain, now, validityDays: daysFlag(ctx, 'validity-days') });
          const proof = currentRoot === undefined ? undefined : await signRootRotationProof(material, currentRoot, { trustDomain: prepared.trustDomain, now });
          body = { ...material, proof, reloadGraceSeconds: grace };
          // Once the CA switches, the control plane serves a certificate under the new root.
          target = { ...target, extraRootsPem: [material.newRootPem] };
        } else if (optionalString(ctx, 'root-dir') !== undefined) {
          ctx.stderr.write(`a root rotation started at ${status.rootRotation!.startedAt} is in phase ${status.rootRotation!.phase}: advancing it (--root-dir is not used)\n`);
        }
        for (;;) {
          const step = await adminRequest<AdminRotationStep>(target, 'POST', '/lifecycle/rotate-root', body);
          body = {};
          if (step.started) ctx.stderr.write(`root rotation started at ${step.startedAt}: the bundle now holds ${step.roots} roots\n`);
          if (!flag(ctx, 'wait') || step.phase === 'done' || ctx.stopSignal.aborted) {
            printAdminStep(ctx, step);
            return;
          }
          if (step.applied !== 'none') printAdminStep(ctx, step);
          await pause();
        }
      }
      const caDir = pathFlag(ctx, 'ca-dir');
      const observed = optionalAdmin(ctx);
      const state = loadRootRotationState(caDir);
      if (!state || state.phase === 'done') {
        const rootDir = optionalString(ctx, 'root-dir');
        if (rootDir === undefined) throw new UsageError('--root-dir is required to start a root rotation (where the new root is, or will be created)', { flag: 'root-dir' });
        const started = await startRootRotationWithRootDir(caDir, resolve(ctx.cwd, rootDir), { now: new Date(), keyType: keyTypeFlag(ctx), reloadGraceSeconds: grace ?? 60, lockWaitMs: LOCK_WAIT_MS, validityDays: daysFlag(ctx, 'validity-days') });
        ctx.stderr.write(`root rotation started at ${started.startedAt}: the bundle now holds ${readBundleRoots(caDir).length} roots\n`);
      }
      for (;;) {
        const step = await stepRootRotation(caDir, await observeProxies(ctx, observed), new Date(), { lockWaitMs: LOCK_WAIT_MS });
        if (!flag(ctx, 'wait') || step.state.phase === 'done' || ctx.stopSignal.aborted) {
          printStep(ctx, caDir, step);
          return;
        }
        if (step.applied !== 'none') printStep(ctx, caDir, step);
        await pause();
      }
    },
  },
  {
    name: 'ca reissue',
    summary: 'Make sidecars renew with fresh keys now, spread over a jitter window (suspected key compromise)',
    usage: 'trellis ca reissue --admin ADDR [--admin-credentials DIR] (--all | --spiffe-id ID) [--window 60s] [-o json]',
    description: `The control plane tells every matching connected sidecar (and any that connects later,
while the order lasts) to renew with a fresh key by its own instant inside --window, so the CA
is not stormed. A sidecar whose certificate was issued after the order is left alone. The old
certificates stay valid until they expire; revoke them (trellis revoke) to refuse them now.
Needs admin credentials (--admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS).`,
    options: { ...ADMIN_CREDENTIALS_OPTION, admin: { type: 'string' }, all: { type: 'boolean' }, 'spiffe-id': { type: 'string' }, window: { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const admin = requiredString(ctx, 'admin');
      const spiffeId = optionalString(ctx, 'spiffe-id');
      if (flag(ctx, 'all') === (spiffeId !== undefined)) throw new UsageError('give exactly one of --all or --spiffe-id', { flag: 'all' });
      let windowSeconds = 60;
      const w = optionalString(ctx, 'window');
      if (w !== undefined) {
        try {
          windowSeconds = parseDurationSeconds(w, '--window');
        } catch (err) {
          if (err instanceof DurationError) throw new UsageError(err.message, { flag: 'window' });
          throw err;
        }
      }
      const r = await adminRequest<{ sidecars: number; renewBy: { earliest: string | null; latest: string | null } }>(adminTarget(ctx, admin), 'POST', '/lifecycle/reissue', spiffeId !== undefined ? { spiffeId, windowSeconds } : { all: true, windowSeconds });
      if (outputFormat(ctx) === 'json') {
        ctx.stdout.write(JSON.stringify(r) + '\n');
        return;
      }
      ctx.stdout.write(`re-issue ordered: ${r.sidecars} connected sidecar(s) renew with fresh keys${r.renewBy.earliest ? ` between ${r.renewBy.earliest} and ${r.renewBy.latest}` : ''}\n`);
    },
  },
  {
    name: 'ca status',
    summary: 'Show the CA: roots, intermediate slots and any root rotation with what it waits for',
    usage: 'trellis ca status --admin ADDR [--admin-credentials DIR] [-o json]\n       trellis ca status --ca-dir DIR [--admin ADDR] [-o json]',
    description: `With --admin ADDR alone, the running control plane reports its own CA dir and the ACKs it
observes; with --ca-dir, this command reads DIR (and --admin only for the sidecars' ACKs).
--admin needs admin credentials (--admin-credentials DIR or TRELLIS_ADMIN_CREDENTIALS).`,
    options: { ...ADMIN_CREDENTIALS_OPTION, 'ca-dir': { type: 'string' }, admin: { type: 'string' }, output: { type: 'string', short: 'o' } },
    async run(ctx) {
      const admin = optionalString(ctx, 'admin');
      const local = optionalString(ctx, 'ca-dir') !== undefined || admin === undefined;
      const target = optionalAdmin(ctx);
      const view = local
        ? caStatusView(pathFlag(ctx, 'ca-dir'), await observeProxies(ctx, target), new Date())
        : await adminRequest<CaStatusView>(target!, 'GET', '/lifecycle/status');
      if (outputFormat(ctx) === 'json') {
        ctx.stdout.write(JSON.stringify(view) + '\n');
        return;
      }
      const rotation = view.rootRotation;
      let out = `trust domain ${view.trustDomain}\n`;
      for (const r of view.roots) out += `  root          ${r.notAfter}  ${r.subject}\n`;
      out += `  intermediate  ${view.intermediate.notAfter}  ${view.intermediate.subject}\n`;
      out += `  next          ${view.next.state}${view.next.notAfter ? ` (valid until ${view.next.notAfter})` : ''}\n`;
      if (rotation) {
        out += `root rotation: phase ${rotation.phase} since ${rotation.phaseSince}\n`;
        if (rotation.waitingFor) out += `  waiting for: ${rotation.waitingFor}\n`;
        else if (rotation.nextAction !== 'none') out += `  ready to advance (${rotation.nextAction}): run trellis ca rotate-root ${local ? `--ca-dir ${pathFlag(ctx, 'ca-dir')}` : `--admin ${admin!}`}\n`;
      } else out += 'root rotation: none\n';
      ctx.stdout.write(out);
    },
  },
];

/** What `POST /lifecycle/rotate-root` answers. */
interface AdminRotationStep {
  started: boolean;
  phase: string;
  applied: string;
  waitingFor: string;
  laggingProxies: Array<{ id: string | number; spiffeId: string | null; bundleAckedVersion: string | null }>;
  startedAt: string;
  phaseSince: string;
  switchedAt: string | null;
  roots: number;
}

function printAdminStep(ctx: CommandContext, step: AdminRotationStep): void {
  if (outputFormat(ctx) === 'json') {
    ctx.stdout.write(JSON.stringify({ phase: step.phase, applied: step.applied, waitingFor: step.waitingFor, laggingProxies: step.laggingProxies, startedAt: step.startedAt, phaseSince: step.phaseSince, switchedAt: step.switchedAt, roots: step.roots }) + '\n');
    return;
  }
  const applied = step.applied === 'switch-intermediate' ? 'switched to an intermediate under the new root; sidecars renew onto it\n'
    : step.applied === 'drop-old-root' ? 'dropped the old root from the trust bundle\n' : '';
  ctx.stdout.write(applied + `root rotation phase: ${step.phase}\n` + (step.waitingFor ? `  waiting for: ${step.waitingFor}\n` : step.phase === 'done' ? '  rotation complete\n' : ''));
  for (const p of step.laggingProxies.slice(0, 20)) ctx.stdout.write(`  not yet ACKed: proxy ${p.id} ${p.spiffeId ?? '(unauthenticated)'} holds ${p.bundleAckedVersion ?? 'nothing'}\n`);
}
