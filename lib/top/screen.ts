// The terminal of `sockwatch top`: alternate screen, hidden cursor, raw keys, redraw on resize, and
// the terminal given back on every way out (quit, SIGTERM, SIGINT, SIGHUP, an uncaught error).
//
// Why no terminal UI library: the candidates were tried against the two things this project needs,
// Node 20, 22, 24 and 26, and one CommonJS bundle in the single executable (esbuild, no files read at
// run time). ink 6 (Node >= 20) needs yoga-layout 3, whose top-level await esbuild cannot put in a CJS
// bundle ("Top-level await is currently not supported with the cjs output format"); ink 8 and
// @unblessed/* need Node >= 22; ink 3 is an unmaintained line on React 17 and a deprecated yoga build;
// blessed and neo-blessed are unmaintained and read terminfo files from their package directory at
// run time; terminal-kit loads lib/termconfig/* by a computed require (esbuild fails on the README in
// that directory) and pulls image libraries in. What a table view needs is small: VT100/xterm escape
// sequences every terminal emulator and tmux/screen understand (cursor position, erase line, SGR,
// alternate screen 1049, cursor 25), so this file writes them itself, and only the lines that changed.
import * as fs from 'node:fs';

const CSI = '\x1b[';
export const ENTER_SCREEN = `${CSI}?1049h${CSI}?25l${CSI}2J`;
export const LEAVE_SCREEN = `${CSI}0m${CSI}?25h${CSI}?1049l`;

export type Key =
  | { name: 'char'; char: string }
  | { name: 'up' | 'down' | 'pageup' | 'pagedown' | 'home' | 'end' | 'enter' | 'escape' | 'backspace' | 'tab' | 'ctrl-c' };

/** Decodes one chunk of raw terminal input into keys (the sequences of xterm, tmux and the Linux console). */
export function decodeKeys(chunk: string): Key[] {
  const keys: Key[] = [];
  const seq: Record<string, Key['name']> = {
    '[A': 'up',
    '[B': 'down',
    OA: 'up',
    OB: 'down',
    '[5~': 'pageup',
    '[6~': 'pagedown',
    '[H': 'home',
    '[F': 'end',
    '[1~': 'home',
    '[4~': 'end',
    OH: 'home',
    OF: 'end',
  };
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk[i]!;
    if (c === '\x1b') {
      const rest = chunk.slice(i + 1);
      const m = /^(\[[0-9;]*[A-Za-z~]|O[A-Za-z])/.exec(rest);
      if (m) {
        const name = seq[m[1]!];
        if (name) keys.push({ name } as Key);
        i += m[1]!.length;
      } else keys.push({ name: 'escape' });
    } else if (c === '\r' || c === '\n') keys.push({ name: 'enter' });
    else if (c === '\t') keys.push({ name: 'tab' });
    else if (c === '\x7f' || c === '\b') keys.push({ name: 'backspace' });
    else if (c === '\x03') keys.push({ name: 'ctrl-c' });
    else if (c >= ' ') keys.push({ name: 'char', char: c });
  }
  return keys;
}

export interface ScreenSize {
  columns: number;
  rows: number;
}

/**
 * The full-screen terminal. draw() takes the whole frame (one string per row, already cut to the
 * width, SGR sequences allowed) and writes only the rows that differ from the last frame.
 */
export class Screen {
  private last: string[] = [];
  private active = false;
  private readonly onExit = (): void => this.restore();
  private readonly onData = (d: Buffer | string): void => {
    for (const k of decodeKeys(d.toString())) this.keyHandler(k);
  };
  private readonly onResize = (): void => {
    this.last = [];
    this.resizeHandler();
  };

  constructor(
    private readonly input: NodeJS.ReadStream,
    private readonly output: NodeJS.WriteStream,
    private readonly keyHandler: (key: Key) => void,
    private readonly resizeHandler: () => void,
  ) {}

  get size(): ScreenSize {
    return { columns: Math.max(20, this.output.columns || 80), rows: Math.max(5, this.output.rows || 24) };
  }

  start(): void {
    this.active = true;
    process.on('exit', this.onExit);
    this.writeSync(ENTER_SCREEN);
    if (this.input.isTTY) this.input.setRawMode(true);
    this.input.setEncoding('utf8');
    this.input.on('data', this.onData);
    this.input.resume();
    this.output.on('resize', this.onResize);
  }

  draw(lines: readonly string[]): void {
    if (!this.active) return;
    let out = '';
    for (let i = 0; i < lines.length; i++) {
      if (this.last[i] === lines[i]) continue;
      out += `${CSI}${i + 1};1H${CSI}0m${lines[i]}${CSI}0m${CSI}K`;
    }
    for (let i = lines.length; i < this.last.length; i++) out += `${CSI}${i + 1};1H${CSI}0m${CSI}K`;
    this.last = [...lines];
    if (out) this.output.write(out);
  }

  /** Leaves the alternate screen and shows the cursor; idempotent, synchronous (safe in 'exit'). */
  restore(): void {
    if (!this.active) return;
    this.active = false;
    this.input.off('data', this.onData);
    this.output.off('resize', this.onResize);
    process.off('exit', this.onExit);
    try {
      if (this.input.isTTY) this.input.setRawMode(false);
    } catch {
      // the terminal is gone
    }
    this.input.pause();
    this.writeSync(LEAVE_SCREEN);
  }

  private writeSync(text: string): void {
    const fd = (this.output as NodeJS.WriteStream & { fd?: number }).fd;
    try {
      if (typeof fd === 'number') fs.writeSync(fd, text);
      else this.output.write(text);
    } catch {
      // the terminal is gone (SIGHUP): nothing left to restore
    }
  }
}
