// inet_diag bytecode (INET_DIAG_REQ_BYTECODE), compiled the way iproute2's ss compiles its
// filters (misc/ss.c ssfilter_bytecompile): falling off the end accepts, a jump to end+4 rejects.
// Ops are {u8 code, u8 yes, u16 no} in host byte order; yes/no are forward byte offsets.
// Address conditions are S_COND/D_COND ops with a struct inet_diag_hostcond {u8 family; u8 prefix_len;
// int port (-1: any); then 4 or 16 address bytes}, which the kernel checks (valid_hostcond) and matches
// by prefix, an AF_INET condition also matching an IPv4-mapped IPv6 address (::ffff:a.b.c.d).

import * as net from 'node:net';
import { addressBytes } from './address';
import { describe } from './base/validate';

export const BC = {
  NOP: 0,
  JMP: 1,
  S_GE: 2,
  S_LE: 3,
  D_GE: 4,
  D_LE: 5,
  AUTO: 6,
  S_COND: 7,
  D_COND: 8,
} as const;

export type PortRange = { from: number; to: number };

/** An address prefix: `bits` leading bits of `bytes` (4 bytes for IPv4, 16 for IPv6, network order). */
export interface HostPrefix {
  family: 4 | 6;
  bytes: Buffer;
  bits: number;
}

export type Filter =
  | { kind: 'and'; of: Filter[] }
  | { kind: 'or'; of: Filter[] }
  | { kind: 'not'; of: Filter }
  | { kind: 'port'; side: 'local' | 'remote'; range: PortRange }
  | { kind: 'host'; side: 'local' | 'remote'; prefix: HostPrefix };

const AF_INET = 2;
const AF_INET6 = 10;

const HOSTCOND_LEN = 8; // {u8 family; u8 prefix_len; (pad); int port}, no address for AF_UNSPEC

function op(code: number, yes: number, no: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(code, 0);
  b.writeUInt8(yes, 1);
  b.writeUInt16LE(no, 2);
  return b;
}

/** Length in bytes of the op at `off`, operands included. */
function opLength(code: number, bc: Buffer, off: number): number {
  switch (code) {
    case BC.S_COND:
    case BC.D_COND: {
      const family = bc.readUInt8(off + 4);
      return 4 + HOSTCOND_LEN + (family === AF_INET ? 4 : family === AF_INET6 ? 16 : 0);
    }
    case BC.S_GE:
    case BC.S_LE:
    case BC.D_GE:
    case BC.D_LE:
      return 8;
    default:
      return 4;
  }
}

/** Adds `delta` to every `no` of `a` that pointed at a's reject position (len(a) + 4). */
function patchRejects(a: Buffer, delta: number): Buffer {
  const out = Buffer.from(a);
  for (let off = 0; off < out.length;) {
    const code = out.readUInt8(off);
    const no = out.readUInt16LE(off + 2);
    if (off + no === out.length + 4) out.writeUInt16LE(no + delta, off + 2);
    off += opLength(code, out, off);
  }
  return out;
}

function portCond(side: 'local' | 'remote', port: number): Buffer {
  const len = 4 + HOSTCOND_LEN;
  const cond = Buffer.alloc(HOSTCOND_LEN);
  cond.writeUInt8(0, 0); // AF_UNSPEC: any address family
  cond.writeUInt8(0, 1); // prefix 0: any address
  cond.writeInt32LE(port, 4);
  return Buffer.concat([op(side === 'local' ? BC.S_COND : BC.D_COND, len, len + 4), cond]);
}

function hostCond(side: 'local' | 'remote', p: HostPrefix): Buffer {
  const cond = Buffer.alloc(HOSTCOND_LEN + p.bytes.length);
  cond.writeUInt8(p.family === 4 ? AF_INET : AF_INET6, 0);
  cond.writeUInt8(p.bits, 1);
  cond.writeInt32LE(-1, 4); // any port
  p.bytes.copy(cond, HOSTCOND_LEN);
  const len = 4 + cond.length;
  return Buffer.concat([op(side === 'local' ? BC.S_COND : BC.D_COND, len, len + 4), cond]);
}

function portCompare(code: number, port: number): Buffer {
  // The port rides in the `no` field of a second op.
  return Buffer.concat([op(code, 8, 12), op(0, 0, port)]);
}

