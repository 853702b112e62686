// Builders for netlink reply datagrams (nlmsghdr + inet_diag_msg + rtattrs), little-endian as on x86.
import { FAMILY_V4, PROTO_TCP, SCAN_ALL, THRESHOLD_OFF, type NativeScanRequest } from '../../lib/native';
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const SOCK_DIAG_BY_FAMILY = 20;
export const NLM_F_MULTI = 2;

export interface MsgSpec {
  family?: number;
  state?: number;
  sport?: number;
  dport?: number;
  src?: number[];
  dst?: number[];
  rqueue?: number;
  wqueue?: number;
  uid?: number;
  inode?: number;
  cookie?: bigint;
  attrs?: { type: number; payload: Buffer }[];
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

export function rtattr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

export function nlmsg(type: number, seq: number, body: Buffer, flags = NLM_F_MULTI): Buffer {
  const len = 16 + body.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  b.writeUInt32LE(seq, 8);
  b.writeUInt32LE(0, 12);
  body.copy(b, 16);
  return b;
}

export function diagMsg(seq: number, m: MsgSpec): Buffer {
  const body = Buffer.alloc(72);
  body.writeUInt8(m.family ?? 2, 0);
  body.writeUInt8(m.state ?? 1, 1);
  body.writeUInt16BE(m.sport ?? 0, 4);
  body.writeUInt16BE(m.dport ?? 0, 6);
  Buffer.from(m.src ?? [127, 0, 0, 1]).copy(body, 8);
  Buffer.from(m.dst ?? [127, 0, 0, 1]).copy(body, 24);
  const cookie = m.cookie ?? 1n;
  body.writeUInt32LE(Number(cookie & 0xffffffffn), 44);
  body.writeUInt32LE(Number(cookie >> 32n), 48);
  body.writeUInt32LE(m.rqueue ?? 0, 56);
  body.writeUInt32LE(m.wqueue ?? 0, 60);
  body.writeUInt32LE(m.uid ?? 0, 64);
  body.writeUInt32LE(m.inode ?? 0, 68);
  const attrs = (m.attrs ?? []).map((a) => rtattr(a.type, a.payload));
  return nlmsg(SOCK_DIAG_BY_FAMILY, seq, Buffer.concat([body, ...attrs]));
}

export function done(seq: number): Buffer {
  return nlmsg(NLMSG_DONE, seq, Buffer.alloc(4));
}

export function error(seq: number, errno: number): Buffer {
  const body = Buffer.alloc(4 + 16);
  body.writeInt32LE(-errno, 0);
  return nlmsg(NLMSG_ERROR, seq, body, 0);
}

export function u32s(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v, i * 4));
  return b;
}

/**
 * One reply of seq 5: a socket with known fields (ports 8080 → 40000, queues 10/20, uid 1000, inode
 * 42, cookie 0x1_0000_0002), an attribute the addon does not know, an older kernel's SKMEMINFO of 5
 * fields and a one-byte SHUTDOWN, then DONE.
 */
export function fieldsReply(): Buffer {
  return Buffer.concat([
    diagMsg(5, {
      sport: 8080,
      dport: 40000,
      rqueue: 10,
      wqueue: 20,
      uid: 1000,
      inode: 42,
      cookie: 0x1_0000_0002n,
      attrs: [
        { type: 99, payload: Buffer.from('unknown-attr') },
        { type: 7, payload: u32s([1, 2, 3, 4, 5]) }, // an older kernel: 5 of 9 fields
        { type: 8, payload: Buffer.from([0]) },
      ],
    }),
    done(5),
  ]);
}

/** A native scan request for replaying recorded replies: IPv4 TCP, every state, every socket a record. */
export function recordedScanRequest(over: Partial<NativeScanRequest> = {}): NativeScanRequest {
  return {
    protocols: PROTO_TCP,
    families: FAMILY_V4,
    tcpStates: 0xfff,
    udpStates: 0,
    recvThreshold: THRESHOLD_OFF,
    sendThreshold: THRESHOLD_OFF,
    acceptThreshold: THRESHOLD_OFF,
    maxRecords: 1000,
    flags: SCAN_ALL,
    aggStates: 0,
    aggTop: 0,
    aggMinTotal: 0,
    ...over,
  };
}
