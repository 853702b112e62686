// Real sockets with known state, for kernel contract tests. Where Node cannot hold a socket in the
// needed state (a listener that never accepts, a UDP socket that never reads), a python3 child
// holds it; python3 is part of the machine image.
import { spawn, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { once } from 'node:events';

const cleanups: (() => unknown)[] = [];

/** Runs every cleanup registered by the helpers (call in afterAll / afterEach). */
export async function cleanupSockets(): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch {
      /* already gone */
    }
  }
}

/** A server that never reads: every accepted socket is paused before any read. */
export async function pausedServer(host: string): Promise<{ server: net.Server; port: number; accepted: net.Socket[] }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
  server.listen({ port: 0, host, backlog: 4096 });
  await once(server, 'listening');
  cleanups.push(() => {
    accepted.forEach((s) => s.destroy());
    server.close();
  });
  return { server, port: (server.address() as net.AddressInfo).port, accepted };
}

/** A server that accepts and holds every connection (errors on them ignored). */
export async function acceptingServer(host: string): Promise<{ server: net.Server; port: number; accepted: net.Socket[] }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => {
    accepted.push(s);
    s.on('error', () => undefined);
  });
  server.listen(0, host);
  await once(server, 'listening');
  cleanups.push(async () => {
    accepted.forEach((s) => s.destroy());
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port: (server.address() as net.AddressInfo).port, accepted };
}

export async function connect(host: string, port: number, localAddress?: string): Promise<net.Socket> {
  const c = net.connect({ host, port, localAddress });
  await once(c, 'connect');
  cleanups.push(() => c.destroy());
  return c;
}

/** Waits until `accepted` holds n sockets. */
export async function waitAccepted(accepted: net.Socket[], n: number): Promise<void> {
  for (let i = 0; i < 3000 && accepted.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  if (accepted.length < n) throw new Error(`only ${accepted.length} of ${n} connections accepted`);
}

/** A TCP connection on `host` whose accepted side holds `bytes` unread; drain() reads them, close() ends it. */
export async function unreadConnection(
  host: string,
  bytes: number,
): Promise<{ port: number; clientPort: number; drain: () => void; close: () => void }> {
  const { port, accepted } = await pausedServer(host);
  const c = await connect(host, port);
  c.on('error', () => undefined);
  await waitAccepted(accepted, 1);
  c.write(Buffer.alloc(bytes, 1));
  return { port, clientPort: c.localPort!, drain: () => accepted[0].resume(), close: () => accepted[0].destroy() };
}

export interface PyHolder {
  child: ChildProcess;
  port: number;
  pid: number;
  /** The first line the script printed (it starts with the port). */
  line: string;
}

/** Runs a python3 script that prints its port on the first line, then holds its sockets until killed. */
export async function python(script: string, env: Record<string, string> = {}): Promise<PyHolder> {
  const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  cleanups.push(() => child.kill('SIGKILL'));
  let buf = '';
  child.stdout!.setEncoding('utf8');
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`python exited with ${code} before printing a port`)));
  });
  return { child, port: Number(line.split(' ')[0]), pid: child.pid!, line };
}

/** `n` accepted TCP connections on 127.0.0.1, each with 1 unread byte on the accepted side, held by python. */
export function unreadConnections(n: number, backlog: number): Promise<PyHolder> {
  return python(`
import socket, time
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(${backlog})
port = srv.getsockname()[1]
keep = []
for i in range(${n}):
    c = socket.create_connection(('127.0.0.1', port)); c.send(b'x')
    a, _ = srv.accept(); keep += [c, a]
print(port, flush=True)
time.sleep(3600)
`);
}

/** A TCP listener that never accepts (backlog given), held by python. */
export function neverAcceptingListener(host: string, backlog: number): Promise<PyHolder> {
  const fam = host.includes(':') ? 'AF_INET6' : 'AF_INET';
  return python(`
import socket, sys, time
s = socket.socket(socket.${fam}, socket.SOCK_STREAM)
s.bind((${JSON.stringify(host)}, 0)); s.listen(${backlog})
print(s.getsockname()[1], flush=True)
time.sleep(3600)
`);
}

/** A bound UDP socket that never reads, held by python. */
export function nonReadingUdp(host: string): Promise<PyHolder> {
  const fam = host.includes(':') ? 'AF_INET6' : 'AF_INET';
  return python(`
import socket, sys, time
s = socket.socket(socket.${fam}, socket.SOCK_DGRAM)
s.bind((${JSON.stringify(host)}, 0))
print(s.getsockname()[1], flush=True)
time.sleep(3600)
`);
}

/**
 * A TCP client held by python that writes without blocking until the kernel refuses more; prints
 * "LOCALPORT SENT" where SENT is exactly the bytes the kernel accepted.
 */
export function stuckSender(host: string, port: number): Promise<PyHolder> {
  return python(`
import socket, time
s = socket.create_connection((${JSON.stringify(host)}, ${port}))
s.setblocking(False)
sent = 0
chunk = b'x' * 65536
idle = 0
while idle < 20:
    try:
        sent += s.send(chunk); idle = 0
    except BlockingIOError:
        idle += 1; time.sleep(0.02)
print(s.getsockname()[1], sent, flush=True)
time.sleep(3600)
`);
}

export async function udpSocket(type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  s.bind(0, host);
  await once(s, 'listening');
  cleanups.push(() => s.close());
  return s;
}

export async function sendUdp(s: dgram.Socket, host: string, port: number, payload: Buffer, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((res, rej) => s.send(payload, port, host, (e) => (e ? rej(e) : res())));
}

/** Polls `probe` until it returns a value accepted by `ok` (kernel state settles asynchronously). */
export async function eventually<T>(probe: () => T | Promise<T>, ok: (v: T) => boolean, tries = 200): Promise<T> {
  let v = await probe();
  for (let i = 0; i < tries && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 10));
    v = await probe();
  }
  return v;
}

export interface SsRow {
  netid: string;
  state: string;
  recvQ: number;
  sendQ: number;
  local: string;
  peer: string;
  skmem?: Record<string, number>;
}

/** `ss -tuanmH` parsed; used to check agreement on kernel-memory values. */
export async function ssRows(
  args: string[] = ['-tuanmH'],
) /* keep -t and -u: with one protocol ss drops the Netid column */ : Promise<SsRow[]> {
  const child = spawn('ss', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (out += d));
  await once(child, 'exit');
  const rows: SsRow[] = [];
  const lines = out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const f = lines[i].trim().split(/\s+/);
    if (f.length < 6) continue;
    const row: SsRow = { netid: f[0], state: f[1], recvQ: Number(f[2]), sendQ: Number(f[3]), local: f[4], peer: f[5] };
    const sk = /skmem:\(([^)]*)\)/.exec(lines[i] + ' ' + (lines[i + 1] ?? ''));
    if (sk) {
      row.skmem = {};
      for (const part of sk[1].split(',')) {
        const m = /^([a-z]+)(\d+)$/.exec(part);
        if (m) row.skmem[m[1]] = Number(m[2]);
      }
    }
    rows.push(row);
  }
  return rows;
}
