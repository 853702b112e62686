// The compiled CLI (dist/cli/main.js, built by test/setup/build.ts) as a child process. Every
// process started here is tracked until it exits; killCliProcesses() ends those still running.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { waitFor } from './wait';

const CLI_PATH = path.resolve(__dirname, '../../dist/cli/main.js');

export interface CliOptions {
  /** Put before the arguments, e.g. 'queues'. */
  subcommand?: string;
  /** Added to this process's environment (after `unsetEnv`). */
  env?: NodeJS.ProcessEnv;
  /** Names removed from this process's environment, so that only `env` can set them. */
  unsetEnv?: readonly string[];
  cwd?: string;
  /** A command that runs node, e.g. ['unshare', '--pid', '--fork', '--mount-proc']. */
  wrapper?: readonly string[];
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Complete stdout lines so far. A last line without its newline (say, cut by SIGKILL) is not among them. */
  lines: string[];
  stderr(): string;
  /** stdout then stderr, as printed so far. */
  output(): string;
  /** Resolves once the process has exited and its output is closed. */
  exited: Promise<CliResult>;
  /** Waits until `check(lines)` holds; fails at once if the process exits first. */
  waitFor(what: string, check: (lines: string[]) => boolean, ms?: number): Promise<void>;
}

const running = new Set<ChildProcess>();

export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  const env = { ...process.env };
  for (const name of options.unsetEnv ?? []) delete env[name];
  const cmd = [...(options.wrapper ?? []), process.execPath, CLI_PATH, ...(options.subcommand ? [options.subcommand] : []), ...args];
  const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const lines: string[] = [];
  let stdout = '';
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    stdout += d;
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on('data', (d: string) => (stderr += d));
  child.on('error', (err) => (stderr += `[spawn ${cmd[0]}: ${err.message}]\n`));
  const exited = new Promise<CliResult>((resolve) =>
    child.once('close', (code, signal) => {
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return {
    child,
    lines,
    stderr: () => stderr,
    output: () => stdout + stderr,
    exited,
    waitFor: (what, check, ms) =>
      waitFor(what, () => check(lines), {
        ms,
        giveUpIf: () => child.exitCode !== null || child.signalCode !== null,
        detail: () => `stdout: ${lines.join('\n')}\nstderr: ${stderr}`,
      }),
  };
}

/** Runs the CLI to its end. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).exited;
}

/** SIGKILLs every CLI process still running and waits for them to exit (for afterEach / afterAll). */
export async function killCliProcesses(): Promise<void> {
  const live = [...running].filter((c) => c.pid !== undefined && c.exitCode === null && c.signalCode === null);
  for (const c of live) c.kill('SIGKILL');
  await Promise.all(live.map((c) => once(c, 'exit')));
}
