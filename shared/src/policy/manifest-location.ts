/**
 * Maps a field path inside a parsed YAML document back to its line and column,
 * and formats the path the way users read it (`spec.rules[0].from`).
 */
import type { Document, LineCounter, Node } from 'yaml';
import { yamlLibrary } from './yaml-library';

/** A path as a list of keys and array indexes. */
export type FieldPath = ReadonlyArray<string | number>;

/** 1-based line and column. */
export interface Position {
  line: number;
  column: number;
}

/**
 * Position of the field at `path`: its key for a map entry when `at` is 'key'
 * (unknown field, bad key), else its value; falls back to the deepest existing
 * ancestor (a missing field points at its parent).
 */
export function locate(doc: Document, lc: LineCounter, path: FieldPath, at: 'key' | 'value' = 'value'): Position {
  const { isMap, isPair, isScalar, isSeq } = yamlLibrary();
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      const keyStart = rangeStart(pair.key);
      if (last && at === 'key' && keyStart !== undefined) {
        offset = keyStart;
        break;
      }
      node = pair.value;
      offset = rangeStart(node) ?? keyStart ?? offset;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)];
      if (item === undefined) break;
      node = item;
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
  }
  const p = lc.linePos(offset);
  return { line: p.line, column: p.col };
}

function rangeStart(node: unknown): number | undefined {
  const r = (node as Node | null | undefined)?.range;
  return Array.isArray(r) ? r[0] : undefined;
}

/** `['spec','rules',0,'from']` → `spec.rules[0].from`; odd keys are quoted: `annotations["istio.io/dry-run"]`. */
export function formatPath(path: FieldPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Splits an ajv JSON pointer (`/spec/rules/0`) into segments, numbers for array indexes of `value`. */
export function pointerToPath(pointer: string, value: unknown): Array<string | number> {
  if (pointer === '') return [];
  const out: Array<string | number> = [];
  let cur: unknown = value;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      out.push(Number(seg));
      cur = cur[Number(seg)];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}
