// The metrics HTTP server of `sockwatch exporter` and of `queues` / `snat --metrics-listen`:
// GET (and HEAD) /metrics in the format the Accept header negotiates (lib/metrics/exposition.ts),
// GET /healthz ("ok"), 404 for any other path, 405 for any other method. With a web config
// (lib/metrics/web-config.ts): TLS, client certificates and basic auth, for every path.
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { negotiateFormat, type ExpositionFormat } from './exposition';
import { BasicAuth, type WebConfig } from './web-config';

export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Parses HOST:PORT: an IPv4 address, [IPv6] in brackets, or "localhost"; the port 0 to 65535 (0: any
 * free port). Throws a RangeError naming `flag`.
 */
export function parseListenAddress(text: string, flag = '--listen'): ListenAddress {
  const bad = (why: string): never => {
    throw new RangeError(`${flag}: "${text}" ${why}`);
  };
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+|localhost)):(\d{1,5})$/.exec(text.trim());
  if (!m) return bad('is not HOST:PORT (like 127.0.0.1:9630, [::1]:9630 or 0.0.0.0:9630)');
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined ? !net.isIPv6(host) : host !== 'localhost' && !net.isIPv4(host)) return bad(`has no valid IP address`);
  const port = Number(m[3]);
  if (port > 65535) return bad('has a port above 65535');
  return { host, port };
}

export interface MetricsServerOptions {
  listen: ListenAddress;
  webConfig?: WebConfig;
  /** The exposition in the negotiated format. */
  render(format: ExpositionFormat): Promise<string>;
}

export interface MetricsServer {
  /** Where it listens, e.g. http://127.0.0.1:9630/metrics */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Whether a TLS client certificate passes the config's client_auth_type. */
function clientCertAllowed(socket: tls.TLSSocket, c: NonNullable<WebConfig['tls']>): boolean {
  const cert = socket.getPeerCertificate();
  const given = cert !== null && Object.keys(cert).length > 0;
  switch (c.clientAuth) {
    case 'RequireAnyClientCert':
      return given;
    case 'VerifyClientCertIfGiven':
      return !given || socket.authorized;
    case 'RequireAndVerifyClientCert':
      return given && socket.authorized;
    default:
      return true;
  }
}

/** Starts listening; a failure to listen (EADDRINUSE, EACCES…) rejects with the system error. */
export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const c = o.webConfig;
  const auth = c?.users ? new BasicAuth(c.users) : undefined;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void (async () => {
      for (const [k, v] of Object.entries(c?.headers ?? {})) res.setHeader(k, v);
      const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      if (c?.tls && !clientCertAllowed(req.socket as tls.TLSSocket, c.tls)) return send(403, 'client certificate required\n');
      if (auth && !(await auth.check(req.headers.authorization)))
        return send(401, 'Unauthorized\n', { 'www-authenticate': 'Basic realm="sockwatch"' });
      const pathname = (req.url ?? '/').split('?')[0];
      if (pathname !== '/metrics' && pathname !== '/healthz') return send(404, 'Not Found: the metrics are at /metrics\n');
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'Method Not Allowed\n', { allow: 'GET, HEAD' });
      if (pathname === '/healthz') return send(200, 'ok\n');
      const { format, contentType } = negotiateFormat(req.headers.accept);
      const body = await o.render(format);
      send(200, body, { 'content-type': contentType });
    })().catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`error: ${(e as Error)?.message ?? String(e)}\n`);
    });
  };
  const server: http.Server = c?.tls
    ? https.createServer(
        {
          cert: c.tls.cert,
          key: c.tls.key,
          ...(c.tls.ca ? { ca: c.tls.ca } : {}),
          requestCert: c.tls.clientAuth !== 'NoClientCert',
          rejectUnauthorized: c.tls.clientAuth === 'RequireAndVerifyClientCert',
          minVersion: c.tls.minVersion,
          ...(c.tls.maxVersion ? { maxVersion: c.tls.maxVersion } : {}),
        },
        handler,
      )
    : http.createServer(handler);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.listen.host, port: o.listen.port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  const host = o.listen.host.includes(':') ? `[${o.listen.host}]` : o.listen.host;
  return {
    url: `${c?.tls ? 'https' : 'http'}://${host}:${port}/metrics`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
