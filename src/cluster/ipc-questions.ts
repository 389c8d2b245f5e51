/**
 * Questions over the cluster's IPC channel, each answered once by a message
 * with the same id, or given up after a timeout: a worker that died or hangs
 * must not hold a scrape or a probe for ever.
 */

/** Questions awaiting answers of type `A`. */
export class IpcQuestions<A> {
  private next = 1;
  private readonly pending = new Map<number, { resolve(answer: A): void; reject(error: Error): void }>();

  constructor(private readonly timeoutMs: number) {}

  /** Sends a question with `send(id)`; resolves with the answer {@link answer} gets for that id. */
  ask(send: (id: number) => void, what: string): Promise<A> {
    const id = this.next++;
    return new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${what}: no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, {
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      try {
        send(id);
      } catch (error) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(error as Error);
      }
    });
  }

  /** Settles the question `id` with `answer`; an answer to no pending question (late, after its timeout) is ignored. */
  answer(id: number, answer: A): void {
    const question = this.pending.get(id);
    this.pending.delete(id);
    question?.resolve(answer);
  }
}
