// A worker must never take the process down. Rule under test (native/addon.cc's teardown rule):
// worker.terminate() or process.exit() inside a worker, in the middle of any sockwatch call, ends
// that worker only. The host runs as a child process (a crash would otherwise take the test runner
// with it): its exit code and stderr say whether it survived 30 stops per call kind.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const fixture = path.join(__dirname, 'fixtures', 'lifecycle', 'worker-teardown.cjs');

function host(mode: string, iterations = 30): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [fixture, root, mode, String(iterations)], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

describe('worker teardown during a call', () => {
  const modes: [string, string][] = [
    ['async', 'terminate() during async scans'],
    ['sync', 'terminate() during sync scans'],
    ['lookup', 'terminate() during queued lookups'],
    ['lookup-sync', 'terminate() during lookupSync'],
    ['mixed', 'terminate() with scans and lookups queued together'],
    ['exit-async', 'process.exit() in the worker during async scans'],
    ['exit-lookup', 'process.exit() in the worker during lookups'],
  ];
  for (const [mode, title] of modes) {
    it(`${title}: the host process survives 30 times`, () => {
      const r = host(mode);
      expect(r.stderr).not.toMatch(/FATAL|napi_|Segmentation|Aborted/);
      expect({ status: r.status, signal: r.signal }).toEqual({ status: 0, signal: null });
      expect(r.stdout).toMatch(new RegExp(`^survived ${mode} 30 \\d+\\n$`));
    });
  }
});
