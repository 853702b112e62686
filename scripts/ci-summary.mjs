#!/usr/bin/env node
// CI's summary line, from vitest JSON reports: counts what failed truthfully and names what did not run.
// Rule: one line per problem, then exactly one last line "N passed, M failed" over ALL runs. M counts
// failed tests, unhandled errors, and each suite (file) that failed without a failed test (a suite
// failing to load or a failing hook counts once; the tests it kept from running are not counted again).
// A run with no test at all, a missing report, or a non-zero vitest exit with nothing else failed counts
// as 1 failure. Skipped and todo tests are always named, per run; with --strict (the CI machine has
// every tool the tests use) each one counts as failed.
// The same suite on several Node.js lines: each --node run is labelled "node <version>", and a test that
// ran (in any state) on one Node line but is absent from another's report is named for the run it is
// missing from and counted like a skipped test (a test file must not quietly register fewer tests on
// some Node line). With more than one run, each run's own counts are printed before the last line.
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
 *  seen holds "file > full name" of every test in the report (any state), brokenFiles the files that
 *  failed as a whole (the tests they kept from running are counted already); both stay empty when the
 *  run has no report or no test at all (counted already too). */
function summariseRun({ label, report, errors, status }) {
  const problems = [];
  const skipped = [];
  const seen = new Set();
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
      seen.add(`${shortName(file.name)} > ${t.fullName}`);
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

/** Tests that some --node runs have and others lack (not counting files that failed as a whole). */
function missingAcrossNodeLines(nodeRuns) {
  const usable = nodeRuns.filter(({ summary }) => summary.seen.size > 0);
  const union = new Set(usable.flatMap(({ summary }) => [...summary.seen]));
  const missing = new Map(); // run -> lines
  for (const { run, summary } of usable) {
    const lacks = [];
    for (const key of union) {
      if (summary.seen.has(key) || summary.brokenFiles.has(key.slice(0, key.indexOf(' > ')))) continue;
      const on = usable.filter((o) => o.summary.seen.has(key)).map((o) => o.run.label);
      lacks.push(`missing: ${run.label}: ${key} (in the report of ${on.join(', ')})`);
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
