import { UsageError } from './errors';
export async function runQueues(_argv: string[], _out: NodeJS.WritableStream): Promise<number> {
  throw new UsageError('queues: not implemented yet');
}
