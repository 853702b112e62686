import { UsageError } from './errors';
export async function runSnat(_argv: string[], _out: NodeJS.WritableStream): Promise<number> {
  throw new UsageError('snat: not implemented yet');
}
