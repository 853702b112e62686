// The native parser over recorded netlink replies: one real recording made with python's raw
// AF_NETLINK socket, and hand-built datagrams for the edge cases a live kernel rarely produces.
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadBinding,
  PROTO_TCP,
  FAMILY_V4,
  SCAN_ALL,
  SCAN_SKMEMINFO,
  THRESHOLD_OFF,
  type NativeRecords,
  type NativeScanRequest,
} from '../lib/native';
import { Sampler, unpackRecords, type SocketRecord } from '../lib/sampler';
import { diagMsg, done, error, fieldsReply, u32s } from './helpers/netlink-fixtures';

const binding = loadBinding() as ReturnType<typeof loadBinding> & {
  parseRecorded(d: Buffer[], seq: number, req: NativeScanRequest): { records: NativeRecords; done: boolean };
};
/** The test hook's packed records, unpacked as the sampler unpacks a live scan's. */
function parseRecorded(d: Buffer[], seq: number, r: NativeScanRequest): { records: SocketRecord[]; done: boolean } {
  const out = binding.parseRecorded(d, seq, r);
  return { records: unpackRecords(out.records), done: out.done };
}

const req = (flags = SCAN_ALL, recvThreshold = THRESHOLD_OFF): NativeScanRequest => ({
  protocols: PROTO_TCP,
  families: FAMILY_V4,
  tcpStates: 0xfff,
  udpStates: 0,
  recvThreshold,
  sendThreshold: THRESHOLD_OFF,
  acceptThreshold: THRESHOLD_OFF,
  maxRecords: 1000,
  flags,
  aggStates: 0,
  aggTop: 0,
  aggMinTotal: 0,
});

describe('recorded replies', () => {
  const server = net.createServer({ pauseOnConnect: true });
  afterAll(() => server.close());

  it('a real dump recorded by python parses to what a live scan sees', async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const c = net.connect(port, '127.0.0.1');
    await once(c, 'connect');
    c.write(Buffer.alloc(321));
    await new Promise((r) => setTimeout(r, 50));
    // Record the raw datagrams of an AF_INET TCP dump (seq 77, SKMEMINFO asked), one hex line each.
    // (A listener and one accepted connection: the server port is the dump's local-port filter.)
    const hex = execFileSync('python3', [
      '-c',
      `
import socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
# A non-zero id.idiag_sport makes the kernel's dump loop keep only that local port: a small recording.
req = struct.pack('=BBBBI', socket.AF_INET, 6, 0x40, 0, 0xfff) + struct.pack('!H', ${port}) + bytes(46)
s.send(struct.pack('=IHHII', 16 + len(req), 20, 0x301, 77, 0) + req)
done = False
while not done:
    d = s.recv(65536)
    print(d.hex())
    off = 0
    while off + 16 <= len(d):
        length, kind = struct.unpack_from('=IH', d, off)
        if kind == 3 or length < 16:
            done = True
            break
        off += (length + 3) & ~3
`,
    ])
      .toString()
      .trim()
      .split('\n');
    const datagrams = hex.map((h) => Buffer.from(h, 'hex'));
    const parsed = parseRecorded(datagrams, 77, req(SCAN_ALL | SCAN_SKMEMINFO));
    expect(parsed.done).toBe(true);
    const mine = parsed.records.find((r) => r.localPort === port && r.remotePort === c.localPort);
    expect(mine).toMatchObject({ recvQ: 321, stateName: 'established', localAddress: '127.0.0.1' });
    expect(mine!.skmem!.rcvbuf).toBeGreaterThan(0);
    const s = new Sampler();
    const live = s.lookupSync({ protocol: 'tcp', local: `127.0.0.1:${port}`, remote: `127.0.0.1:${c.localPort}` });
    await s.close();
    expect(live?.cookie).toBe(mine!.cookie);
    c.destroy();
  });
});

describe('hand-built replies', () => {
  it('parses fields, skips unknown attributes, reads a short SKMEMINFO', () => {
    const d = fieldsReply();
    const r = parseRecorded([d], 5, req(SCAN_ALL | SCAN_SKMEMINFO));
    expect(r.done).toBe(true);
    expect(r.records).toHaveLength(1);
    expect(r.records[0]).toMatchObject({
      localPort: 8080,
      remotePort: 40000,
      recvQ: 10,
      sendQ: 20,
      cookie: 0x1_0000_0002n,
      // an older kernel's 5 fields; the rest read 0
      skmem: { rmemAlloc: 1, rcvbuf: 2, wmemAlloc: 3, sndbuf: 4, fwdAlloc: 5, wmemQueued: 0, optmem: 0, backlog: 0, drops: 0 },
    });
  });

  it('joins a multi-part reply across datagrams and stops at NLMSG_DONE', () => {
    const d1 = Buffer.concat([diagMsg(9, { sport: 1 }), diagMsg(9, { sport: 2 })]);
    const d2 = Buffer.concat([diagMsg(9, { sport: 3 }), done(9)]);
    const d3 = diagMsg(9, { sport: 4 }); // after DONE: never read
    const r = parseRecorded([d1, d2, d3], 9, req());
    expect(r.records.map((x) => x.localPort)).toEqual([1, 2, 3]);
    expect(r.done).toBe(true);
  });

  it('ignores messages of another sequence number', () => {
    const d = Buffer.concat([diagMsg(8, { sport: 1 }), diagMsg(9, { sport: 2 }), done(9)]);
    expect(parseRecorded([d], 9, req()).records.map((x) => x.localPort)).toEqual([2]);
  });

  it('turns NLMSG_ERROR into an error with code, errno and syscall', () => {
    let err: (Error & { code?: string; errno?: number; syscall?: string }) | undefined;
    try {
      parseRecorded([error(3, 2)], 3, req());
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'recvmsg' });
  });

  it('rejects a message whose length runs past the datagram', () => {
    const m = diagMsg(4, { sport: 1 });
    const truncated = m.subarray(0, m.length - 10);
    expect(() => parseRecorded([truncated], 4, req())).toThrow(expect.objectContaining({ code: 'EBADMSG' }));
  });

  it('rejects an inet_diag_msg shorter than 72 bytes and an attribute past the message', () => {
    const short = Buffer.alloc(16 + 40);
    short.writeUInt32LE(short.length, 0);
    short.writeUInt16LE(20, 4);
    short.writeUInt32LE(6, 8);
    expect(() => parseRecorded([short], 6, req())).toThrow(expect.objectContaining({ code: 'EBADMSG' }));
    const m = diagMsg(6, { attrs: [{ type: 7, payload: u32s([1, 2]) }] });
    m.writeUInt16LE(200, 16 + 72); // rta_len beyond the message
    expect(() => parseRecorded([m], 6, req(SCAN_ALL | SCAN_SKMEMINFO))).toThrow(expect.objectContaining({ code: 'EBADMSG' }));
  });

  it('applies thresholds to parsed records', () => {
    const d = Buffer.concat([diagMsg(1, { sport: 1, rqueue: 5 }), diagMsg(1, { sport: 2, rqueue: 6 }), done(1)]);
    expect(parseRecorded([d], 1, req(0, 5)).records.map((x) => x.localPort)).toEqual([2]);
  });
});
