// CLI tests run the compiled CLI as a child process: build it once per test run, as npm install does.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export default function setup(): void {
  // .ci/run runs the suite once per Node line: the first run builds, the others reuse that dist/.
  if (process.env.SOCKWATCH_TEST_REUSE_DIST === '1') return;
  const root = path.join(__dirname, '..', '..');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
}
