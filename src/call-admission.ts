/**
 * Spreads the start of new calls over turns of the event loop. Node's HTTP/2
 * session emits every request found in one read of a socket at once, and
 * each call's setup (connect's context and pipeline, auth, limits, a
 * watcher's subscription) and the promise callbacks it sets off then run
 * before any timer or other socket gets a turn: 100 WatchResults calls
 * arriving together held the event loop for ~100 ms, in which no result
 * reached an open watcher and no health check was answered.
 *
 * Here a turn starts only as many calls as its budget fits, at the cost
 * recent calls had; the others wait, in arrival order, and the next turns
 * start them, between which timers and I/O run. When calls arrive slower
 * than they are set up, none waits.
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
/** Weight of the latest turn when the cost per call falls (it is taken at once when it rises). */
const FALLING_WEIGHT = 0.2;

/** Starts calls within each turn's budget; see the module comment. */
export class CallAdmission<Request, Response> {
  private readonly waiting: Array<[Request, Response]> = [];
  /** Index of the next waiting call; the array is trimmed in chunks, not on every start. */
  private head = 0;
  private startedThisTurn = 0;
  private turnStartedAt = 0;
  private turnEndScheduled = false;
  private costMs = INITIAL_COST_MS;
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

  /** Starts the call in this turn if it has room and no call waits before it; else queues it. */
  readonly admit = (request: Request, response: Response): void => {
    if (this.waitingCount === 0 && this.hasRoom()) this.startNow(request, response);
    else this.waiting.push([request, response]);
  };

  private hasRoom(): boolean {
    // One call per turn at least, so however slow calls are, they are started.
    return this.startedThisTurn === 0 || (this.startedThisTurn + 1) * this.costMs <= this.options.turnBudgetMs;
  }

  private startNow(request: Request, response: Response): void {
    if (this.startedThisTurn === 0) {
      this.turnStartedAt = this.now();
      if (!this.turnEndScheduled) {
        this.turnEndScheduled = true;
        // Runs in the check phase: after this turn's I/O callbacks and all the promise callbacks they set off.
        setImmediate(this.endTurn);
      }
    }
    this.startedThisTurn++;
    this.start(request, response);
  }

  private readonly endTurn = (): void => {
    this.turnEndScheduled = false;
    const perCall = (this.now() - this.turnStartedAt) / this.startedThisTurn;
    // Up at once, so a burst of costly calls is spread from the next turn on; down gradually.
    this.costMs = perCall > this.costMs ? perCall : this.costMs + FALLING_WEIGHT * (perCall - this.costMs);
    this.startedThisTurn = 0;
    // The next turn begins here: calls started now are measured when endTurn, scheduled again, runs in the next check phase.
    while (this.waitingCount > 0 && this.hasRoom()) {
      const [request, response] = this.waiting[this.head]!;
      this.waiting[this.head++] = undefined!;
      if (!this.options.isGone(request)) this.startNow(request, response);
    }
    if (this.waitingCount === 0) {
      this.waiting.length = 0;
      this.head = 0;
    } else if (this.head >= 1024) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  };
}
