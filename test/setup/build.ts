// CLI tests run the compiled CLI as a child process: build it once per test run, as npm install does.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export default function setup(): void {
  const root = path.join(__dirname, '..', '..');
  execFileSync(process.execPath, [path.join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
}
