// Sockets with known destinations and queues for the `sockwatch top` tests, held by a python3 child:
// four listeners on 127.A.B.1-4, A and B from this process's pid (addresses no other test uses, and
// each test file its own: the filter `127.A.B.` keeps the rows of concurrent tests off the screen); 3, 5
// and 7 connections to the first three; the 7 client ends to the third each wrote 5000 bytes the accepted ends never read (receive queues); one connection to
// the fourth closed by its client first, so that client end sits in TIME_WAIT (no owner). The client ends are
// bound to 127.C.B.1 (C in 20-51, not under the filter): a client on 127.0.0.1 can share its ephemeral port
// with another test's connection to another destination, so `127.0.0.1:PORT` named no one connection.
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
for i in range(4):
    s = socket.socket(); s.bind(('${NET}.%d' % (1 + i), 0)); s.listen(64); ls.append(s)
for i, n in enumerate([3, 5, 7]):
    for j in range(n):
        c = socket.create_connection(ls[i].getsockname(), source_address=('${CLIENT}', 0)); a, _ = ls[i].accept(); keep += [c, a]
        if i == 2: c.send(b'x' * 5000)
c = socket.create_connection(ls[3].getsockname(), source_address=('${CLIENT}', 0)); a, _ = ls[3].accept()
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
