#!/usr/bin/env node
// CI's summary line, from vitest JSON reports: counts what failed truthfully and names what did not run.
// Rule: one line per problem, then exactly one last line "N passed, M failed". M counts failed tests,
// unhandled errors, and each suite (file) that failed without a failed test (a suite failing to load or
// a failing hook counts once; the tests it kept from running are not counted again). A run with no test
// at all, a missing report, or a non-zero vitest exit with nothing else failed counts as 1 failure.
// Skipped and todo tests are always named; with --strict (the CI machine has every tool the tests use)
// each one counts as failed.
//
// usage: ci-summary.mjs [--strict] --run <label> <vitest-report.json> <errors.json> <vitest-exit-status> [--run ...]
//   errors.json is written by scripts/vitest-errors-reporter.mjs (unhandled errors; may be missing).
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Summarises one vitest run. Returns { passed, failed, problems[], skipped[] }. */
function summariseRun({ label, report, errors, status }) {
  const problems = [];
  const skipped = [];
  let passed = 0;
  let failed = 0;
  const where = (name) => {
    const rel = relative(process.cwd(), name);
    return `${label}: ${rel && !rel.startsWith('..') ? rel : name}`;
  };
  if (!report || !Array.isArray(report.testResults)) {
    problems.push(`${label}: no vitest report (vitest exit status ${status}; see the log above)`);
    return { passed, failed: 1, problems, skipped };
  }
  let total = 0;
  for (const file of report.testResults) {
    const tests = file.assertionResults ?? [];
    const failedHere = tests.filter((t) => t.status === 'failed').length;
    const suiteFailed = file.status === 'failed' && failedHere === 0;
    if (suiteFailed) {
      failed += 1;
      const notRun = tests.filter((t) => t.status !== 'passed').length;
      const why = file.message ? file.message.split('\n')[0] : 'a hook failed or the file did not load (see the log above)';
      problems.push(`suite failed: ${where(file.name)}: ${why}${notRun ? ` (${notRun} test(s) in it did not run)` : ''}`);
    }
    for (const t of tests) {
      total += 1;
      if (t.status === 'passed') passed += 1;
      else if (t.status === 'failed') {
        failed += 1;
        problems.push(`failed: ${where(file.name)} > ${t.fullName}`);
      } else if (!suiteFailed) skipped.push(`${t.status}: ${where(file.name)} > ${t.fullName}`);
    }
  }
  for (const e of errors?.unhandledErrors ?? []) {
    failed += 1;
    problems.push(`${label}: unhandled error: ${e.name}: ${e.message}`);
  }
  if (total === 0) {
    failed += 1;
    problems.push(`${label}: no test ran (a global setup failed, or no test file was found; see the log above)`);
  } else if (status !== 0 && failed === 0) {
    failed += 1;
    problems.push(`${label}: vitest exited with status ${status} although its report names no failure (see the log above)`);
  }
  return { passed, failed, problems, skipped };
}

function main(argv) {
  let strict = false;
  const runs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--strict') strict = true;
    else if (argv[i] === '--run' && i + 4 < argv.length) {
      const [label, reportFile, errorsFile, status] = argv.slice(i + 1, i + 5);
      runs.push({ label, report: readJson(reportFile), errors: readJson(errorsFile), status: Number(status) });
      i += 4;
    } else {
      console.error(`ci-summary: unexpected argument ${JSON.stringify(argv[i])}`);
      console.log('0 passed, 1 failed');
      return 1;
    }
  }
  if (runs.length === 0) {
    console.error('ci-summary: no --run given');
    console.log('0 passed, 1 failed');
    return 1;
  }
  let passed = 0;
  let failed = 0;
  for (const run of runs) {
    const s = summariseRun(run);
    passed += s.passed;
    failed += s.failed;
    for (const p of s.problems) console.log(p);
    for (const k of s.skipped) console.log(strict ? `did not run (nothing may skip on the CI machine): ${k}` : `did not run: ${k}`);
    if (strict) failed += s.skipped.length;
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
