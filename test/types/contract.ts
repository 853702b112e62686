// What the public types must reject. Rule: each `@ts-expect-error` line is a mistake a library user
// can make; tsc fails ("unused @ts-expect-error") the day a type stops catching it. The lines without
// it are the valid spellings that must keep compiling. Compiled (never run) by test/types.test.ts
// with test/types/tsconfig.json, and by the project's own typecheck.
import { listSockets, outbound, QueueWatcher, Sampler, type QueueAlert, type QueueAlertJson, type SocketRecord } from '../../lib';
import type { SocketStateName, StateListName } from '../../lib';
import { CompiledSampleOptions } from '../../lib/sampler';

export async function contract(s: Sampler, record: SocketRecord, alert: QueueAlert): Promise<void> {
  // Valid options compile.
  await s.sample({ tcp: true, states: ['established', 'time-wait', 'estab', 'unconn', 'connected'], recvThreshold: 'off' });
  await s.sample({ acceptThreshold: 'limit', aggregate: { states: ['established'], cookies: true, ownerCookies: [1n] } });
  await s.sample({ localPorts: [80, '1024-2048', { from: 1, to: 2 }], maxRecords: 5 });
  s.sampleSync(new CompiledSampleOptions({ udp: true }));
  s.lookup({ protocol: 'tcp', local: '127.0.0.1:1', remote: '127.0.0.1:2', cookie: 5n });
  new QueueWatcher({ intervalMs: 10, recvThreshold: 'off', filter: { tcp: true, localPorts: [41100] } });
  await listSockets({ tcp: true, localPorts: [41100] }, { netns: '/proc/1/ns/net' });

  // Misspelled keys, alone and next to valid ones.
  // @ts-expect-error recvTreshold
  await s.sample({ recvTreshold: 5 });
  // @ts-expect-error recvTreshold next to tcp
  s.sampleSync({ tcp: true, recvTreshold: 5 });
  // @ts-expect-error netnz
  new Sampler({ netnz: '/x' });
  // @ts-expect-error cokie
  s.lookup({ protocol: 'tcp', local: '127.0.0.1:1', remote: '127.0.0.1:2', cokie: 5n });
  // @ts-expect-error intervalMS
  new QueueWatcher({ intervalMS: 10 });
  // @ts-expect-error repeatMS next to intervalMs
  new QueueWatcher({ intervalMs: 10, repeatMS: 5 });
  // @ts-expect-error localPort inside the filter
  new QueueWatcher({ filter: { tcp: true, localPort: [41100] } });
  // @ts-expect-error confirm's m misspelled
  new QueueWatcher({ confirm: { n: 1, mm: 2 } });
  // @ts-expect-error localPort next to tcp
  await listSockets({ tcp: true, localPort: [41100] });
  // @ts-expect-error all is not a listSockets filter (it always lists all)
  await listSockets({ all: true });
  // @ts-expect-error netnz in listSockets' sampler options
  await listSockets({ tcp: true }, { netnz: '/x' });
  // @ts-expect-error cokies inside aggregate
  await s.sample({ aggregate: { states: ['established'], cokies: true } });
  // @ts-expect-error too inside a port range
  await s.sample({ localPorts: [{ from: 1, too: 2 }] });
  // @ts-expect-error a plain object is not a CompiledSampleOptions
  const compiled: CompiledSampleOptions = { recvThreshold: 5 };
  void compiled;

  // Wrong types.
  // @ts-expect-error a state that does not exist
  await s.sample({ states: ['establshed'] });
  // @ts-expect-error a string where a list is expected
  await s.sample({ states: 'established' });
  // @ts-expect-error numbers are not state names
  await s.sample({ states: [1] });
  // @ts-expect-error aggregate states are checked too
  await s.sample({ aggregate: { states: ['listn'] } });
  // @ts-expect-error and the outbound watcher's
  new outbound.OutboundWatcher({ states: ['opening'] });
  // @ts-expect-error QueueWatcher's filter states
  new QueueWatcher({ filter: { states: ['time-wiat'] } });
  // @ts-expect-error cookies are bigints
  await s.sample({ aggregate: { ownerCookies: [1] } });
  // @ts-expect-error 'max' is not an accept threshold ('limit' is)
  await s.sample({ acceptThreshold: 'max' });
  // @ts-expect-error 'of' is not 'off'
  new QueueWatcher({ recvThreshold: 'of' });
  // @ts-expect-error booleans are booleans
  await s.sample({ all: 'false' });
  // @ts-expect-error aggregate is a boolean or an object
  await s.sample({ aggregate: 'yes' });
  // @ts-expect-error maxRecords is a number
  await s.sample({ maxRecords: '5' });

  // State names read back are the union.
  const name: SocketStateName = record.stateName;
  const listed: StateListName = 'synchronized';
  void [name, listed];
  // @ts-expect-error no state is spelled this way
  if (record.stateName === 'establshed') return;
  // @ts-expect-error nor this in an alert
  if (alert.state === 'listn') return;
  // @ts-expect-error a state name is not a number
  const n: number = record.stateName;
  void n;

  // JSON.stringify(alert) writes the cookie as a decimal string.
  const json = JSON.parse(JSON.stringify(alert)) as QueueAlertJson;
  const cookie: string = json.cookie;
  // @ts-expect-error not a bigint any more
  const big: bigint = json.cookie;
  void [cookie, big];
}
