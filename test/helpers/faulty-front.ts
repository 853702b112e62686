// A real HTTP front on 127.0.0.1 that forwards to Azurite but breaks the requests it is told to:
// per operation (`faults`, keyed by the `comp` query parameter or the method, consumed in order) or
// every request while `down` is set (storage down). Faults: 503, 429 with Retry-After 0, 403, a hang
// (for the per-try timeout) or a reset connection. Rule: only loopback traffic, real sockets.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'pass' | '503' | '429' | '403' | 'hang' | 'reset';

export interface FaultyFront {
  url: string;
  faults: Map<string, Fault[]>;
  /** While set, every request gets this fault (faults queued per operation are not consumed). */
  down: Fault | undefined;
  /** Requests seen, by fault applied ('pass' = forwarded). */
  seen: Record<Fault, number>;
  close(): Promise<void>;
}

export async function faultyFront(target: URL): Promise<FaultyFront> {
  const front: FaultyFront = {
    url: '',
    faults: new Map(),
    down: undefined,
    seen: { pass: 0, '503': 0, '429': 0, '403': 0, hang: 0, reset: 0 },
    close: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    const comp = new URL(req.url!, 'http://x').searchParams.get('comp') ?? req.method!;
    const fault = front.down ?? front.faults.get(comp)?.shift() ?? 'pass';
    front.seen[fault]++;
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault === 'hang') {
      req.resume();
      return; // never answers; the client's per-try timeout ends it
    }
    if (fault === '503' || fault === '429' || fault === '403') {
      req.resume();
      req.on('end', () => {
        const headers: http.OutgoingHttpHeaders = fault === '429' ? { 'retry-after': '0' } : {};
        if (fault === '403') headers['x-ms-error-code'] = 'AuthenticationFailed';
        res.writeHead(Number(fault), headers);
        res.end();
      });
      return;
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  front.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return front;
}
