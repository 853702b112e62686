// A real HTTP(S) receiver on loopback that records every request and answers from a script.
// Replies are taken in order from the script; when it is empty the default reply is used (200).
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { once } from 'node:events';
import { onCleanup } from './cleanup';

export type ScriptedReply =
  | number
  | { status: number; body?: string; headers?: Record<string, string> }
  /** Never answer; the connection is held until the receiver closes. */
  | 'hang'
  /** Close the connection without any response. */
  | 'destroy';

export interface RecordedRequest {
  method: string;
  /** Path and query exactly as sent. */
  url: string;
  path: string;
  /** The raw query string without '?'. */
  rawQuery: string;
  /** Query params in order, duplicates kept. */
  query: Array<[string, string]>;
  headers: http.IncomingHttpHeaders;
  /** What the receiver replied. */
  reply: ScriptedReply;
}

export interface HttpReceiverOptions {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Serve https with this key and certificate. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  replies?: ScriptedReply[];
  defaultReply?: ScriptedReply;
}

export class HttpReceiver {
  readonly requests: RecordedRequest[] = [];
  private readonly script: ScriptedReply[];
  private defaultReply: ScriptedReply;
  private readonly sockets = new Set<net.Socket>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly server: http.Server | https.Server,
    readonly port: number,
    readonly host: string,
    readonly protocol: 'http' | 'https',
    options: HttpReceiverOptions,
  ) {
    this.script = [...(options.replies ?? [])];
    this.defaultReply = options.defaultReply ?? 200;
  }

  static async start(options: HttpReceiverOptions = {}): Promise<HttpReceiver> {
    const host = options.host ?? '127.0.0.1';
    const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }) : http.createServer();
    server.keepAliveTimeout = 60_000;
    server.listen(options.port ?? 0, host);
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const receiver = new HttpReceiver(server, port, host, options.tls ? 'https' : 'http', options);
    server.on(options.tls ? 'secureConnection' : 'connection', (s: net.Socket) => {
      receiver.sockets.add(s);
      s.on('close', () => receiver.sockets.delete(s));
    });
    server.on('request', (req, res) => receiver.handle(req, res));
    return receiver;
  }

  /** Base URL, e.g. http://127.0.0.1:34567 */
  get url(): string {
    return `${this.protocol}://${this.host}:${this.port}`;
  }

  /** Appends replies to the script. */
  reply(...replies: ScriptedReply[]): void {
    this.script.push(...replies);
  }

  setDefaultReply(reply: ScriptedReply): void {
    this.defaultReply = reply;
  }

  /** Param values of every request for one name, in arrival order. */
  values(name: string): string[] {
    return this.requests.flatMap((r) => r.query.filter(([k]) => k === name).map(([, v]) => v));
  }

  /** Resolves once `predicate` holds for the recorded requests; rejects after timeoutMs. */
  async waitFor(predicate: (requests: RecordedRequest[]) => boolean, timeoutMs = 20_000, what = 'requests'): Promise<void> {
    if (predicate(this.requests)) return;
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (!predicate(this.requests)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${this.requests.length} request(s)`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  waitForRequests(n: number, timeoutMs = 20_000): Promise<void> {
    return this.waitFor((r) => r.length >= n, timeoutMs, `${n} request(s)`);
  }

  /** Stops listening and drops every connection, hanging ones included. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const reply = this.script.length > 0 ? this.script.shift()! : this.defaultReply;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const rawQuery = q >= 0 ? url.slice(q + 1) : '';
    this.requests.push({
      method: req.method ?? '',
      url,
      path: q >= 0 ? url.slice(0, q) : url,
      rawQuery,
      query: [...new URLSearchParams(rawQuery)],
      headers: req.headers,
      reply,
    });
    req.resume();
    if (reply === 'destroy') {
      req.socket.destroy();
    } else if (reply !== 'hang') {
      const r = typeof reply === 'number' ? { status: reply } : reply;
      res.writeHead(r.status, { 'content-type': 'text/plain', ...(r.headers ?? {}) });
      res.end(r.body ?? '');
    }
    for (const check of [...this.waiters]) check();
  }
}

/** Starts a receiver that closes at the next runCleanups(). */
export async function receiver(options: HttpReceiverOptions = {}): Promise<HttpReceiver> {
  const rx = await HttpReceiver.start(options);
  onCleanup(() => rx.close());
  return rx;
}

/** A loopback port that was free a moment ago (for a receiver that starts later on a known port). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
