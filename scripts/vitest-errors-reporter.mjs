// A vitest reporter for CI: writes the run's unhandled errors (which vitest's JSON report leaves out)
// and why the run ended to the file named by SOCKWATCH_ERRORS_REPORT, for scripts/ci-summary.mjs.
import { writeFileSync } from 'node:fs';

export default class ErrorsReporter {
  onTestRunEnd(_testModules, unhandledErrors, reason) {
    const file = process.env.SOCKWATCH_ERRORS_REPORT;
    if (!file) return;
    const errors = (unhandledErrors ?? []).map((e) => ({ name: e?.name ?? 'Error', message: String(e?.message ?? e).split('\n')[0] }));
    writeFileSync(file, JSON.stringify({ reason: reason ?? '', unhandledErrors: errors }));
  }
}
