// Bad input on the command line, end to end (the compiled CLI as a child process). The rule under
// test: bad input exits 2 with exactly one line on stderr that names the flag and what is allowed,
// and creates nothing. Each case here was reported by issue 8 ("Bad input").
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli, type CliResult } from './helpers/cli';
import { tmpDir } from './helpers/tmp';

afterEach(async () => {
  await killCliProcesses();
  await runCleanups();
});

const CLI = path.resolve(__dirname, '../dist/cli/main.js');
const isRoot = process.getuid?.() === 0;
/** A receiver address nothing listens on: these runs must stop before any delivery. */
const URL_NOWHERE = 'http://127.0.0.1:9/hook';

/** Exit 2 and exactly one line on stderr, matching `line`; nothing on stdout. */
function expectUsageError(r: CliResult, line: RegExp): void {
  expect(r.signal).toBeNull();
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr.trimEnd()).toMatch(line);
  expect(r.code).toBe(2);
}

describe('state directories sockwatch must not use', () => {
  it.each([
    ['/proc/forbidden', '/proc'],
    ['/proc/self/sockwatch/state', '/proc'],
    ['/sys/fs/sockwatch-test/state', '/sys'],
    ['/proc', '/proc'],
  ])('queues --state-dir %s exits 2 with one line and creates nothing', async (dir, root) => {
    const cwd = tmpDir('bad-input');
    const r = await runCli(['queues', '--url', URL_NOWHERE, '--state-dir', dir], { cwd });
    expectUsageError(r, new RegExp(`^sockwatch: --state-dir: ${dir} is under ${root}, a kernel pseudo file system`));
    expect(fs.existsSync('/sys/fs/sockwatch-test')).toBe(false);
    expect(fs.existsSync('/proc/forbidden')).toBe(false);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('a relative state dir that resolves under /proc, and a default under /proc, are refused too', async () => {
    const rel = await runCli(['queues', '--url', URL_NOWHERE, '--state-dir', 'state'], { cwd: '/proc' });
    expectUsageError(rel, /^sockwatch: --state-dir: \/proc\/state is under \/proc/);
    const cwd = tmpDir('bad-input');
    const viaXdg = await runCli(['queues', '--url', URL_NOWHERE], { cwd, env: { XDG_STATE_HOME: '/proc/xdg' } });
    expectUsageError(viaXdg, /^sockwatch: --state-dir: \/proc\/xdg\/sockwatch is under \/proc/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it.each([[['--state-dir', '']], [['--state-dir=']]])('queues %j exits 2 and writes nothing to the working directory', async (flag) => {
    const cwd = tmpDir('bad-input');
    const r = await runCli(['queues', '--url', URL_NOWHERE, ...flag], { cwd });
    expectUsageError(r, /^sockwatch: --state-dir: expected a directory, got ""$/);
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it.each([[['--log-dir', '']], [['--state-dir', '']]])('snat %j exits 2', async (flag) => {
    const cwd = tmpDir('bad-input');
    const r = await runCli(['snat', ...flag, '-d', '0.001'], { cwd });
    expectUsageError(r, new RegExp(`^sockwatch: ${flag[0]}: expected a directory`));
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it.each([
    ['--log-dir', '/proc/sockwatch-logs'],
    ['--state-dir', '/sys/sockwatch-state'],
  ])('snat %s %s exits 2 with one line before it starts, and creates nothing', async (flag, dir) => {
    const cwd = tmpDir('bad-input');
    const r = await runCli(['snat', flag, dir, '-d', '0.001'], { cwd });
    expectUsageError(r, new RegExp(`^sockwatch: ${flag}: ${dir} is under /(proc|sys), a kernel pseudo file system`));
    expect(fs.existsSync(dir)).toBe(false);
  });

  it.skipIf(!isRoot)('a missing directory on a read-only mount is reported as EROFS, not ENOENT', () => {
    const root = tmpDir('bad-input');
    fs.mkdirSync(path.join(root, 'ro'));
    // Inside a private mount namespace: a read-only tmpfs at ROOT/ro, then the CLI with a state dir
    // two levels below it (neither level exists).
    const script = 'mount -t tmpfs -o ro none "$1/ro" && exec "$2" "$3" queues --url "$4" --state-dir "$1/ro/a/b"';
    const r = spawnSync('unshare', ['--mount', 'sh', '-c', script, 'sh', root, process.execPath, CLI, URL_NOWHERE], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expectUsageError(
      { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr },
      new RegExp(`^sockwatch: --state-dir: cannot create ${root}/ro/a: read-only file system \\(EROFS\\)$`),
    );
  });
});

describe('negative numbers name the flag', () => {
  it.each([
    [['queues', '--recv-threshold', '-5'], '--recv-threshold', '-5'],
    [['queues', '--send-threshold', '-5k'], '--send-threshold', '-5k'],
    [['queues', '--repeat', '-1'], '--repeat', '-1'],
    [['queues', '--accept-threshold', '-1'], '--accept-threshold', '-1'],
    [['queues', '--interval', '-0.5'], '--interval', '-0.5'],
    [['list', '--min-recv', '-1'], '--min-recv', '-1'],
    [['list', '--min-send=-1'], '--min-send', '-1'],
    [['snat', '-d', '-1'], '-d', '-1'],
    [['snat', '-t', '-3'], '-t', '-3'],
  ])('%j says the flag must not be negative', async (args, flag, value) => {
    const r = await runCli(args, { cwd: tmpDir('bad-input') });
    expectUsageError(r, new RegExp(`^sockwatch: ${flag}: "${value}" must not be negative$`));
    expect(r.stderr).not.toMatch(/ambiguous/);
  });
});

describe('sizes say which units exist', () => {
  it.each([
    [['list', '--min-recv', '1x'], '--min-recv', '1x'],
    [['list', '--min-send', '1.5k'], '--min-send', '1.5k'],
    [['queues', '--recv-threshold', '10kb'], '--recv-threshold', '10kb'],
  ])('%j lists k, m and g', async (args, flag, value) => {
    const r = await runCli(args, { cwd: tmpDir('bad-input') });
    expectUsageError(r, new RegExp(`^sockwatch: ${flag}: "${value}" is not a non-negative integer with an optional unit k, m or g`));
  });

  it('the units it names are accepted', async () => {
    const r = await runCli(['list', '--tcp', '--min-recv', '1k', '--min-send', '2M', '--sport', '1'], { cwd: tmpDir('bad-input') });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('one list of state names', () => {
  /** The names --help lists after "--state LIST". */
  async function helpStateNames(cmd: 'list' | 'queues'): Promise<string[]> {
    const help = (await runCli([cmd, '--help'])).stdout;
    const section = /--state LIST[^:]*:([\s\S]*?)\n {2}--sport/.exec(help);
    expect(section, help).not.toBeNull();
    return section![1]!.split(/[\s,]+/).filter(Boolean);
  }

  it('the parser accepts every name --help lists, in one list', async () => {
    const names = await helpStateNames('list');
    expect(names).toEqual(expect.arrayContaining(['established', 'time-wait', 'close', 'unconn', 'all', 'connected', 'synchronized']));
    expect(await helpStateNames('queues')).toEqual(names);
    const r = await runCli(['list', '--tcp', '--sport', '1', '--state', names.join(',')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('an unknown name lists exactly the names --help lists', async () => {
    const r = await runCli(['list', '--state', 'nonsense']);
    expectUsageError(r, /^sockwatch: --state: unknown socket state "nonsense" \(known: [^)]+\)$/);
    const known = /\(known: ([^)]*)\)/.exec(r.stderr)![1]!.split(', ');
    expect(known).toEqual(await helpStateNames('list'));
  });
});
