/**
 * Istio's string matching for policy values: exact, prefix (`abc*`), suffix
 * (`*abc`) or presence (`*`). A `*` anywhere else is refused at parse time, so
 * a value here has at most one leading or trailing star.
 */

/** True when `value` matches the policy pattern. `caseInsensitive` is for hosts. */
export function matchString(pattern: string, value: string, caseInsensitive = false): boolean {
  const p = caseInsensitive ? pattern.toLowerCase() : pattern;
  const v = caseInsensitive ? value.toLowerCase() : value;
  if (p === '*') return true;
  if (p.startsWith('*')) return v.endsWith(p.slice(1));
  if (p.endsWith('*')) return v.startsWith(p.slice(0, -1));
  return p === v;
}

/** True when any pattern matches. */
export function matchAny(patterns: readonly string[], value: string, caseInsensitive = false): boolean {
  return patterns.some((p) => matchString(p, value, caseInsensitive));
}

/** A problem with a pattern's wildcard placement, or undefined when it is well-formed. */
export function patternProblem(pattern: string): string | undefined {
  if (pattern === '*') return undefined;
  const inner = pattern.slice(1, -1);
  if (inner.includes('*')) return 'a "*" is only allowed at the start or the end of a value';
  if (pattern.length > 1 && pattern.startsWith('*') && pattern.endsWith('*')) return 'a value cannot start and end with "*"';
  return undefined;
}
