// .ci/run's summary line (scripts/ci-summary.mjs) against crafted vitest JSON reports: every kind of
// failure counts, once per root cause, and the last line is always exactly "N passed, M failed".
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = path.join(__dirname, '..', 'scripts', 'ci-summary.mjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockwatch-ci-summary-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Status = 'passed' | 'failed' | 'skipped' | 'pending' | 'todo';
interface Test {
  path: string[]; // describe titles then the test title
  status: Status;
}
interface File {
  name: string;
  tests: Test[];
  /** The file's own status; 'failed' with no failed test means a hook failed or it did not load. */
  status?: 'passed' | 'failed';
  message?: string;
}

/** A report shaped like vitest's JSON reporter, including its suite counts (which count describes). */
function report(files: File[]): object {
  const tests = files.flatMap((f) => f.tests);
  const failedTests = tests.filter((t) => t.status === 'failed').length;
  return {
    numTotalTestSuites: files.length + files.length * 2,
    numFailedTestSuites: files.filter((f) => f.status === 'failed' || f.tests.some((t) => t.status === 'failed')).length * 3,
    numTotalTests: tests.length,
    numPassedTests: tests.filter((t) => t.status === 'passed').length,
    numFailedTests: failedTests,
    numPendingTests: tests.filter((t) => t.status === 'skipped').length,
    numTodoTests: tests.filter((t) => t.status === 'todo').length,
    success: false,
    testResults: files.map((f) => ({
      name: path.join('/checkout', 'test', f.name),
      status: f.status ?? (f.tests.some((t) => t.status === 'failed') ? 'failed' : 'passed'),
      message: f.message ?? '',
      assertionResults: f.tests.map((t) => ({
        ancestorTitles: t.path.slice(0, -1),
        title: t.path.at(-1),
        fullName: t.path.join(' '),
        status: t.status,
        failureMessages: t.status === 'failed' ? ['AssertionError: expected 1 to be 2'] : [],
      })),
    })),
  };
}

let n = 0;
interface Run {
  report?: object; // undefined: no report file at all
  errors?: { name: string; message: string }[];
  status: number;
  /** A run of the whole suite on this Node.js version (--node); otherwise a plain --run labelled runN. */
  node?: string;
}
function summary(runs: Run[], strict = false): { lines: string[]; last: string; status: number | null } {
  const args = [script, ...(strict ? ['--strict'] : [])];
  runs.forEach((run, i) => {
    const reportFile = path.join(dir, `report-${++n}.json`);
    const errorsFile = path.join(dir, `errors-${n}.json`);
    if (run.report) fs.writeFileSync(reportFile, JSON.stringify(run.report));
    if (run.errors) fs.writeFileSync(errorsFile, JSON.stringify({ reason: 'failed', unhandledErrors: run.errors }));
    if (run.node) args.push('--node', run.node, reportFile, errorsFile, String(run.status));
    else args.push('--run', `run${i + 1}`, reportFile, errorsFile, String(run.status));
  });
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  return { lines, last: lines.at(-1)!, status: r.status };
}

const pass = (...p: string[]): Test => ({ path: p, status: 'passed' });

describe('ci-summary', () => {
  it('counts an unhandled error (vitest exits 1 though every test passed)', () => {
    const s = summary([
      {
        report: report([{ name: 'a.test.ts', tests: [pass('a'), pass('b')] }]),
        errors: [{ name: 'Error', message: 'boom late' }],
        status: 1,
      },
    ]);
    expect(s.last).toBe('2 passed, 1 failed');
    expect(s.lines).toContain('run1: unhandled error: Error: boom late');
    expect(s.status).toBe(1);
  });

  it('counts a non-zero vitest exit whose report names no failure', () => {
    const s = summary([{ report: report([{ name: 'a.test.ts', tests: [pass('a')] }]), status: 1 }]);
    expect(s.last).toBe('1 passed, 1 failed');
  });

  it('counts a failing global setup (no test ran) and a missing report', () => {
    expect(summary([{ report: report([]), errors: [], status: 1 }]).last).toBe('0 passed, 1 failed');
    expect(summary([{ status: 1 }]).last).toBe('0 passed, 1 failed');
    expect(summary([{ report: report([]), status: 0 }]).last).toBe('0 passed, 1 failed');
  });

  it('counts one failing test in nested describes once', () => {
    const files = [
      { name: 'n.test.ts', tests: [{ path: ['outer', 'inner', 'deep', 'fails'], status: 'failed' as const }, pass('outer', 'ok')] },
    ];
    const s = summary([{ report: report(files), status: 1 }]);
    expect(s.last).toBe('1 passed, 1 failed');
    expect(s.lines).toContain('failed: run1: /checkout/test/n.test.ts > outer inner deep fails');
  });

  it('counts a suite whose hook failed once, not its skipped tests again (even on the CI machine)', () => {
    const skipped = ['a', 'b', 'c'].map((t): Test => ({ path: ['dotnet', t], status: 'skipped' }));
    const s = summary([{ report: report([{ name: 'd.test.ts', status: 'failed', tests: skipped }]), status: 1 }], true);
    expect(s.last).toBe('0 passed, 1 failed');
    expect(s.lines.some((l) => l.includes('suite failed') && l.includes('3 test(s) in it did not run'))).toBe(true);
  });

  it('counts a file that failed to load once, with its reason', () => {
    const s = summary([
      {
        report: report([
          { name: 'l.test.ts', status: 'failed', message: "Cannot find module './gone'", tests: [] },
          { name: 'ok.test.ts', tests: [pass('x')] },
        ]),
        status: 1,
      },
    ]);
    expect(s.last).toBe('1 passed, 1 failed');
    expect(s.lines).toContain("suite failed: run1: /checkout/test/l.test.ts: Cannot find module './gone'");
  });

  it('names skipped and todo tests; only --strict counts them as failed', () => {
    const files = [
      {
        name: 's.test.ts',
        tests: [pass('p'), { path: ['netns', 'isolated'], status: 'skipped' as const }, { path: ['later'], status: 'todo' as const }],
      },
    ];
    const loose = summary([{ report: report(files), status: 0 }]);
    expect(loose.last).toBe('1 passed, 0 failed');
    expect(loose.lines).toContain('did not run: skipped: run1: /checkout/test/s.test.ts > netns isolated');
    expect(loose.lines).toContain('did not run: todo: run1: /checkout/test/s.test.ts > later');
    expect(loose.status).toBe(0);
    const strict = summary([{ report: report(files), status: 0 }], true);
    expect(strict.last).toBe('1 passed, 2 failed');
    expect(strict.lines.filter((l) => l.startsWith('did not run (nothing may skip on the CI machine)'))).toHaveLength(2);
    expect(strict.status).toBe(1);
  });

  it('adds several runs (suite, then native tests against build/Release) into one line', () => {
    const s = summary([
      { report: report([{ name: 'a.test.ts', tests: [pass('a'), pass('b')] }]), errors: [], status: 0 },
      { report: report([{ name: 'k.test.ts', tests: [pass('k'), { path: ['k2'], status: 'failed' }] }]), errors: [], status: 1 },
    ]);
    expect(s.last).toBe('3 passed, 1 failed');
    expect(s.lines.filter((l) => /^\d+ passed, \d+ failed$/.test(l))).toEqual([s.last]);
  });

  it("labels each Node line, counts failures of every line, and prints each run's own counts", () => {
    const files = (status: Status) => [{ name: 'k.test.ts', tests: [pass('k'), { path: ['scan'], status }] }];
    const s = summary([
      { node: 'v20.20.2', report: report(files('passed')), errors: [], status: 0 },
      { node: 'v22.23.5', report: report(files('passed')), errors: [], status: 0 },
      { node: 'v26.12.1', report: report(files('failed')), errors: [], status: 1 },
    ]);
    expect(s.last).toBe('5 passed, 1 failed');
    expect(s.lines).toContain('failed: node v26.12.1: /checkout/test/k.test.ts > scan');
    expect(s.lines).toContain('node v20.20.2: 2 passed, 0 failed');
    expect(s.lines).toContain('node v26.12.1: 1 passed, 1 failed');
    expect(s.lines.filter((l) => /^\d+ passed, \d+ failed$/.test(l))).toEqual([s.last]);
    expect(s.status).toBe(1);
  });

  it("names skipped tests per Node line; --strict counts each run's skips", () => {
    const skippedOn26 = [{ name: 's.test.ts', tests: [pass('a'), { path: ['dotnet', 'dump'], status: 'skipped' as const }] }];
    const runs: Run[] = [
      { node: 'v20.20.2', report: report([{ name: 's.test.ts', tests: [pass('a'), pass('dotnet', 'dump')] }]), status: 0 },
      { node: 'v26.12.1', report: report(skippedOn26), status: 0 },
    ];
    const loose = summary(runs);
    expect(loose.lines).toContain('did not run: skipped: node v26.12.1: /checkout/test/s.test.ts > dotnet dump');
    expect(loose.last).toBe('3 passed, 0 failed');
    const strict = summary(runs, true);
    expect(strict.lines).toContain(
      'did not run (nothing may skip on the CI machine): skipped: node v26.12.1: /checkout/test/s.test.ts > dotnet dump',
    );
    expect(strict.lines).toContain('node v26.12.1: 1 passed, 1 failed, 1 did not run');
    expect(strict.last).toBe('3 passed, 1 failed');
  });

  it('names a test that one Node line never registered (absent from its report), like a skip', () => {
    const full = [{ name: 'v.test.ts', tests: [pass('a'), pass('only on some lines')] }];
    const runs: Run[] = [
      { node: 'v20.20.2', report: report(full), status: 0 },
      { node: 'v24.22.3', report: report([{ name: 'v.test.ts', tests: [pass('a')] }]), status: 0 },
      { node: 'v26.12.1', report: report(full), status: 0 },
    ];
    const missingLine =
      'missing: node v24.22.3: /checkout/test/v.test.ts > only on some lines (2 tests in this file on node v20.20.2, 1 here)';
    const loose = summary(runs);
    expect(loose.lines).toContain(`did not run: ${missingLine}`);
    expect(loose.last).toBe('5 passed, 0 failed');
    const strict = summary(runs, true);
    expect(strict.lines).toContain(`did not run (nothing may skip on the CI machine): ${missingLine}`);
    expect(strict.last).toBe('5 passed, 1 failed');
    expect(strict.status).toBe(1);
  });

  it('compares files by their number of tests: a title that differs between runs (a pid in it) is not missing', () => {
    const titled = (pid: number): File[] => [{ name: 'q.test.ts', tests: [pass('a'), pass(`bad input /tmp/state-${pid}`)] }];
    const same = summary(
      [
        { node: 'v20.20.2', report: report(titled(101)), status: 0 },
        { node: 'v26.12.1', report: report(titled(202)), status: 0 },
      ],
      true,
    );
    expect(same.last).toBe('4 passed, 0 failed');
    const fewer = summary(
      [
        { node: 'v20.20.2', report: report(titled(101)), status: 0 },
        { node: 'v26.12.1', report: report([{ name: 'q.test.ts', tests: [pass('bad input /tmp/state-202')] }]), status: 0 },
      ],
      true,
    );
    expect(fewer.lines).toContain(
      'did not run (nothing may skip on the CI machine): missing: node v26.12.1: /checkout/test/q.test.ts > a (2 tests in this file on node v20.20.2, 1 here)',
    );
    expect(fewer.last).toBe('3 passed, 1 failed');
  });

  it('does not count the tests of a file that failed to load on one Node line again as missing', () => {
    const other = { name: 'o.test.ts', tests: [pass('z')] };
    const runs: Run[] = [
      { node: 'v20.20.2', report: report([{ name: 'l.test.ts', tests: [pass('x'), pass('y')] }, other]), status: 0 },
      {
        node: 'v26.12.1',
        report: report([{ name: 'l.test.ts', status: 'failed', message: 'SyntaxError: nope', tests: [] }, other]),
        status: 1,
      },
      { node: 'v24.22.3', status: 1 }, // no report at all: one failure, not three missing tests
    ];
    const s = summary(runs, true);
    expect(s.lines).toContain('suite failed: node v26.12.1: /checkout/test/l.test.ts: SyntaxError: nope');
    expect(s.lines).toContain('node v24.22.3: no vitest report (vitest exit status 1; see the log above)');
    expect(s.lines.some((l) => l.includes('missing:'))).toBe(false);
    expect(s.last).toBe('4 passed, 2 failed');
  });

  it('compares only the Node-line runs: a subset run (--run) is not missing anything', () => {
    const s = summary(
      [
        {
          node: 'v20.20.2',
          report: report([
            { name: 'a.test.ts', tests: [pass('a')] },
            { name: 'k.test.ts', tests: [pass('k')] },
          ]),
          status: 0,
        },
        { report: report([{ name: 'k.test.ts', tests: [pass('k')] }]), status: 0 },
      ],
      true,
    );
    expect(s.last).toBe('3 passed, 0 failed');
    expect(s.lines).toContain('run2: 1 passed, 0 failed');
  });

  it('green is green', () => {
    const s = summary([{ report: report([{ name: 'a.test.ts', tests: [pass('a')] }]), errors: [], status: 0 }], true);
    expect(s.lines).toEqual(['1 passed, 0 failed']);
    expect(s.status).toBe(0);
  });
});
