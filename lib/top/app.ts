// `sockwatch top` as a running program: ticks every interval (Destinations always, Queues and the
// Processes walk only while shown), keys, the frame drawn after every change, and one way out that
// gives the terminal back (quit key, SIGTERM, SIGINT, SIGHUP).
import { performance } from 'node:perf_hooks';
import type { Style } from './format';
import { Screen, type Key } from './screen';
import { DestinationSource, ProcessTable, QueueSource, ScanScope, type TopSourceOptions } from './sources';
import {
  SORT_COUNT,
  VIEWS,
  emptyData,
  frame,
  destinationRows,
  listenerRows,
  processRows,
  queueRows,
  snapshot,
  type TopData,
  type TopState,
  type ViewName,
} from './views';

export interface TopOptions extends TopSourceOptions {
  view: ViewName;
  style: Style;
  /** The filter to start with (as typed after '/'). */
  filter?: string;
}

/** Most queue rows whose owners are looked up while a filter is set (a filter may name a command). */
const FILTER_OWNER_ROWS = 500;

export class Top {
  readonly state: TopState;
  data: TopData = emptyData();
  private readonly scope: ScanScope;
  private readonly destinations: DestinationSource;
  private readonly queues: QueueSource;
  private readonly processes: ProcessTable;
  private screen: Screen | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private ticking: Promise<void> = Promise.resolve();
  private finish: ((code: number) => void) | undefined;

  constructor(private readonly o: TopOptions) {
    this.state = {
      view: o.view,
      sort: { destinations: 0, queues: 0, processes: 0 },
      filter: o.filter ?? '',
      editing: undefined,
      paused: false,
      help: false,
      scroll: 0,
      intervalMs: o.intervalMs,
      threshold: o.threshold,
      allNetns: o.allNetns,
    };
    this.scope = new ScanScope(o.allNetns);
    this.destinations = new DestinationSource(this.scope, o);
    this.queues = new QueueSource(this.scope, o);
    this.processes = new ProcessTable(this.scope, o.intervalMs, !o.allNetns);
  }

  /** One sample of what `views` need; the Processes walk is awaited only when `waitProcesses`. */
  async collect(views: readonly ViewName[], waitProcesses: boolean): Promise<void> {
    const withQueues = views.includes('queues');
    let d: Awaited<ReturnType<DestinationSource['poll']>>;
    let q: Awaited<ReturnType<QueueSource['fromScans']>> | undefined;
    if (withQueues && !this.destinations.ownScan) {
      // one walk for both views
      const scans = await this.scope.scan(this.destinations.sharedOptions(this.queues.options));
      d = this.destinations.fromScans(scans);
      q = await this.queues.fromScans(scans);
    } else {
      d = await this.destinations.poll();
      if (withQueues) {
        const scans = await this.scope.scan(this.queues.options);
        q = await this.queues.fromScans(scans);
        q.scanMs += scans.reduce((ms, s) => ms + s.result.elapsedNs / 1e6, 0);
      }
    }
    const data: TopData = { ...this.data, destinations: d.rows, destinationSockets: d.sockets, scanMs: d.scanMs };
    if (q) Object.assign(data, { queues: q.rows, listeners: q.listeners, queuesNonEmpty: q.nonEmpty, scanMs: data.scanMs + q.scanMs });
    if (views.includes('processes')) {
      const walk = this.processes.refresh().then(() => {
        this.data = { ...this.data, processes: this.processes.rows, processesUpdatedAt: this.processes.updatedAt };
        this.render();
      });
      if (waitProcesses) await walk;
      else walk.catch(() => undefined);
    }
    // the walk may have finished while this sample ran: take its rows as they are now
    data.processes = this.processes.rows;
    data.processesUpdatedAt = this.processes.updatedAt;
    const notes = [this.destinations.attribution, ...this.scope.errors.slice(0, 2)].filter(Boolean);
    data.note = notes.join(' · ');
    this.data = data;
  }

  /** The plain snapshot: one sample (owners looked up for the rows printed, for at most 3 s). */
  async snapshot(views: readonly ViewName[], width: number, limit: number): Promise<string> {
    await this.collect(views, true);
    if (views.includes('queues')) {
      const inodes = [...queueRows(this.state, this.data).slice(0, limit), ...listenerRows(this.state, this.data).slice(0, limit)].map(
        (r) => r.inode,
      );
      this.data.owners = await this.queues.owners.resolve(
        inodes.filter((i) => i !== 0),
        { deadline: performance.now() + 3000 },
      );
    }
    return snapshot(this.state, this.data, views, width, limit);
  }

