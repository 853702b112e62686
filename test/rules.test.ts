// deploy/prometheus/sockwatch-rules.yaml: the alerting rules pass `promtool check rules` and their unit
// tests (`promtool test rules deploy/prometheus/sockwatch-rules.test.yaml`, series written as the exporter
// names them) pass; the same tests fail when a threshold or a rule is broken, so they can catch a real
// mistake. promtool is Debian's `prometheus` package (.ci/run installs it where missing).
// End to end: a real `sockwatch exporter --all-netns` scrapes sockets this test makes in a network
// namespace of its own (a listener whose accept queue is full, 110 connections to one destination, an
// unread byte); that namespace's part of the scrape, as constant series, is fed to the rules with
// promtool, and exactly the alerts those sockets call for fire, with the labels the exporter gave them
// (so the rules use the metric and label names the exporter serves).
// Not exercised here: a Prometheus server evaluating these rules over time and an Alertmanager routing
// them (test/prometheus*.test.ts scrape the exporter with a real server).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, startCli } from './helpers/cli';
import { canNetns, cleanupNetns, inNewNetns, netnsInode } from './helpers/netns';
import { tmpDir } from './helpers/tmp';
import { waitFor } from './helpers/wait';

const root = path.join(__dirname, '..');
const rulesDir = path.join(root, 'deploy', 'prometheus');
const rulesFile = 'sockwatch-rules.yaml';
const testFile = 'sockwatch-rules.test.yaml';

afterAll(async () => {
  await killCliProcesses();
  await cleanupNetns();
  await runCleanups();
});

const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
const title = promtool ? 'Prometheus alerting rules (deploy/prometheus)' : 'Prometheus alerting rules (skipped: promtool is not installed)';

