// Measures one queue-watch row (a session: a run of the watcher, a burst of deliveries, a storm)
// at one farm size, in a fresh process started by run.mjs. The kinds are in queue-sessions.mjs.
// Prints one JSON line on stdout: { id, session: {...} } or { id, skipped }.
//
//   node bench/session.mjs '{"id":"watch-250","size":10000,"farm":{"offenders":10}}'
import { installExitHandlers, killAllChildren } from './children.mjs';
import { SkipError } from './methods.mjs';
import { SESSIONS } from './queue-sessions.mjs';
import { scenarios } from './scenarios.mjs';

installExitHandlers();

try {
  const job = JSON.parse(process.argv[2] ?? 'null');
  const row = scenarios.find((r) => r.id === job?.id);
  if (!row) throw new Error(`no scenario "${job?.id}"`);
  const session = SESSIONS[row.kind];
  if (!session) throw new Error(`scenario ${row.id}: kind "${row.kind}" is not a session kind`);
  let result;
  try {
    result = { id: row.id, session: await session(row, job) };
  } catch (err) {
    if (!(err instanceof SkipError)) throw err;
    result = { id: row.id, skipped: err.message };
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`session: ${err.stack ?? err}\n`);
  killAllChildren();
  process.exit(1);
}
