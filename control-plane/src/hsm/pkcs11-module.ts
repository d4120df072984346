/**
 * Loading a PKCS#11 module through the `pkcs11js` binding.
 *
 * The binding is required lazily, here only, so the control plane loads and
 * runs with file-backed keys when `pkcs11js` is absent or its native build
 * failed; the error (BINDING_UNAVAILABLE) appears only when an HSM is
 * configured.
 *
 * Why a process-wide table: a PKCS#11 library has one global state per
 * process (C_Initialize/C_Finalize are per library, not per handle), so two
 * signers on the same module must share one initialised instance and the
 * last one to close finalises it. This is the one module-level registry in
 * the HSM code, and it holds no secrets.
 */
import type * as Pkcs11Js from 'pkcs11js';
import { HsmError, HsmErrorCode } from './hsm-error';

/** The `pkcs11js` module namespace (constants, PKCS11 class, error classes). */
export type Pkcs11Binding = typeof Pkcs11Js;
/** One loaded PKCS#11 API instance. */
export type Pkcs11Api = Pkcs11Js.PKCS11;

/** A reference to an initialised module; call `release()` once when done. */
export interface Pkcs11ModuleRef {
  readonly binding: Pkcs11Binding;
  readonly api: Pkcs11Api;
  readonly path: string;
  /**
   * SHA-256 of the PIN each slot (by numeric ID) was logged in with in this
   * process. PKCS#11 login is per process and token, so a second login
   * answers CKR_USER_ALREADY_LOGGED_IN without checking the PIN; this lets
   * the second signer prove its PIN is the one that was checked.
   */
  readonly verifiedPins: Map<number, Buffer>;
  release(): void;
}

/** How the binding is obtained; tests replace it to simulate a missing binding. */
export type BindingLoader = () => Pkcs11Binding;

/** Requires `pkcs11js`; BINDING_UNAVAILABLE when it is missing or its native part does not load. */
export const requirePkcs11Binding: BindingLoader = () => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('pkcs11js') as Pkcs11Binding;
  } catch (err) {
    throw new HsmError(
      HsmErrorCode.BINDING_UNAVAILABLE,
      `an HSM signer is configured but the pkcs11js binding cannot be loaded (${(err as Error).message.split('\n')[0]}); run "npm ci" with a C++ toolchain so its native part builds`,
      {},
      { cause: err },
    );
  }
};

const open = new Map<string, { binding: Pkcs11Binding; api: Pkcs11Api; refs: number; verifiedPins: Map<number, Buffer> }>();

/**
 * Loads and initialises the PKCS#11 module at `path` (or shares the instance
 * already open in this process). MODULE_FAILED when the library cannot be
 * loaded or C_Initialize fails.
 */
export function acquirePkcs11Module(path: string, loadBinding: BindingLoader = requirePkcs11Binding): Pkcs11ModuleRef {
  // Asked every time (require is cached) so a missing binding is reported even when the module is open.
  const binding = loadBinding();
  let entry = open.get(path);
  if (!entry) {
    const api = new binding.PKCS11();
    try {
      api.load(path);
    } catch (err) {
      throw new HsmError(HsmErrorCode.MODULE_FAILED, `PKCS#11 module ${path} cannot be loaded (${(err as Error).message.split('\n')[0]})`, { module: path }, { cause: err });
    }
    try {
      api.C_Initialize({ flags: binding.CKF_OS_LOCKING_OK });
    } catch (err) {
      if (!(err instanceof binding.Pkcs11Error && err.code === binding.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
        try {
          api.close();
        } catch {
          // Unloading after a failed initialise is best effort.
        }
        throw new HsmError(HsmErrorCode.MODULE_FAILED, `PKCS#11 module ${path}: C_Initialize failed (${(err as Error).message.split('\n')[0]})`, { module: path }, { cause: err });
      }
    }
    entry = { binding, api, refs: 0, verifiedPins: new Map() };
    open.set(path, entry);
  }
  entry.refs++;
  const e = entry;
  let released = false;
  return {
    binding: e.binding,
    api: e.api,
    path,
    verifiedPins: e.verifiedPins,
    release() {
      if (released) return;
      released = true;
      e.refs--;
      if (e.refs > 0) return;
      open.delete(path);
      try {
        e.api.C_Finalize();
      } catch {
        // Finalising a module whose token vanished is best effort.
      }
      try {
        e.api.close();
      } catch {
        // Unloading is best effort.
      }
    },
  };
}

/** The PKCS#11 return-value name of an error from the binding (e.g. `CKR_PIN_INCORRECT`), or undefined. */
export function pkcs11ErrorName(binding: Pkcs11Binding, err: unknown): string | undefined {
  if (!(err instanceof binding.Pkcs11Error)) return undefined;
  const m = /CKR_[A-Z0-9_]+/.exec(err.message);
  return m ? m[0] : `CKR_0x${err.code.toString(16)}`;
}