function run(args: string[], cwd: string): { status: number | null; out: string } {
  const r = spawnSync(promtool, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A copy of the rules and their tests in a directory with a space in its path, the rules edited. */
function editedCopy(edit: (rules: string) => string): string {
  const dir = path.join(tmpDir('rules'), 'with space');
  fs.mkdirSync(dir);
  const rules = fs.readFileSync(path.join(rulesDir, rulesFile), 'utf8');
  const edited = edit(rules);
  expect(edited, 'the edit changed the rules').not.toBe(rules);
  fs.writeFileSync(path.join(dir, rulesFile), edited);
  fs.copyFileSync(path.join(rulesDir, testFile), path.join(dir, testFile));
  return dir;
}

/** Starts `sockwatch ARGS` (a metrics listener on port 0) and returns one scrape of it. */
async function scrapeOf(args: string[]): Promise<string> {
  const cli = startCli(args);
  const at = /http:\/\/127\.0\.0\.1:\d+\/metrics/;
  await waitFor(`${args[0]} to serve metrics`, () => at.test(cli.output()), {
    giveUpIf: () => cli.child.exitCode !== null,
    detail: () => cli.output(),
  });
  const text = await (await fetch(at.exec(cli.output())![0])).text();
  cli.child.kill('SIGTERM');
  return text;
}

describe.skipIf(!promtool)(title, () => {
  it('pass promtool check rules', () => {
    const r = run(['check', 'rules', rulesFile], rulesDir);
    expect(r.out).toMatch(/SUCCESS: 12 rules found/);
    expect(r.status, r.out).toBe(0);
  });

  it('pass their promtool unit tests', () => {
    const r = run(['test', 'rules', testFile], rulesDir);
    expect(r.out).toMatch(/SUCCESS/);
    expect(r.status, r.out).toBe(0);
  });

  it('the unit tests fail when the SNAT limit is wrong (128 per destination replaced by 256)', () => {
    const dir = editedCopy((rules) => rules.replace(/(^\s+expr: .*)\b128\b/gm, '$1256'));
    expect(run(['check', 'rules', rulesFile], dir).status).toBe(0);
    const r = run(['test', 'rules', testFile], dir);
    expect(r.out).toMatch(/alertname: SockwatchSnatPortsNearLimit/);
    expect(r.out).toMatch(/SockwatchSnatPortsExhausted/);
    expect(r.status).toBe(1);
  });

  it('the unit tests fail when "other" is not left out or a for: is shortened', () => {
    const other = run(
      ['test', 'rules', testFile],
      editedCopy((rules) => rules.replaceAll('{destination!="other"}', '')),
    );
    expect(other.out).toMatch(/destination="other"/);
    expect(other.status).toBe(1);
    const early = run(
      ['test', 'rules', testFile],
      editedCopy((rules) => rules.replace(/(alert: SockwatchSocketQueueBacklog\n(?:.*\n)*?\s+for: )5m/, '$11m')),
    );
    expect(early.out).toMatch(/alertname: SockwatchSocketQueueBacklog/);
    expect(early.status).toBe(1);
  });

  it('promtool check rules rejects a broken expression', () => {
    const dir = editedCopy((rules) => rules.replace('sockwatch_netns_up == 0', 'sockwatch_netns_up == == 0'));
    const r = run(['check', 'rules', rulesFile], dir);
    expect(r.out).toMatch(/FAILED/);
    expect(r.status).toBe(1);
  });

  it.skipIf(!canNetns)(
    `a real exporter's scrape fires exactly the alerts its sockets call for${canNetns ? '' : ' (skipped: needs root, ip and unshare)'}`,
    async () => {
      // In a network namespace of its own (no other test's sockets in it), held by python3:
      // - a listener that never accepts, its queue filled to its backlog (4 of 4): AcceptQueueFull, NearBacklog;
      // - 110 connections to one destination (over 80% of 128, under 128): SnatPortsNearLimit and
      //   OutboundConnectionsHigh, not SnatPortsExhausted, not the node-wide rule;
      // - one byte nobody reads: a socket over --recv-threshold 0, SocketQueueBacklog.
      const holder = await inNewNetns(`import socket, time
full = socket.socket(); full.bind(('127.0.0.1', 0)); full.listen(4)
waiting = [socket.create_connection(full.getsockname()) for _ in range(4)]
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(256)
clients = [socket.create_connection(srv.getsockname()) for _ in range(110)]
accepted = [srv.accept()[0] for _ in range(110)]
clients[0].send(b'x')
print(full.getsockname()[1], srv.getsockname()[1], flush=True)
time.sleep(3600)
`);
      const [fullPort, destPort] = holder.firstLine.split(' ').map(Number);
      const netns = String(netnsInode(`/proc/${holder.pid}/ns/net`));
      const scrape = await scrapeOf(['exporter', '--listen', '127.0.0.1:0', '--all-netns', '--recv-threshold', '0']);

      // The scrape's series of that namespace, of the metrics the rules use, each held constant for 10 minutes.
      const rules = fs.readFileSync(path.join(rulesDir, rulesFile), 'utf8');
      const used = new Set(rules.match(/\bsockwatch_[a-z0-9_]+/g));
      const series: string[] = [];
      for (const line of scrape.split('\n')) {
        const m = /^([a-z_:][a-z0-9_:]*)\{(.*)\} (\S+)$/i.exec(line);
        if (!m || !used.has(m[1]!) || !m[2]!.includes(`netns="${netns}"`) || !Number.isFinite(Number(m[3]))) continue;
        series.push(`      - series: ${JSON.stringify(`${m[1]}{${m[2]}}`)}\n        values: "${Number(m[3])}x10"`);
      }
      /** The labels of the scrape's series `name` in that namespace with `key="value"`. */
      const labelsOf = (name: string, key: string, value: string): string => {
        const line = scrape
          .split('\n')
          .find((l) => l.startsWith(`${name}{`) && l.includes(`netns="${netns}"`) && l.includes(`${key}="${value}"`));
        expect(line, `${name}{netns="${netns}",${key}="${value}"} in the scrape`).toBeDefined();
        return /\{(.*)\}/.exec(line!)![1]!;
      };
      const listener = labelsOf('sockwatch_listen_accept_queue', 'local', `127.0.0.1:${fullPort}`);
      const destination = labelsOf('sockwatch_outbound_connections', 'destination', `127.0.0.1:${destPort}`);
      const recv = labelsOf('sockwatch_queue_over_threshold_sockets', 'queue', 'recv');
      const alert = (name: string, severity: string, labels: string) =>
        `          - labels: '${`ALERTS{alertname="${name}",alertstate="firing",severity="${severity}",${labels}}`}'\n            value: 1`;
      // Exactly these alerts fire for that namespace, nothing else.
      const test = [
        `rule_files: [${rulesFile}]`,
        'evaluation_interval: 1m',
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        ...series,
        '    promql_expr_test:',
        `      - expr: 'ALERTS{alertstate="firing",netns="${netns}"}'`,
        '        eval_time: 6m',
        '        exp_samples:',
        alert('SockwatchAcceptQueueFull', 'critical', listener),
        alert('SockwatchAcceptQueueNearBacklog', 'warning', listener),
        alert('SockwatchOutboundConnectionsHigh', 'warning', destination),
        alert('SockwatchSnatPortsNearLimit', 'warning', destination),
        alert('SockwatchSocketQueueBacklog', 'warning', recv),
      ].join('\n');
      const dir = path.join(tmpDir('rules-e2e'), 'with space');
      fs.mkdirSync(dir);
      fs.copyFileSync(path.join(rulesDir, rulesFile), path.join(dir, rulesFile));
      fs.writeFileSync(path.join(dir, 'e2e.test.yaml'), test);
      const r = run(['test', 'rules', 'e2e.test.yaml'], dir);
      expect(r.out, `${r.out.slice(0, 4000)}\n--- generated test (end) ---\n${test.slice(-1500)}`).toMatch(/SUCCESS/);
      expect(r.status).toBe(0);
    },
  );

  it.skipIf(process.getuid?.() !== 0)(
    `every metric the rules use is one sockwatch serves (exporter, queues and snat --metrics-listen)${process.getuid?.() === 0 ? '' : ' (skipped: --all-netns needs root)'}`,
    async () => {
      const dir = tmpDir('rules-metrics');
      const served = [
        await scrapeOf(['exporter', '--listen', '127.0.0.1:0', '--all-netns', '--recv-threshold', '1m']),
        await scrapeOf([
          'queues',
          '--url',
          'http://127.0.0.1:9/alerts',
          '--state-dir',
          path.join(dir, 'queues'),
          '--metrics-listen',
          '127.0.0.1:0',
        ]),
        await scrapeOf(['snat', '--log-dir', path.join(dir, 'snat'), '--metrics-listen', '127.0.0.1:0']),
      ].join('\n');
      const used = [...new Set(fs.readFileSync(path.join(rulesDir, rulesFile), 'utf8').match(/\bsockwatch_[a-z0-9_]+/g))];
      expect(used.length).toBeGreaterThan(10);
      const typed = new Set([...served.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
      expect(used.filter((name) => !typed.has(name))).toEqual([]);
    },
  );
});
