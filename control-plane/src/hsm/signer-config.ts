/**
 * The HSM signer's configuration: the `signer.yaml` file in a CA dir, parsed
 * once into a frozen object, and the PIN lookup.
 *
 * ```yaml
 * type: pkcs11
 * module: /usr/lib/softhsm/libsofthsm2.so
 * tokenLabel: trellis          # or slot: 0
 * keyLabel: trellis-intermediate
 * keyId: 01a2                  # optional, hex CKA_ID
 * pinFile: hsm.pin             # or pinEnv: TRELLIS_HSM_PIN
 * keyType: ec-p256             # what `trellis hsm keygen` generates
 * sessions: 4                  # concurrent signing sessions
 * ```
 *
 * The PIN itself is never in this file, never a command-line flag value and
 * never logged: only where to find it.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { CA_KEY_TYPES, type CaKeyType } from '../ca/key-types';
import { HsmError, HsmErrorCode } from './hsm-error';

/** The file name of the signer configuration inside a CA dir. */
export const SIGNER_CONFIG_FILE = 'signer.yaml';

/** Where the PIN comes from: a file (first line) or an environment variable. */
export type PinSource = { readonly file: string } | { readonly env: string };

/** A validated PKCS#11 signer configuration. Paths are absolute. */
export interface Pkcs11SignerConfig {
  readonly type: 'pkcs11';
  /** Path of the PKCS#11 module (shared library). */
  readonly module: string;
  /** Token label to find the slot by; exactly one of tokenLabel / slot. */
  readonly tokenLabel?: string;
  /** Slot ID; exactly one of tokenLabel / slot. */
  readonly slot?: number;
  /** CKA_LABEL of the key pair. */
  readonly keyLabel: string;
  /** CKA_ID of the key pair (hex), to pick among keys sharing a label. */
  readonly keyId?: string;
  readonly pin: PinSource;
  /** Key type `trellis hsm keygen` generates; default ec-p256. */
  readonly keyType: CaKeyType;
  /** Signing sessions kept open (concurrent signatures); default 4. */
  readonly sessions: number;
}

const KNOWN = new Set(['type', 'module', 'tokenLabel', 'slot', 'keyLabel', 'keyId', 'pinFile', 'pinEnv', 'keyType', 'sessions']);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Validates a signer configuration object (already parsed from YAML/JSON).
 * Collects every problem with its field and throws one BAD_CONFIG naming
 * `source` and all of them. Relative `module`/`pinFile` paths resolve against
 * `baseDir` (the directory of the file).
 */
export function parseSignerConfig(input: unknown, source: string, baseDir: string): Pkcs11SignerConfig {
  const problems: string[] = [];
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new HsmError(HsmErrorCode.BAD_CONFIG, `${source}: expected a mapping of signer settings`, { file: source, problems: ['(root): expected a mapping'] });
  }
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k) && k !== 'pin') problems.push(`${k}: unknown field`);
  const str = (k: string, required: boolean): string | undefined => {
    const v = o[k];
    if (v === undefined || v === null) {
      if (required) problems.push(`${k}: required`);
      return undefined;
    }
    if (typeof v !== 'string' || v.trim() === '') {
      problems.push(`${k}: must be a non-empty string`);
      return undefined;
    }
    return v;
  };
  if (o.type !== 'pkcs11') problems.push(`type: must be "pkcs11"${o.type === undefined ? ' (required)' : `, got ${JSON.stringify(o.type)}`}`);
  const module = str('module', true);
  const tokenLabel = str('tokenLabel', false);
  let slot: number | undefined;
  if (o.slot !== undefined && o.slot !== null) {
    if (typeof o.slot !== 'number' || !Number.isSafeInteger(o.slot) || o.slot < 0) problems.push('slot: must be a non-negative integer');
    else slot = o.slot;
  }
  if ((tokenLabel === undefined) === (slot === undefined) && !problems.some((p) => p.startsWith('tokenLabel') || p.startsWith('slot'))) {
    problems.push('tokenLabel/slot: set exactly one of them');
  }
  if (tokenLabel !== undefined && Buffer.byteLength(tokenLabel) > 32) problems.push('tokenLabel: at most 32 bytes (PKCS#11 token labels are 32 bytes)');
  const keyLabel = str('keyLabel', true);
  const keyId = str('keyId', false);
  if (keyId !== undefined && !/^([0-9a-fA-F]{2})+$/.test(keyId)) problems.push('keyId: must be an even number of hex digits');
  const pinFile = str('pinFile', false);
  const pinEnv = str('pinEnv', false);
  if (pinFile === undefined && pinEnv === undefined && !problems.some((p) => p.startsWith('pin'))) problems.push('pinFile/pinEnv: set one of them (the PIN is never written in this file)');
  if (pinFile !== undefined && pinEnv !== undefined) problems.push('pinFile/pinEnv: set only one of them');
  if (pinEnv !== undefined && !ENV_NAME.test(pinEnv)) problems.push('pinEnv: must be an environment variable name');
  if ('pin' in o) problems.push('pin: a PIN must not be written in the config; use pinFile or pinEnv');
  let keyType: CaKeyType = 'ec-p256';
  if (o.keyType !== undefined) {
    if (typeof o.keyType !== 'string' || !(CA_KEY_TYPES as readonly string[]).includes(o.keyType)) problems.push(`keyType: must be one of ${CA_KEY_TYPES.join(', ')}`);
    else keyType = o.keyType as CaKeyType;
  }
  let sessions = 4;
  if (o.sessions !== undefined) {
    if (typeof o.sessions !== 'number' || !Number.isInteger(o.sessions) || o.sessions < 1 || o.sessions > 64) problems.push('sessions: must be an integer 1..64');
    else sessions = o.sessions;
  }
  if (problems.length > 0) {
    throw new HsmError(HsmErrorCode.BAD_CONFIG, `${source}: ${problems.join('; ')}`, { file: source, problems });
  }
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return Object.freeze({
    type: 'pkcs11' as const,
    module: abs(module!),
    ...(tokenLabel !== undefined ? { tokenLabel } : {}),
    ...(slot !== undefined ? { slot } : {}),
    keyLabel: keyLabel!,
    ...(keyId !== undefined ? { keyId: keyId.toLowerCase() } : {}),
    pin: Object.freeze(pinFile !== undefined ? { file: abs(pinFile) } : { env: pinEnv! }),
    keyType,
    sessions,
  });
}

