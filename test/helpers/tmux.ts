// A real terminal for full-screen tests: a tmux server of its own (-L, no config file), one session
// per program, keys sent with send-keys, the screen read with capture-pane, terminal modes with
// display-message (alternate_on, cursor_flag). TERM inside the pane is fixed (xterm-256color).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { waitFor } from './wait';

export function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface PaneOptions {
  columns?: number;
  rows?: number;
  /** Set in the program's environment (names given as undefined are removed). */
  env?: Record<string, string | undefined>;
}

export class Tmux {
  readonly socket: string;
  private sessions = 0;

  constructor(name: string) {
    this.socket = `sockwatch-${name}-${process.pid}`;
  }

  tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], {
      encoding: 'utf8',
      env: { ...process.env, TERM: 'xterm-256color' },
    });
  }

  /**
   * Starts `argv` in a new session of the given size. The pane stays after the program ends and
   * then shows "program exited N" (its exit status) on the screen the program left behind.
   */
  start(argv: readonly string[], options: PaneOptions = {}): Pane {
    // A session that outlives the others: a server left without sessions exits, and a new-session
    // racing with that exit fails with "server exited unexpectedly".
    if (this.sessions === 0) this.tmux('new-session', '-d', '-s', 'keeper', 'sleep', '3600');
    const name = `s${++this.sessions}`;
    const env = Object.entries({ TERM: 'xterm-256color', ...options.env });
    const script = `"$@"; echo "program exited $?"; exec sleep 600`;
    const sets = env.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    const unsets = env.filter(([, v]) => v === undefined).flatMap(([k]) => ['-u', k]);
    this.tmux(
      'new-session',
      '-d',
      '-s',
      name,
      '-x',
      String(options.columns ?? 80),
      '-y',
      String(options.rows ?? 24),
      'env',
      ...unsets,
      ...sets,
      'sh',
      '-c',
      script,
      'sh',
      ...argv,
    );
    return new Pane(this, name);
  }

  /** Ends the server and every program in it. */
  kill(): void {
    try {
      this.tmux('kill-server');
    } catch {
      // no server
    }
  }
}

export class Pane {
  constructor(
    readonly tmux: Tmux,
    readonly target: string,
  ) {}

  /** The screen as text, one string per row (with SGR sequences when `escapes`). */
  screen(escapes = false): string[] {
    return this.tmux
      .tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', this.target)
      .replace(/\n$/, '')
      .split('\n');
  }

  text(): string {
    return this.screen().join('\n');
  }

  display(format: string): string {
    return this.tmux.tmux('display-message', '-p', '-t', this.target, format).trim();
  }

  keys(...keys: string[]): void {
    this.tmux.tmux('send-keys', '-t', this.target, ...keys);
  }

  /** Sends text literally (no key names). */
  type(text: string): void {
    this.tmux.tmux('send-keys', '-l', '-t', this.target, text);
  }

  resize(columns: number, rows: number): void {
    this.tmux.tmux('resize-window', '-t', this.target, '-x', String(columns), '-y', String(rows));
  }

  /** The pid of the program the pane's shell runs (its only child). */
  programPid(): number {
    const sh = Number(this.display('#{pane_pid}'));
    const children = fs.readFileSync(`/proc/${sh}/task/${sh}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (children.length !== 1) throw new Error(`pane shell ${sh} has children [${children.join(' ')}], expected one`);
    return Number(children[0]);
  }

  /** Waits until the screen text satisfies `check`; the error shows the screen. */
  async waitFor(what: string, check: (text: string) => boolean, ms = 10_000): Promise<string> {
    let last = '';
    await waitFor(
      what,
      () => {
        last = this.text();
        return check(last);
      },
      { ms, everyMs: 50, detail: () => `screen:\n${last}` },
    );
    return last;
  }

  kill(): void {
    try {
      this.tmux.tmux('kill-session', '-t', this.target);
    } catch {
      // gone
    }
  }
}
