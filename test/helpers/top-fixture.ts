// Sockets with known destinations and queues for the `sockwatch top` tests, held by a python3 child:
// four listeners on 127.A.B.1-4, A and B from this process's pid (addresses no other test uses, and
// each test file its own: the filter `127.A.B.` keeps the rows of concurrent tests off the screen); 3, 5
// and 7 connections to the first three; the 7 client ends to the third each wrote 5000 bytes the accepted ends never read (receive queues); one connection to
// the fourth closed by its client first, so that client end sits in TIME_WAIT (no owner). The client ends are
// bound to 127.C.B.1 (C in 20-51, not under the filter): a client on 127.0.0.1 can share its ephemeral port
// with another test's connection to another destination, so `127.0.0.1:PORT` named no one connection.
// The four listener ports differ, and no client end has a listener's port number (bind(addr, 0) on
// different addresses can return the same number): a filter or an exclusion by one listener's port
// selects that listener's sockets only.
import { python, type PyHolder } from './sockets';

/** 127.A.B. from this process's pid (A in 61-92, B in 0-249): distinct for pids less than 8000 apart. */
const NET = `127.${61 + (process.pid % 32)}.${(process.pid >> 5) % 250}`;
/** The client ends' source address: 127.C.B.1, C in 20-51. */
export const CLIENT = `127.${20 + (process.pid % 32)}.${(process.pid >> 5) % 250}.1`;

export interface TopFixture {
  holder: PyHolder;
  /** `ip:port` of the four listeners. */
  dest: [string, string, string, string];
  ports: [number, number, number, number];
}

export async function topFixture(): Promise<TopFixture> {
  const holder = await python(`
import socket, time
ls = []
keep = []
def bound(addr, taken):
    # a port of its own: bind(addr, 0) on different addresses can return the same number twice
    while True:
        s = socket.socket(); s.bind((addr, 0))
        if s.getsockname()[1] not in taken: return s
        s.close()
for i in range(4):
    s = bound('${NET}.%d' % (1 + i), [l.getsockname()[1] for l in ls]); s.listen(64); ls.append(s)
ports = [l.getsockname()[1] for l in ls]
def client(i):
    c = bound('${CLIENT}', ports); c.connect(ls[i].getsockname()); return c
for i, n in enumerate([3, 5, 7]):
    for j in range(n):
        c = client(i); a, _ = ls[i].accept(); keep += [c, a]
        if i == 2: c.send(b'x' * 5000)
c = client(3); a, _ = ls[3].accept()
c.close(); time.sleep(0.1); a.close()
print(' '.join(str(s.getsockname()[1]) for s in ls), flush=True)
time.sleep(3600)
`);
  const ports = holder.line.split(' ').map(Number) as TopFixture['ports'];
  const dest = ports.map((p, i) => `${NET}.${1 + i}:${p}`) as TopFixture['dest'];
  return { holder, dest, ports };
}

/** The filter that selects the fixture's rows. */
export const FIXTURE_FILTER = `${NET}.`;

/** A regex source matching `s` literally. */
export function literal(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