/** Reads and validates a signer config file (YAML or JSON). BAD_CONFIG names the file and every problem. */
export function readSignerConfigFile(path: string): Pkcs11SignerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new HsmError(HsmErrorCode.BAD_CONFIG, `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { file: path }, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const pos = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
    const where = pos ? `:${pos.line}:${pos.col}` : '';
    throw new HsmError(HsmErrorCode.BAD_CONFIG, `${path}${where}: not valid YAML`, { file: path, ...(pos ? { line: pos.line } : {}) }, { cause: err });
  }
  return parseSignerConfig(parsed, path, dirname(path));
}

/** The YAML text of a config, as `trellis hsm keygen` writes it (paths as given). */
export function formatSignerConfig(cfg: Pkcs11SignerConfig): string {
  const doc: Record<string, unknown> = { type: 'pkcs11', module: cfg.module };
  if (cfg.tokenLabel !== undefined) doc.tokenLabel = cfg.tokenLabel;
  if (cfg.slot !== undefined) doc.slot = cfg.slot;
  doc.keyLabel = cfg.keyLabel;
  if (cfg.keyId !== undefined) doc.keyId = cfg.keyId;
  if ('file' in cfg.pin) doc.pinFile = cfg.pin.file;
  else doc.pinEnv = cfg.pin.env;
  doc.keyType = cfg.keyType;
  doc.sessions = cfg.sessions;
  return stringifyYaml(doc);
}

/** Where {@link readPin} looks things up; injected for tests. */
export interface PinDeps {
  env?: NodeJS.ProcessEnv;
  readFile?: (path: string) => string;
}

/**
 * The PIN from its configured source: the first line of the file (trailing
 * newline/CR stripped) or the environment variable. PIN_UNAVAILABLE when it
 * cannot be read or is empty; the message names the file or variable, never
 * the value.
 */
export function readPin(source: PinSource, deps: PinDeps = {}): string {
  if ('env' in source) {
    const v = (deps.env ?? process.env)[source.env];
    if (v === undefined || v === '') {
      throw new HsmError(HsmErrorCode.PIN_UNAVAILABLE, `environment variable ${source.env} (the HSM PIN) is not set`, { env: source.env });
    }
    return v;
  }
  let text: string;
  try {
    text = (deps.readFile ?? ((p) => readFileSync(p, 'utf8')))(source.file);
  } catch (err) {
    throw new HsmError(HsmErrorCode.PIN_UNAVAILABLE, `PIN file ${source.file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { file: source.file }, { cause: err });
  }
  const pin = text.split(/\r?\n/, 1)[0] ?? '';
  if (pin === '') throw new HsmError(HsmErrorCode.PIN_UNAVAILABLE, `PIN file ${source.file} is empty`, { file: source.file });
  return pin;
}
