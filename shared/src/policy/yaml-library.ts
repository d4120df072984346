/**
 * The YAML library, loaded when a manifest is first parsed rather than when
 * @trellis/shared is imported: a sidecar imports shared for `authorize()` and
 * never parses YAML, and the library costs it resident memory for nothing.
 */
let lib: typeof import('yaml') | undefined;

/** The `yaml` module, required on first use. */
export function yamlLibrary(): typeof import('yaml') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  lib ??= require('yaml') as typeof import('yaml');
  return lib;
}
