/**
 * The command a mistyped `trellis` command line most likely meant, for the
 * "Did you mean" hint on an unknown command. Pure: names in, name out.
 *
 * Distance is the optimal-string-alignment edit distance (insert, delete,
 * substitute, or swap two adjacent characters, each costing 1), compared
 * word-for-word against every command and every command group (`ca`, `ca
 * init`, ...). As git does for `git stauts`, a hint is given only when the
 * best candidate is close: at most a third of its length away (at least 1),
 * so `trellis NOSUCHCOMMAND` gets the list, not a guess.
 */

/** Optimal-string-alignment distance between `a` and `b` (case-insensitive). */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  const rows = s.length + 1;
  const cols = t.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[s.length]![t.length]!;
}

/**
 * The command or group (space-separated words) closest to the words typed, or
 * undefined when none is close enough. Each candidate is compared with as many
 * typed words as it has, so `cs init` finds `ca init` and `valdate x.yaml`
 * finds `validate`. Ties go to the longer (more specific) candidate, then to
 * the first in `names` order.
 */
export function closestCommand(words: readonly string[], names: readonly string[]): string | undefined {
  const candidates = new Set<string>();
  for (const name of names) {
    const parts = name.split(' ');
    for (let k = 1; k <= parts.length; k++) candidates.add(parts.slice(0, k).join(' '));
  }
  let best: { name: string; distance: number; words: number } | undefined;
  for (const candidate of candidates) {
    const k = candidate.split(' ').length;
    if (words.length < k) continue;
    const distance = editDistance(words.slice(0, k).join(' '), candidate);
    // An exact match is a group the typed words go past (an exact command would have run): look deeper.
    if (distance === 0) continue;
    if (distance > Math.max(1, Math.floor(candidate.length / 3))) continue;
    if (!best || distance < best.distance || (distance === best.distance && k > best.words)) best = { name: candidate, distance, words: k };
  }
  return best?.name;
}
