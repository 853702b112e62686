#!/usr/bin/env node
// CI's summary line, from vitest JSON reports: counts what failed truthfully and names what did not run.
// Rule: one line per problem, then exactly one last line "N passed, M failed" over ALL runs. M counts
// failed tests, unhandled errors, and each suite (file) that failed without a failed test (a suite
// failing to load or a failing hook counts once; the tests it kept from running are not counted again).
// A run with no test at all, a missing report, or a non-zero vitest exit with nothing else failed counts
// as 1 failure. Skipped and todo tests are always named, per run; with --strict (the CI machine has
// every tool the tests use) each one counts as failed.
// The same suite on several Node.js lines: each --node run is labelled "node <version>", and a test file
// that registered fewer tests (in any state) on one Node line than on another is named for the run that
// lacks them, each missing test counted like a skipped one (a file must not quietly register fewer
// tests on some Node line). Files are compared by their number of tests, since a title may differ
// between runs (one naming a temporary path); the missing titles are named where they can be told.
// With more than one run, each run's own counts are printed before the last line.
//
// usage: ci-summary.mjs [--strict] (--run <label> | --node <version>) <vitest-report.json> <errors.json> <vitest-exit-status> ...
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

const shortName = (name) => {
  const rel = relative(process.cwd(), name);
  return rel && !rel.startsWith('..') ? rel : name;
};

/** Summarises one vitest run. Returns { passed, failed, problems[], skipped[], seen, brokenFiles }:
 *  seen maps each test file to the full names of its tests in the report (any state), brokenFiles
 *  holds the files that failed as a whole (the tests they kept from running are counted already);
 *  both stay empty when the run has no report or no test at all (counted already too). */
function summariseRun({ label, report, errors, status }) {
  const problems = [];
  const skipped = [];
  const seen = new Map();
  const brokenFiles = new Set();
  let passed = 0;
  let failed = 0;
  const where = (name) => `${label}: ${shortName(name)}`;
  if (!report || !Array.isArray(report.testResults)) {
    problems.push(`${label}: no vitest report (vitest exit status ${status}; see the log above)`);
    return { passed, failed: 1, problems, skipped, seen, brokenFiles };
  }
  let total = 0;
  for (const file of report.testResults) {
    const tests = file.assertionResults ?? [];
    const failedHere = tests.filter((t) => t.status === 'failed').length;
    const suiteFailed = file.status === 'failed' && failedHere === 0;
    if (suiteFailed) {
      failed += 1;
      brokenFiles.add(shortName(file.name));
      const notRun = tests.filter((t) => t.status !== 'passed').length;
      const why = file.message ? file.message.split('\n')[0] : 'a hook failed or the file did not load (see the log above)';
      problems.push(`suite failed: ${where(file.name)}: ${why}${notRun ? ` (${notRun} test(s) in it did not run)` : ''}`);
    }
    for (const t of tests) {
      total += 1;
      const names = seen.get(shortName(file.name)) ?? [];
      names.push(t.fullName);
      seen.set(shortName(file.name), names);
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
  return { passed, failed, problems, skipped, seen, brokenFiles };
}

/** Tests that some --node runs registered and others did not, per file (files that failed as a whole
 *  and runs without tests are left out: they are counted already). Returns run -> lines. */
function missingAcrossNodeLines(nodeRuns) {
  const usable = nodeRuns.filter(({ summary }) => summary.seen.size > 0);
  const files = new Set(usable.flatMap(({ summary }) => [...summary.seen.keys()]));
  const missing = new Map();
  for (const { run, summary } of usable) {
    const lacks = [];
    for (const file of files) {
      if (summary.brokenFiles.has(file)) continue;
      const mine = summary.seen.get(file) ?? [];
      let most;
      for (const other of usable) {
        const theirs = other.summary.seen.get(file) ?? [];
        if (theirs.length > (most?.names.length ?? mine.length)) most = { label: other.run.label, names: theirs };
      }
      if (!most) continue;
      const absent = most.names.filter((n) => !mine.includes(n));
      for (let k = 0; k < most.names.length - mine.length; k++) {
        const what = absent[k] !== undefined ? `${file} > ${absent[k]}` : `${file}: a test (titles differ between runs)`;
        lacks.push(`missing: ${run.label}: ${what} (${most.names.length} tests in this file on ${most.label}, ${mine.length} here)`);
      }
    }
    missing.set(run, lacks);
  }
  return missing;
}

function main(argv) {
  let strict = false;
  const runs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--strict') strict = true;
    else if ((argv[i] === '--run' || argv[i] === '--node') && i + 4 < argv.length) {
      const [name, reportFile, errorsFile, status] = argv.slice(i + 1, i + 5);
      const node = argv[i] === '--node';
      const label = node ? `node ${name}` : name;
      runs.push({ label, node, report: readJson(reportFile), errors: readJson(errorsFile), status: Number(status) });
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
  const summaries = runs.map((run) => ({ run, summary: summariseRun(run) }));
  const missing = missingAcrossNodeLines(summaries.filter(({ run }) => run.node));
  let passed = 0;
  let failed = 0;
  const perRun = [];
  for (const { run, summary: s } of summaries) {
    const notRun = [...s.skipped, ...(missing.get(run) ?? [])];
    for (const p of s.problems) console.log(p);
    for (const k of notRun) console.log(strict ? `did not run (nothing may skip on the CI machine): ${k}` : `did not run: ${k}`);
    const failedHere = s.failed + (strict ? notRun.length : 0);
    passed += s.passed;
    failed += failedHere;
    perRun.push(`${run.label}: ${s.passed} passed, ${failedHere} failed${notRun.length ? `, ${notRun.length} did not run` : ''}`);
  }
  if (runs.length > 1) for (const line of perRun) console.log(line);
  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
