// The measuring process of bench/shapes.mjs: bench/measure.mjs with the shape rows
// (bench/shapes-rows.mjs) added to the scenario table first, so they are measured by the same code.
//
//   node bench/shapes-measure.mjs '<job json>'
import { scenarios } from './scenarios.mjs';
import { shapeRows } from './shapes-rows.mjs';

scenarios.push(...shapeRows());
await import('./measure.mjs');
