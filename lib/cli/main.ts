#!/usr/bin/env node
// `sockwatch` entry point: dispatches subcommands; bad input exits 2 with one line.
import { redactText } from '../base/redact';
import { UsageError } from './errors';
import { runList } from './list';
import { versionText } from './version';

const HELP = `Usage: sockwatch <command> [options]

Commands:
  list      list TCP and UDP sockets with their queues (like ss -tuan)
  queues    watch send/receive/accept queues and alert an HTTP URL on a breach
  snat      watch outbound connections per destination; dump and trace a .NET app over a threshold
  exporter  serve Prometheus metrics of every socket (states, queues, outbound destinations)
  top       live full-screen view of destinations, queues and processes

Options:
  -v, --version  print the sockwatch, addon and Node.js versions

Run "sockwatch <command> --help" for the options of a command.`;

type Command = (argv: string[], out: NodeJS.WritableStream) => Promise<number>;

async function loadCommand(name: string): Promise<Command | undefined> {
  switch (name) {
    case 'list':
      return runList;
    case 'queues':
      return (await import('./queues')).runQueues;
    case 'snat':
      return (await import('./snat')).runSnat;
    case 'exporter':
      return (await import('./exporter')).runExporter;
    case 'top':
      return (await import('./top')).runTop;
    default:
      return undefined;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(HELP + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '-v' || name === '--version' || name === 'version') {
    process.stdout.write(versionText() + '\n');
    return 0;
  }
  try {
    const cmd = await loadCommand(name);
    if (!cmd) throw new UsageError(`unknown command "${name}" (commands: list, queues, snat, exporter, top)`);
    return await cmd(rest, process.stdout);
  } catch (e) {
    const err = e as Error & { exitCode?: number; code?: string };
    const msg = redactText(err.message).split('\n')[0];
    process.stderr.write(`sockwatch: ${msg}\n`);
    return err instanceof UsageError ? 2 : (err.exitCode ?? 1);
  }
}

/**
 * A reader that goes away (`sockwatch list | head -1`) ends the command quietly, as `ss | head` does:
 * EPIPE on stdout or stderr is not an error worth a stack trace. The exit status is the one already
 * decided (0 unless something failed before).
 */
function exitQuietlyOnClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

if (require.main === module) {
  exitQuietlyOnClosedPipe(process.stdout);
  exitQuietlyOnClosedPipe(process.stderr);
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`sockwatch: ${redactText(String((e as Error)?.message ?? e))}\n`);
      process.exitCode = 1;
    },
  );
}