function compileNode(f: Filter): Buffer {
  switch (f.kind) {
    case 'port': {
      const { from, to } = f.range;
      if (from === to) return portCond(f.side, from);
      const ge = portCompare(f.side === 'local' ? BC.S_GE : BC.D_GE, from);
      const le = portCompare(f.side === 'local' ? BC.S_LE : BC.D_LE, to);
      return Buffer.concat([patchRejects(ge, le.length), le]);
    }
    case 'host':
      return hostCond(f.side, f.prefix);
    case 'not': {
      const x = compileNode(f.of);
      return Buffer.concat([x, op(BC.JMP, 4, 8)]);
    }
    case 'and': {
      let acc: Buffer = Buffer.alloc(0);
      for (const part of f.of) {
        const b = compileNode(part);
        acc = acc.length === 0 ? b : Buffer.concat([patchRejects(acc, b.length), b]);
      }
      return acc;
    }
    case 'or': {
      let acc: Buffer = Buffer.alloc(0);
      for (const part of f.of) {
        const b = compileNode(part);
        acc = acc.length === 0 ? b : Buffer.concat([acc, op(BC.JMP, 4, b.length + 4), b]);
      }
      return acc;
    }
  }
}

/** Compiles a filter; undefined for an empty filter (no bytecode sent). */
export function compileFilter(f: Filter | undefined): Buffer | undefined {
  if (!f) return undefined;
  const b = compileNode(f);
  if (b.length === 0) return undefined;
  if (b.length > 4000) throw new RangeError(`filter too large for the kernel (${b.length} bytes of bytecode)`);
  return b;
}

/** The addresses of a socket as the kernel's filter sees them (IPv4-mapped IPv6 addresses stay IPv6). */
export interface BytecodeAddresses {
  family: 4 | 6;
  /** Local and remote address: text (`127.0.0.1`, `::ffff:10.0.0.1`) or network-order bytes. */
  src: string | Buffer;
  dst: string | Buffer;
}

/** The first `bits` bits of a and b are equal. */
function prefixEqual(a: Buffer, b: Buffer, bits: number): boolean {
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff00 >> bits) & 0xff;
    if (((a[i] ^ b[i]) & mask) !== 0) return false;
  }
  return true;
}

const MAPPED_HEAD = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

function hostMatches(bc: Buffer, off: number, addr: Buffer, family: 4 | 6): boolean {
  const condFamily = bc.readUInt8(off + 4);
  const bits = bc.readUInt8(off + 5);
  const want = bc.subarray(off + 4 + HOSTCOND_LEN);
  const entryFamily = family === 4 ? AF_INET : AF_INET6;
  if (condFamily !== 0 && condFamily !== entryFamily) {
    // An IPv4 condition also matches an IPv4-mapped IPv6 address; any other family mismatch fails,
    // whatever the prefix length (the family test comes first, as in the kernel).
    return (
      condFamily === AF_INET &&
      entryFamily === AF_INET6 &&
      addr.subarray(0, 12).equals(MAPPED_HEAD) &&
      prefixEqual(addr.subarray(12), want, bits)
    );
  }
  if (bits === 0) return true;
  return prefixEqual(addr, want, bits);
}

function toBytes(a: string | Buffer, family: 4 | 6): Buffer {
  const b = typeof a === 'string' ? addressBytes(a) : a;
  if (b.length !== (family === 4 ? 4 : 16))
    throw new RangeError(`address ${typeof a === 'string' ? a : b.toString('hex')} is not IPv${family}`);
  return b;
}

/**
 * Evaluates bytecode the way the kernel does (inet_diag_bc_run): tests check the compiler against it.
 * Address conditions need `addresses`; without them such a program throws.
 */
export function runBytecode(bc: Buffer, sport: number, dport: number, addresses?: BytecodeAddresses): boolean {
  const src = addresses && toBytes(addresses.src, addresses.family);
  const dst = addresses && toBytes(addresses.dst, addresses.family);
  let off = 0;
  while (off < bc.length) {
    const code = bc.readUInt8(off);
    const yes = bc.readUInt8(off + 1);
    const no = bc.readUInt16LE(off + 2);
    let match: boolean;
    switch (code) {
      case BC.NOP:
        match = true;
        break;
      case BC.JMP:
        match = false;
        break;
      case BC.S_GE:
        match = sport >= bc.readUInt16LE(off + 6);
        break;
      case BC.S_LE:
        match = sport <= bc.readUInt16LE(off + 6);
        break;
      case BC.D_GE:
        match = dport >= bc.readUInt16LE(off + 6);
        break;
      case BC.D_LE:
        match = dport <= bc.readUInt16LE(off + 6);
        break;
      case BC.S_COND:
      case BC.D_COND: {
        const port = bc.readInt32LE(off + 8);
        match = port === -1 || port === (code === BC.S_COND ? sport : dport);
        if (match && bc.readUInt8(off + 4) !== 0) {
          if (!addresses || !src || !dst) throw new TypeError('runBytecode: an address condition needs the socket addresses');
          match = hostMatches(bc, off, code === BC.S_COND ? src : dst, addresses.family);
        }
        break;
      }
      default:
        throw new RangeError(`bytecode op ${code} not supported by runBytecode`);
    }
    off += match ? yes : no;
  }
  return off === bc.length;
}

