/**
 * The ports a `trellis` process bound, read from what it logs.
 *
 * A port picked free by the test and handed to a child process can be taken
 * by another process before the child binds it (free-port.ts). Where the
 * process can be told port 0, it picks the port itself, and it says which in
 * one line: the control plane's ready line on stderr (`listen`, `admin`), the
 * sidecar's `"sidecar listening"` line on stderr (`inbound`, `outbound`,
 * `admin`), the injector's `injector listening on https://HOST:PORT/inject`
 * on stdout. This is the one place that reads those lines.
 */
import type { ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';

/** How long a process gets to log the line (a start takes about a second; CI's machine is loaded). */
const DEFAULT_TIMEOUT_MS = 30_000;

/** The ports a control plane bound. */
export interface ControlPlanePorts {
  /** The discovery (gRPC) port. */
  readonly listen: number;
  /** The admin HTTPS port. */
  readonly admin: number;
}

/** The ports a sidecar bound, in the order its flags gave them. */
export interface SidecarPorts {
  readonly inbound: readonly number[];
  readonly outbound: readonly number[];
  /** Undefined when it runs without an admin port. */
  readonly admin: number | undefined;
}

/** The port of a `host:port` (or `[v6]:port`) address; throws naming the address when it has none. */
export function portOf(address: string): number {
  const m = /:(\d{1,5})$/.exec(address);
  const port = m ? Number(m[1]) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`no port in the address ${JSON.stringify(address)}`);
  return port;
}

/** The ports in a control plane's ready line (`"control plane ready"`, or `"control plane started but NOT ready"`). */
export function controlPlanePortsOf(line: string): ControlPlanePorts {
  const o = parseLine(line);
  if (typeof o.listen !== 'string' || typeof o.admin !== 'string') throw new Error(`the control plane's line names no listen and admin address: ${line}`);
  return { listen: portOf(o.listen), admin: portOf(o.admin) };
}

/** The port in the injector's `injector listening on https://HOST:PORT/inject` line. */
export function injectorPortOf(line: string): number {
  const m = /injector listening on https:\/\/(\S+?)\/inject\b/.exec(line);
  if (!m) throw new Error(`not the injector's listening line: ${line}`);
  return portOf(m[1]!);
}

/** The ports in a sidecar's `"sidecar listening"` line (an inbound entry reads `host:port=appPort/suffix`). */
export function sidecarPortsOf(line: string): SidecarPorts {
  const o = parseLine(line);
  const list = (k: 'inbound' | 'outbound'): number[] => {
    const v = o[k];
    if (!Array.isArray(v) || v.some((a) => typeof a !== 'string')) throw new Error(`the sidecar's line has no ${k} list: ${line}`);
    return (v as string[]).map((a) => portOf(a.split('=')[0]!));
  };
  if (o.admin !== undefined && typeof o.admin !== 'string') throw new Error(`the sidecar's line has an admin that is not an address: ${line}`);
  return { inbound: list('inbound'), outbound: list('outbound'), admin: typeof o.admin === 'string' ? portOf(o.admin) : undefined };
}

/** Where to look for a line, and for how long. */
export interface OutputLineOptions {
  /** Default stderr (the JSON log). */
  readonly stream?: 'stderr' | 'stdout';
  readonly timeoutMs?: number;
}

/**
 * Resolves with the first line of `child`'s stderr (or stdout) that contains
 * `marker`. Call it in the same turn as the spawn (before any `await`): lines
 * read before it is called are not seen. Rejects with the stream's last lines
 * when the process ends first or the timeout passes.
 */
export function outputLine(child: ChildProcess, marker: string, opts: OutputLineOptions = {}): Promise<string> {
  const name = opts.stream ?? 'stderr';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const stream = child[name];
  if (!stream) return Promise.reject(new Error(`the process was started without a ${name} pipe`));
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const decoder = new StringDecoder('utf8');
    let buf = '';
    const done = (): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      child.off('close', onClose);
    };
    const onData = (d: Buffer | string): void => {
      buf += typeof d === 'string' ? d : decoder.write(d);
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.includes(marker)) {
          done();
          return resolve(line);
        }
        seen.push(line);
        if (seen.length > 40) seen.shift();
      }
    };
    const onClose = (code: number | null, signal: NodeJS.Signals | null): void => {
      done();
      reject(new Error(`${describe(child)} exited (${code ?? signal}) before printing ${marker} on ${name}; its last lines there:\n${[...seen, buf].join('\n')}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${describe(child)} did not print ${marker} on ${name} within ${timeoutMs / 1000} s; its last lines there:\n${seen.join('\n')}`));
    }, timeoutMs);
    stream.on('data', onData);
    child.on('close', onClose);
  });
}

/**
 * The ports a `trellis control-plane` started with port 0 bound, once it
 * logs `readyLine` (default: ready). Call it in the same turn as the spawn.
 */
export async function controlPlanePorts(child: ChildProcess, readyLine = '"control plane ready"', timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ControlPlanePorts> {
  return controlPlanePortsOf(await outputLine(child, readyLine, { timeoutMs }));
}

/**
 * The ports a `trellis sidecar` bound (give it port 0 for any of
 * `--inbound`, `--outbound`, `--admin`), once it logs that it listens.
 * Call it in the same turn as the spawn.
 */
export async function sidecarPorts(child: ChildProcess, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<SidecarPorts> {
  return sidecarPortsOf(await outputLine(child, '"msg":"sidecar listening"', { timeoutMs }));
}

/** The port a `trellis injector` started with `--listen HOST:0` bound, once it prints it. Call it in the same turn as the spawn. */
export async function injectorPort(child: ChildProcess, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<number> {
  return injectorPortOf(await outputLine(child, 'injector listening on', { stream: 'stdout', timeoutMs }));
}

function parseLine(line: string): Record<string, unknown> {
  try {
    const o = JSON.parse(line) as unknown;
    if (o !== null && typeof o === 'object' && !Array.isArray(o)) return o as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new Error(`not a JSON log line: ${line}`);
}

function describe(child: ChildProcess): string {
  const [, script, command] = child.spawnargs;
  const what = script?.endsWith('trellis.js') ? `trellis ${command}` : child.spawnfile;
  return `\`${what}\` (pid ${child.pid})`;
}
