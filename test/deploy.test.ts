// deploy/: the recipes the README's "Deploy" section points at, checked as far as this machine allows.
// - deploy/appservice/start-with-sockwatch.sh runs for real with a temporary directory standing in for
//   App Service's /home (a path with a space) and `sleep` standing in for the app: sockwatch snat starts
//   in the background with per-instance paths, is restarted after kill -9, stops for good after
//   `snat -c`, and the app is exec'ed (it is the process the platform started). sockwatch is the
//   compiled CLI here (dist/, through a two-line wrapper), the single executable in production.
//   Not exercised: App Service itself (its startup, Kudu, the SMB-backed /home, COMPUTERNAME's values).
// The Kubernetes files are checked in test/deploy-kubernetes.test.ts, the systemd unit in
// test/deploy-systemd.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { onCleanup, runCleanups } from './helpers/cleanup';
import { tmpDir } from './helpers/tmp';
import { eventually } from './helpers/sockets';

const root = path.join(__dirname, '..');
const startScript = path.join(root, 'deploy', 'appservice', 'start-with-sockwatch.sh');

afterAll(runCleanups);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readPid(file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

describe('App Service startup command (deploy/appservice/start-with-sockwatch.sh)', () => {
  it('is valid sh', () => {
    const r = spawnSync('sh', ['-n', startScript], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('starts snat in the background with per-instance paths, restarts it after kill -9, stops after snat -c, execs the app', async () => {
    const home = tmpDir('app service home');
    const instance = `lw0sdlwk${process.pid}`;
    const wrapper = path.join(home, 'site', 'sockwatch', 'sockwatch');
    fs.mkdirSync(path.dirname(wrapper), { recursive: true });
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    // The wrapper notes the LD_LIBRARY_PATH it was given: a `lib` beside the executable is sockwatch's only.
    const seen = path.join(home, 'ld-library-path.seen');
    const cli = path.join(root, 'dist', 'cli', 'main.js');
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh\nprintf '%s\\n' "\${LD_LIBRARY_PATH-}" >${q(seen)}\nexec ${q(process.execPath)} ${q(cli)} "$@"\n`,
      {
        mode: 0o755,
      },
    );
    fs.mkdirSync(path.join(path.dirname(wrapper), 'lib'));
    const app = spawn('sh', [startScript, 'sleep', '300'], {
      env: {
        PATH: process.env.PATH,
        SOCKWATCH_HOME: home,
        COMPUTERNAME: instance,
        SOCKWATCH_SNAT_ARGS: '-f 1',
        SOCKWATCH_RESTART_DELAY: '1',
      },
      stdio: 'ignore',
      detached: true,
    });
    onCleanup(() => {
      try {
        process.kill(-app.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    const logDir = path.join(home, 'LogFiles', 'sockwatch', instance);
    const pidfile = path.join(logDir, 'sockwatch-snat.pid');
    const out = path.join(logDir, 'sockwatch.out');

    const first = await eventually(
      () => readPid(pidfile),
      (pid) => pid !== null && pidAlive(pid),
      2000,
    );
    expect(first !== null && pidAlive(first), `a running snat recorded in ${pidfile}`).toBe(true);
    // The app is the process App Service started (exec), not a child of a shell.
    expect(fs.readFileSync(`/proc/${app.pid}/comm`, 'utf8').trim()).toBe('sleep');
    expect(fs.readFileSync(seen, 'utf8')).toBe(`${path.join(path.dirname(wrapper), 'lib')}\n`);
    expect(fs.readFileSync(`/proc/${app.pid}/environ`, 'utf8').split('\0')).not.toContainEqual(expect.stringMatching(/^LD_LIBRARY_PATH=/));
    const hourly = await eventually(
      () =>
        fs.existsSync(path.join(logDir, `outconn-logs-${instance}`)) ? fs.readdirSync(path.join(logDir, `outconn-logs-${instance}`)) : [],
      (files) => files.some((f) => /^outbound_conns_stats_\d{4}-\d\d-\d\d_\d\d\.log$/.test(f)),
      2000,
    );
    expect(hourly.length).toBeGreaterThan(0);
    expect(fs.statSync(path.join(home, 'site', 'sockwatch', 'state', instance)).isDirectory()).toBe(true);

    process.kill(first!, 'SIGKILL');
    const second = await eventually(
      () => readPid(pidfile),
      (pid) => pid !== null && pid !== first && pidAlive(pid),
      2000,
    );
    expect(second !== null && second !== first && pidAlive(second), 'a new snat after kill -9').toBe(true);
    expect(fs.readFileSync(out, 'utf8')).toMatch(/sockwatch exited 137: restart in 1s/);

    const stop = spawnSync(wrapper, ['snat', '-c', '--log-dir', logDir], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(stop.status, stop.stderr).toBe(0);
    const after = await eventually(
      () => fs.readFileSync(out, 'utf8'),
      (text) => /sockwatch exited 0: not restarted/.test(text),
      2000,
    );
    expect(after).toMatch(/sockwatch exited 0: not restarted/);
    expect(pidAlive(second!)).toBe(false);
    await new Promise((r) => setTimeout(r, 1500));
    expect(readPid(pidfile), 'no new run after a deliberate stop').toBeNull();
    expect(pidAlive(app.pid!), 'the app keeps running').toBe(true);
  });

  it('refuses to start without an app command', () => {
    const r = spawnSync('sh', [startScript], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^usage: /);
  });
});
