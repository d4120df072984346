/**
 * Validates Kubernetes objects against the API schema shipped in the
 * `kubernetes-models` package (OpenAPI from Kubernetes 1.27). Used by the
 * injector tests for injected pods and for everything `deploy/` builds.
 */

type Model = { validate(): void };
type ModelClass = new (data: unknown) => Model;

/**
 * Throws with the object's kind/name and the schema's message when `obj` does
 * not validate, or when the package has no model for its apiVersion/kind.
 */
export function validateK8sObject(obj: Record<string, unknown>, where = ''): void {
  const apiVersion = String(obj.apiVersion ?? '');
  const kind = String(obj.kind ?? '');
  let mod: Record<string, ModelClass>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(`kubernetes-models/${apiVersion}`) as Record<string, ModelClass>;
  } catch {
    throw new Error(`${where}: no Kubernetes schema for apiVersion ${apiVersion}`);
  }
  const Cls = mod[kind];
  if (!Cls) throw new Error(`${where}: no Kubernetes schema for ${apiVersion} ${kind}`);
  const name = (obj.metadata as { name?: string } | undefined)?.name ?? '<unnamed>';
  try {
    new Cls(obj).validate();
  } catch (err) {
    throw new Error(`${where}: ${kind} ${name} does not validate: ${(err as Error).message}`);
  }
}