export interface PortRules {
  /** Keep sockets whose local port is one of these (OR). */
  localPorts?: PortRange[];
  /** Drop sockets whose local port is one of these. */
  excludeLocalPorts?: PortRange[];
  /** Keep sockets whose remote port is one of these (OR). */
  remotePorts?: PortRange[];
  excludeRemotePorts?: PortRange[];
  /** Keep sockets whose local address is in one of these prefixes (OR). */
  localAddresses?: HostPrefix[];
  /** Keep sockets whose remote address is in one of these prefixes (OR). */
  remoteAddresses?: HostPrefix[];
}

/** The filter of a set of rules: (local addresses any-of) and (remote addresses any-of) and (local ports any-of) and … and not(excluded)… */
export function portRulesFilter(r: PortRules): Filter | undefined {
  const parts: Filter[] = [];
  const anyOf = (side: 'local' | 'remote', ranges: PortRange[]): Filter => ({
    kind: 'or',
    of: ranges.map((range) => ({ kind: 'port', side, range })),
  });
  const anyHost = (side: 'local' | 'remote', prefixes: HostPrefix[]): Filter => ({
    kind: 'or',
    of: prefixes.map((prefix) => ({ kind: 'host', side, prefix })),
  });
  if (r.localAddresses?.length) parts.push(anyHost('local', r.localAddresses));
  if (r.remoteAddresses?.length) parts.push(anyHost('remote', r.remoteAddresses));
  if (r.localPorts?.length) parts.push(anyOf('local', r.localPorts));
  if (r.remotePorts?.length) parts.push(anyOf('remote', r.remotePorts));
  for (const range of r.excludeLocalPorts ?? []) parts.push({ kind: 'not', of: { kind: 'port', side: 'local', range } });
  for (const range of r.excludeRemotePorts ?? []) parts.push({ kind: 'not', of: { kind: 'port', side: 'remote', range } });
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : { kind: 'and', of: parts };
}

const PREFIX_WHAT = 'an IPv4 or IPv6 address or CIDR prefix like "10.0.0.0/8", "::1" or "fd00::/8"';

/**
 * Parses an address or CIDR prefix ("10.0.0.0/8", "127.0.0.1", "::1/128", "[fd00::]/8"). Host bits
 * past the prefix are ignored (as ss and the kernel ignore them). An IPv4-mapped IPv6 prefix
 * (::ffff:10.0.0.0/104) becomes its IPv4 prefix (10.0.0.0/8): the kernel matches an IPv4 condition
 * against IPv4 sockets and IPv4-mapped addresses of dual-stack IPv6 sockets alike.
 */
export function addressPrefix(v: unknown, path: string): HostPrefix {
  if (typeof v !== 'string') throw new TypeError(`${path} must be ${PREFIX_WHAT} (got ${describe(v)})`);
  const m = /^\s*(?:\[([^\]]*)\]|([^/\s[\]]+))(?:\/(\d{1,3}))?\s*$/.exec(v);
  const address = m ? (m[1] ?? m[2]) : undefined;
  // Zone ids (fe80::1%eth0) name an interface, not an address: the kernel cannot filter by them.
  if (address === undefined || address.includes('%') || net.isIP(address) === 0)
    throw new TypeError(`${path} must be ${PREFIX_WHAT} (got ${describe(v)})`);
  let bytes = addressBytes(address);
  let family: 4 | 6 = bytes.length === 4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  const bits = m![3] === undefined ? max : Number(m![3]);
  if (bits > max) throw new RangeError(`${path}: prefix length ${bits} is out of range 0-${max} for IPv${family} (got ${describe(v)})`);
  let len = bits;
  if (family === 6 && bits >= 96 && bytes.subarray(0, 12).equals(MAPPED_HEAD)) {
    bytes = bytes.subarray(12);
    family = 4;
    len = bits - 96;
  }
  const out = Buffer.alloc(bytes.length);
  for (let i = 0, left = len; i < out.length && left > 0; i++, left -= 8) out[i] = bytes[i] & (left >= 8 ? 0xff : (0xff00 >> left) & 0xff);
  return { family, bytes: out, bits: len };
}

/** An array of address prefixes; undefined stays undefined. */
export function prefixList(v: unknown, path: string): HostPrefix[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new TypeError(`${path} must be an array of addresses or CIDR prefixes (got ${describe(v)})`);
  return v.map((p, i) => addressPrefix(p, `${path}[${i}]`));
}
