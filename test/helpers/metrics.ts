// The exporter (and queues/snat --metrics-listen) as a child process on a free loopback port, and a
// small reader of the exposition for tests: samples by name and labels, never by position.
import * as http from 'node:http';
import * as https from 'node:https';
import { startCli, type CliOptions, type CliProcess } from './cli';
import { deleteNamedNetns, namedNetns, netnsInode, stopHolder } from './netns';
import { waitFor } from './wait';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the sample lines of a Prometheus text or OpenMetrics exposition. */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: m[4] === '+Inf' ? Infinity : Number(m[4]) });
  }
  return out;
}

/** The samples of `name` whose labels include `labels`. */
export function samplesOf(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one value of `name` with `labels` (undefined when absent; throws when several match). */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samplesOf(samples, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

export interface Fetched {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET (or other method) over http or https; options go to the request (ca, auth, cert, key…). */
export function fetchUrl(url: string, options: https.RequestOptions = {}): Promise<Fetched> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export interface ServedCli {
  cli: CliProcess;
  /** e.g. http://127.0.0.1:PORT/metrics */
  url: string;
  port: number;
}

/** Starts `sockwatch <args>` and waits for the stderr line with the metrics URL. */
export async function startServing(args: readonly string[], options: CliOptions = {}): Promise<ServedCli> {
  const cli = startCli(args, options);
  let url = '';
  await waitFor(
    'the metrics URL on stderr',
    () => {
      const m = /(https?:\/\/\S+\/metrics)/.exec(cli.stderr());
      if (m) url = m[1]!;
      return m !== null;
    },
    { ms: 20_000, giveUpIf: () => cli.child.exitCode !== null, detail: () => cli.output() },
  );
  return { cli, url, port: Number(/:(\d+)\/metrics$/.exec(url)![1]) };
}

/** Scrapes and parses; fails on a status other than 200. */
export async function scrape(url: string, options: https.RequestOptions = {}): Promise<Sample[]> {
  const r = await fetchUrl(url, options);
  if (r.status !== 200) throw new Error(`scrape ${url}: HTTP ${r.status} ${r.body}`);
  return parseSamples(r.body);
}

/** A network namespace made for a test, with connections held inside it by a python child. */
export interface TestNetns {
  name: string;
  inode: number;
  /** Destinations inside: 127.0.0.1:port4 (v4 connections) and [::1]:port6 (v6 connections). */
  port4: number;
  port6: number;
  /** Kills its process and deletes it. */
  remove(): Promise<void>;
}

/** `ip netns add NAME` with lo up, `v4` connections to 127.0.0.1:port4 and `v6` to [::1]:port6 inside. */
export async function makeNetnsWithConnections(name: string, v4: number, v6: number): Promise<TestNetns> {
  const holder = (await namedNetns(
    name,
    `import socket, time
l4 = socket.socket(); l4.bind(('127.0.0.1', 0)); l4.listen(64)
l6 = socket.socket(socket.AF_INET6); l6.bind(('::1', 0)); l6.listen(64)
keep = [socket.create_connection(('127.0.0.1', l4.getsockname()[1])) for _ in range(${v4})]
keep += [socket.create_connection(('::1', l6.getsockname()[1])) for _ in range(${v6})]
print(l4.getsockname()[1], l6.getsockname()[1], flush=True)
time.sleep(3600)
`,
  ))!;
  const [port4, port6] = holder.firstLine.split(' ').map(Number);
  return {
    name,
    inode: netnsInode(`/var/run/netns/${name}`),
    port4: port4!,
    port6: port6!,
    remove: async () => {
      await stopHolder(holder);
      deleteNamedNetns(name);
    },
  };
}
