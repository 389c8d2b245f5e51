/**
 * Spreads the start of new calls over turns of the event loop. Node's HTTP/2
 * session emits every request found in one read of a socket at once, and
 * each call's setup (connect's context and pipeline, auth, limits, a
 * watcher's subscription) and the promise callbacks it sets off then ran
 * before any timer or other socket got a turn: 100 WatchResults calls
 * arriving together held the event loop for ~100 ms, in which no result
 * reached an open watcher and no health check was answered.
 *
 * Here calls start in the check phase of the turn they arrive in, as many as
 * fit in the turn's budget at the cost recent calls had; the others wait, in
 * arrival order, for the next turns, between which timers and I/O run. The
 * cost is measured on the calls alone: an immediate scheduled right after the
 * one that starts them runs once they, and the promise callbacks they set
 * off, are done (Node runs those between two immediates), before any other
 * I/O. When calls arrive slower than they are set up, none waits a turn.
 */
import { performance } from "node:perf_hooks";

/** Admission settings. */
export interface CallAdmissionOptions<Request> {
  /** Time, in ms, one turn may spend starting calls (their synchronous part and the promise callbacks it sets off). */
  turnBudgetMs: number;
  /** Whether the client of a waiting call has gone: such a call is dropped, not started. */
  isGone(request: Request): boolean;
  /** The clock (tests). */
  now?: () => number;
}

/** The first cost estimate, ms per call, before any call was measured. */
const INITIAL_COST_MS = 0.5;
/** Weight of the latest batch when the cost per call falls (a rise is taken at once). */
const FALLING_WEIGHT = 0.2;

/** Starts calls within each turn's budget; see the module comment. */
export class CallAdmission<Request, Response> {
  private readonly waiting: Array<[Request, Response] | undefined> = [];
  /** Index of the next waiting call; the array is trimmed in chunks, not on every start. */
  private head = 0;
  private scheduled = false;
  private costMs = INITIAL_COST_MS;
  private batchStartedAt = 0;
  private batchSize = 0;
  private readonly now: () => number;

  constructor(
    private readonly start: (request: Request, response: Response) => void,
    private readonly options: CallAdmissionOptions<Request>,
  ) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Calls waiting for a turn. */
  get waitingCount(): number {
    return this.waiting.length - this.head;
  }

  /** Queues the call; it starts in this turn's check phase if the budget has room, else in a later turn. */
  readonly admit = (request: Request, response: Response): void => {
    this.waiting.push([request, response]);
    if (!this.scheduled) this.schedule();
  };

  private schedule(): void {
    this.scheduled = true;
    // Adjacent in the check phase (in the next turn when scheduled from it), so
    // what runs between the two is the batch and its promise callbacks.
    setImmediate(this.startBatch);
    setImmediate(this.measureBatch);
  }

  private readonly startBatch = (): void => {
    this.batchStartedAt = this.now();
    this.batchSize = 0;
    // One call per turn at least, so however slow calls are, they are started.
    const room = Math.max(1, Math.floor(this.options.turnBudgetMs / this.costMs));
    while (this.waitingCount > 0 && this.batchSize < room) {
      const [request, response] = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined;
      if (this.options.isGone(request)) continue;
      this.batchSize++;
      this.start(request, response);
    }
    if (this.waitingCount === 0) {
      this.waiting.length = 0;
      this.head = 0;
    } else if (this.head >= 1024) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  };

  private readonly measureBatch = (): void => {
    if (this.batchSize > 0) {
      const perCall = (this.now() - this.batchStartedAt) / this.batchSize;
      // Up at once, so a burst of costly calls is spread from the next turn on; down gradually.
      this.costMs = perCall > this.costMs ? perCall : this.costMs + FALLING_WEIGHT * (perCall - this.costMs);
    }
    this.scheduled = false;
    if (this.waitingCount > 0) this.schedule();
  };
}
