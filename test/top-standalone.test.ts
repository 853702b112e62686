// `sockwatch top` inside the single executable (dist-standalone/sockwatch-linux-x64, built here by
// scripts/build-standalone.mjs, which does nothing when it is up to date): the bundled view draws,
// switches views, looks up owners and gives the terminal back, and prints the plain snapshot. A copy
// of the file runs from a directory without node_modules (test/standalone.test.ts also hides every
// Node binary; here the point is top's own code in the bundle).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCleanups } from './helpers/cleanup';
import { killCliProcesses, runCli } from './helpers/cli';
import { cleanupSockets } from './helpers/sockets';
import { hasTmux, Tmux } from './helpers/tmux';
import { FIXTURE_FILTER, literal, topFixture, type TopFixture } from './helpers/top-fixture';
import { tmpDir } from './helpers/tmp';

const ROOT = path.resolve(__dirname, '..');
const BUILT = path.join(ROOT, 'dist-standalone', 'sockwatch-linux-x64');
const noTmux = !hasTmux();
if (noTmux) console.warn('top-standalone.test.ts: tmux is not installed (Debian package tmux)');

let exe: string;
let work: string;
let fx: TopFixture;
let tmux: Tmux | undefined;

beforeAll(async () => {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-standalone.mjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const base = tmpDir('top-standalone');
  exe = path.join(base, 'sockwatch');
  work = path.join(base, 'work');
  fs.mkdirSync(work);
  fs.copyFileSync(BUILT, exe);
  fs.chmodSync(exe, 0o755);
  fx = await topFixture();
}, 180_000);

afterAll(async () => {
  tmux?.kill();
  await killCliProcesses();
  await cleanupSockets();
  await runCleanups();
});

describe.skipIf(noTmux)('top in the single executable, in a terminal', () => {
  it('draws Destinations and Queues with owners; q gives the terminal back', async () => {
    tmux = new Tmux('top-sea');
    const pane = tmux.start(['sh', '-c', `cd "$1" && exec "$2" top --interval 0.3 --filter "$3"`, 'sh', work, exe, FIXTURE_FILTER], {
      env: { NODE_OPTIONS: undefined, NO_COLOR: undefined },
    });
    // 30 s: the first frame of a CLI started on a loaded machine, then owners from the first walk of /proc/*/fd
    await pane.waitFor('the destinations', (t) => new RegExp(`^  ${literal(fx.dest[1])} +5 +5 .*ESTAB 5$`, 'm').test(t), 30_000);
    pane.keys('2');
    const queue = new RegExp(`^  ESTAB +4\\.9k +0 +${literal(fx.dest[2])} +[\\d.]+:\\d+ +${fx.holder.pid} python3$`);
    await pane.waitFor('the queues with their owner', (t) => t.split('\n').filter((l) => queue.test(l)).length === 7, 30_000);
    pane.keys('q');
    const after = await pane.waitFor('the exit', (t) => t.includes('program exited'));
    expect(after.trim()).toBe('program exited 0');
    expect(pane.display('#{alternate_on} #{cursor_flag}')).toBe('0 1');
  });
});

describe('top in the single executable, stdout not a terminal', () => {
  it('prints the plain snapshot', async () => {
    const r = await runCli(['top', '--once', '--view', 'destinations', '--filter', FIXTURE_FILTER], {
      cwd: work,
      unsetEnv: ['NODE_OPTIONS'],
      // runCli appends the test runner's node and CLI path, which are not run
      wrapper: ['sh', '-c', 'e="$0"; shift 2; exec "$e" "$@"', exe],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^  ${literal(fx.dest[2])} +7 +7 `, 'm'));
  });
});
