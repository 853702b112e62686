// deploy/prometheus/sockwatch-rules.yaml: the alerting rules pass `promtool check rules` and their unit
// tests (`promtool test rules deploy/prometheus/sockwatch-rules.test.yaml`, series written as the exporter
// names them) pass; the same tests fail when a threshold or a rule is broken, so they can catch a real
// mistake. promtool is Debian's `prometheus` package (.ci/run installs it where missing).
// Not exercised here: a Prometheus server evaluating these rules against a live exporter and an
// Alertmanager routing them (test/prometheus*.test.ts scrape the exporter with a real server).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { tmpDir } from './helpers/tmp';

const root = path.join(__dirname, '..');
const rulesDir = path.join(root, 'deploy', 'prometheus');
const rulesFile = 'sockwatch-rules.yaml';
const testFile = 'sockwatch-rules.test.yaml';

afterAll(runCleanups);

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

describe.skipIf(!promtool)(title, () => {
  it('pass promtool check rules', () => {
    const r = run(['check', 'rules', rulesFile], rulesDir);
    expect(r.out).toMatch(/SUCCESS: 9 rules found/);
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
});
