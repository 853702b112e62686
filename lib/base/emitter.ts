// The one typed event emitter of the project, at the bottom of the house so that watchers and actions
// alike use it. Rule: one payload object per event, typed by an Events map; 'error' behaves as in
// Node's EventEmitter (thrown when nobody listens), so an I/O failure is never silent.
import { EventEmitter } from 'node:events';

/**
 * A small typed wrapper over EventEmitter: one payload object per event. An 'error' event with no
 * listener throws, as with any EventEmitter, so an I/O failure is never silent.
 */
export class TypedEmitter<Events extends object> {
  readonly #emitter = new EventEmitter();

  on<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.on(event, listener as (payload: unknown) => void);
    return this;
  }

  once<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.once(event, listener as (payload: unknown) => void);
    return this;
  }

  off<K extends keyof Events & string>(event: K, listener: (payload: Events[K]) => void): this {
    this.#emitter.off(event, listener as (payload: unknown) => void);
    return this;
  }

  listenerCount<K extends keyof Events & string>(event: K): number {
    return this.#emitter.listenerCount(event);
  }

  protected emit<K extends keyof Events & string>(event: K, payload: Events[K]): boolean {
    return this.#emitter.emit(event, payload);
  }
}
