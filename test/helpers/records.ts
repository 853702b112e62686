// A SocketRecord for tracker and episode tests that need no kernel: an established TCP socket on
// 127.0.0.1:8080, with `exceeded` computed from the thresholds unless given.
import { exceeds, type Thresholds } from '../../lib/queues';
import type { SocketRecord } from '../../lib/sampler';

export const THRESHOLDS: Thresholds = { recv: 100, send: 100, accept: 'limit' };

export function socketRecord(o: Partial<SocketRecord> = {}, thresholds: Thresholds = THRESHOLDS): SocketRecord {
  const r: SocketRecord = {
    protocol: 'tcp',
    family: 4,
    state: 1,
    stateName: 'established',
    localAddress: '127.0.0.1',
    localPort: 8080,
    remoteAddress: '127.0.0.1',
    remotePort: 50000,
    recvQ: 0,
    sendQ: 0,
    uid: 0,
    inode: 1234,
    cookie: 42n,
    ifindex: 0,
    timer: 0,
    retrans: 0,
    expires: 0,
    exceeded: [],
    ...o,
  };
  if (!o.exceeded) r.exceeded = (['RECV', 'SEND', 'ACCEPT'] as const).filter((t) => exceeds(t, r, thresholds));
  return r;
}
