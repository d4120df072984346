/**
 * IPv4/IPv6 addresses and CIDR blocks for `ipBlocks`, parsed without the
 * network stack so the decision code stays pure. An address is a BigInt with
 * its family; a block is an address plus a prefix length.
 */

/** A parsed address. */
export interface IpAddress {
  readonly family: 4 | 6;
  readonly value: bigint;
}

/** A parsed `ipBlocks` entry: a single address is a /32 or /128 block. */
export interface IpBlock {
  readonly family: 4 | 6;
  readonly network: bigint;
  readonly prefix: number;
}

/** Parses an IPv4 or IPv6 address (IPv4-mapped IPv6 becomes IPv4); undefined when malformed. */
export function parseIp(text: string): IpAddress | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) {
    let v = 0n;
    for (const part of text.split('.')) {
      if (part.length > 1 && part.startsWith('0')) return undefined;
      const n = Number(part);
      if (n > 255) return undefined;
      v = (v << 8n) | BigInt(n);
    }
    return { family: 4, value: v };
  }
  if (!text.includes(':') || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let head = text;
  let tailV4: IpAddress | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tailV4 = parseIp(text.slice(lastColon + 1));
    if (!tailV4 || tailV4.family !== 4) return undefined;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const toGroups = (s: string): string[] | undefined => (s === '' ? [] : s.split(':'));
  const left = toGroups(halves[0] ?? '');
  const right = halves.length === 2 ? toGroups(halves[1] ?? '') : [];
  if (!left || !right) return undefined;
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...new Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...right];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4) v = (v & ~0xffffffffn) | tailV4.value;
  if (v >> 32n === 0xffffn) return { family: 4, value: v & 0xffffffffn };
  return { family: 6, value: v };
}

/** Parses `1.2.3.4`, `10.0.0.0/8`, `fd00::/8`; undefined when malformed. */
export function parseIpBlock(text: string): IpBlock | undefined {
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!addr) return undefined;
  const max = addr.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > max) return undefined;
  }
  const bits = BigInt(max - prefix);
  return { family: addr.family, network: (addr.value >> bits) << bits, prefix };
}

/** True when `ip` (text) lies in `block` (text); malformed input never matches. */
export function ipInBlock(ip: string, block: string): boolean {
  const a = parseIp(ip);
  const b = parseIpBlock(block);
  if (!a || !b || a.family !== b.family) return false;
  const bits = BigInt((b.family === 4 ? 32 : 128) - b.prefix);
  return (a.value >> bits) << bits === b.network;
}
