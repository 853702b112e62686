// Address helpers: parsing "ip:port" (IPv6 in brackets), formatting endpoints, and the one test for
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d is the IPv4 host a.b.c.d; the kernel reports dual-stack
// sockets that way).
import * as net from 'node:net';

export interface Endpoint {
  address: string;
  port: number;
}

/** `1.2.3.4:80`, `[::1]:443`. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Parses `ip:port` or `[ipv6]:port`. Throws TypeError naming `option`. */
export function parseEndpoint(input: string, option = 'endpoint'): Endpoint {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(input) ?? /^([^:[\]]+):(\d+)$/.exec(input);
  if (!m) throw new TypeError(`${option}: expected ip:port or [ipv6]:port, got "${input}"`);
  const address = m[1];
  const port = Number(m[2]);
  if (net.isIP(address) === 0) throw new TypeError(`${option}: "${address}" is not an IP address`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`${option}: port ${m[2]} is out of range`);
  return { address, port };
}

/** Network-order bytes of an address: 4 for IPv4, 16 for IPv6. */
export function addressBytes(address: string): Buffer {
  const kind = net.isIP(address);
  if (kind === 4) return Buffer.from(address.split('.').map(Number));
  if (kind === 6) {
    const sl = new net.SocketAddress({ address, family: 'ipv6' });
    return ipv6Bytes(sl.address);
  }
  throw new TypeError(`"${address}" is not an IP address`);
}

function ipv6Bytes(address: string): Buffer {
  let text = address;
  const out = Buffer.alloc(16);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

const V4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d → a.b.c.d), else undefined. */
export function unmapV4(address: string): string | undefined {
  return V4_MAPPED.exec(address)?.[1];
}
