// Rows that only the host-shape runs add to the scenario table (bench/shapes.mjs): the queue
// watch's own request, whose state mask leaves out TIME_WAIT and SYN_RECV (issue 13), and its floor.
import { createRequire } from 'node:module';
import path from 'node:path';
import { DIST_INDEX } from './methods.mjs';
import { THRESHOLD } from './scenarios.mjs';

const require = createRequire(import.meta.url);

/** The states the queue watcher asks for, from the compiled library (what `sockwatch queues` sends). */
export function queueWatchStates() {
  return require(path.join(path.dirname(DIST_INDEX), 'queues', 'watcher.js')).QUEUE_WATCH_STATES;
}

export function shapeRows() {
  const states = [...queueWatchStates()];
  const QUEUE = { recvThreshold: THRESHOLD, sendThreshold: THRESHOLD, acceptThreshold: 'limit', states };
  return [
    {
      id: 'floor-queue',
      group: 'sampler',
      kind: 'floor',
      title: 'C floor with the queue watch’s request: TCP v4+v6 in one walk, UDP v4 and v6, states without TIME_WAIT and SYN_RECV',
      options: QUEUE,
      oneWalk: true,
    },
    {
      id: 'queue-scan',
      group: 'sampler',
      kind: 'addon-async',
      title: 'await sample() with the queue watch’s request (thresholds 1000/1000, accept at the limit, its state mask)',
      options: QUEUE,
      baseline: 'floor-1walk',
    },
  ];
}