  /** Runs full screen until quit or a signal; resolves with the exit status. */
  run(input: NodeJS.ReadStream, output: NodeJS.WriteStream): Promise<number> {
    this.screen = new Screen(
      input,
      output,
      (k) => this.onKey(k),
      () => this.render(),
    );
    const done = new Promise<number>((resolve) => (this.finish = resolve));
    const onSignal = (): void => void this.stop(0);
    for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(s, onSignal);
    void done.then(() => {
      for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.off(s, onSignal);
    });
    this.screen.start();
    this.render();
    this.tick();
    return done;
  }

  private tick(): void {
    if (this.stopped) return;
    const began = Date.now();
    this.ticking = (this.state.paused ? Promise.resolve() : this.collect([this.state.view], false))
      .catch((e: Error) => {
        this.data = { ...this.data, note: `scan failed: ${e.message}` };
      })
      .then(() => {
        this.render();
        if (!this.stopped) this.timer = setTimeout(() => this.tick(), Math.max(0, this.o.intervalMs - (Date.now() - began)));
      });
  }

  /** Gives the terminal back, closes the samplers, ends run(). Idempotent. */
  async stop(code: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.screen?.restore();
    await this.ticking;
    await this.close();
    this.finish?.(code);
  }

  async close(): Promise<void> {
    this.queues.close();
    await this.destinations.close();
    await this.scope.close();
  }

  render(): void {
    if (!this.screen || this.stopped) return;
    const size = this.screen.size;
    const shown = this.state.view === 'destinations' ? destinationRows : this.state.view === 'queues' ? queueRows : processRows;
    this.state.scroll = Math.min(this.state.scroll, Math.max(0, shown(this.state, this.data).length - (size.rows - 4)));
    if (this.state.view === 'queues') {
      // Owners only for the rows on screen (or, with a filter, that it may select by command).
      const body = size.rows - 3;
      const q = queueRows(this.state, this.data);
      const rows = this.state.filter ? q.slice(0, FILTER_OWNER_ROWS) : q.slice(this.state.scroll, this.state.scroll + body);
      const inodes = [...rows, ...listenerRows(this.state, this.data).slice(0, body)].map((r) => r.inode);
      this.data.owners = this.queues.ownersOf(inodes, () => this.render());
    }
    this.screen.draw(frame(this.state, this.data, size, this.o.style));
  }

  private onKey(k: Key): void {
    const s = this.state;
    if (s.editing !== undefined) {
      if (k.name === 'enter') {
        s.filter = s.editing.trim();
        s.editing = undefined;
        s.scroll = 0;
      } else if (k.name === 'escape') {
        s.editing = undefined;
        s.filter = '';
      } else if (k.name === 'backspace') s.editing = s.editing.slice(0, -1);
      else if (k.name === 'ctrl-c') return void this.stop(0);
      else if (k.name === 'char' && s.editing.length < 64) s.editing += k.char;
      this.render();
      return;
    }
    if (s.help) {
      s.help = false;
      if (k.name === 'ctrl-c' || (k.name === 'char' && k.char === 'q')) return void this.stop(0);
      this.render();
      return;
    }
    const page = Math.max(1, (this.screen?.size.rows ?? 24) - 4);
    switch (k.name) {
      case 'ctrl-c':
        return void this.stop(0);
      case 'tab':
        this.show(VIEWS[(VIEWS.indexOf(s.view) + 1) % VIEWS.length]!);
        return;
      case 'up':
        s.scroll = Math.max(0, s.scroll - 1);
        break;
      case 'down':
        s.scroll++;
        break;
      case 'pageup':
        s.scroll = Math.max(0, s.scroll - page);
        break;
      case 'pagedown':
        s.scroll += page;
        break;
      case 'home':
        s.scroll = 0;
        break;
      case 'end':
        s.scroll = 1e9;
        break;
      case 'escape':
        s.filter = '';
        break;
      case 'char':
        switch (k.char) {
          case 'q':
          case 'Q':
            return void this.stop(0);
          case '1':
          case '2':
          case '3':
            this.show(VIEWS[Number(k.char) - 1]!);
            return;
          case 's':
            s.sort[s.view] = (s.sort[s.view] + 1) % SORT_COUNT[s.view];
            break;
          case '/':
            s.editing = '';
            break;
          case 'p':
          case ' ':
            s.paused = !s.paused;
            break;
          case '?':
          case 'h':
            s.help = true;
            break;
        }
        break;
      default:
        break;
    }
    this.render();
  }

  /** Switches view and samples it at once (not at the next tick). */
  private show(view: ViewName): void {
    if (this.state.view === view) return;
    this.state.view = view;
    this.state.scroll = 0;
    this.render();
    if (this.state.paused) return;
    clearTimeout(this.timer);
    void this.ticking.then(() => {
      if (!this.stopped) {
        clearTimeout(this.timer);
        this.tick();
      }
    });
  }
}
