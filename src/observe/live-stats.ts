/**
 * The live figures behind AdminService.WatchStats (and the dashboard): requests
 * allowed and blocked, per client over the last minute, and recent handling
 * times. Prometheus has the same totals; these exist because a dashboard wants
 * per-client figures and percentiles of the last seconds, which /metrics
 * deliberately does not carry (unbounded labels, server-side quantiles).
 */

/** Handling times remembered for percentiles: the most recent ones. */
const LATENCY_SAMPLES = 8192;
/** The per-client figures cover six slots of ten seconds: the last minute. */
const SLOT_MS = 10_000;
const SLOTS = 6;
/** Clients tracked per slot; beyond it the rest count in the totals only, so memory stays bounded. */
const MAX_CLIENTS_PER_SLOT = 10_000;

/** Cumulative counts, to turn into rates between two readings. */
export interface Totals {
  allowed: number;
  blocked: number;
}

/** One client's figures over the last minute. */
export interface ClientFigures {
  client: string;
  allowed: number;
  blocked: number;
}

/** Collects the figures; one per app. */
export class LiveStats {
  private readonly totals: Totals = { allowed: 0, blocked: 0 };
  private readonly latencyMs = new Float64Array(LATENCY_SAMPLES);
  private readonly latencyAt = new Float64Array(LATENCY_SAMPLES);
  private latencyNext = 0;
  /** Per-client figures of the last minute's slots, oldest first. */
  private slots: Array<{ index: number; clients: Map<string, Totals> }> = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** Counts one request of `client` (a call, a client-stream message or a watch start). */
  request(client: string, allowed: boolean): void {
    if (allowed) this.totals.allowed++;
    else this.totals.blocked++;
    const slot = this.currentSlot();
    let figures = slot.get(client);
    if (!figures) {
      if (slot.size >= MAX_CLIENTS_PER_SLOT) return;
      figures = { allowed: 0, blocked: 0 };
      slot.set(client, figures);
    }
    if (allowed) figures.allowed++;
    else figures.blocked++;
  }

  /** Records how long a call (unary or client stream) took to handle. */
  handled(ms: number): void {
    const at = this.latencyNext++ % LATENCY_SAMPLES;
    this.latencyMs[at] = ms;
    this.latencyAt[at] = this.now();
  }

  /** Requests counted so far. */
  get counted(): Totals {
    return { ...this.totals };
  }

  /** The 50th, 95th and 99th percentiles of handling times recorded since `since` (ms epoch); zeros when none. */
  percentiles(since: number): { p50: number; p95: number; p99: number } {
    const recent: number[] = [];
    const stored = Math.min(this.latencyNext, LATENCY_SAMPLES);
    for (let i = 0; i < stored; i++) if (this.latencyAt[i]! > since) recent.push(this.latencyMs[i]!);
    if (recent.length === 0) return { p50: 0, p95: 0, p99: 0 };
    recent.sort((a, b) => a - b);
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    const rank = (q: number) => recent[Math.max(0, Math.ceil(q * recent.length) - 1)]!;
    return { p50: rank(0.5), p95: rank(0.95), p99: rank(0.99) };
  }

  /** The busiest clients over the last minute, by requests, busiest first. */
  topClients(limit: number): ClientFigures[] {
    this.currentSlot();
    const sums = new Map<string, Totals>();
    for (const slot of this.slots) {
      for (const [client, figures] of slot.clients) {
        const sum = sums.get(client) ?? { allowed: 0, blocked: 0 };
        sum.allowed += figures.allowed;
        sum.blocked += figures.blocked;
        sums.set(client, sum);
      }
    }
    return [...sums]
      .map(([client, { allowed, blocked }]) => ({ client, allowed, blocked }))
      .sort((a, b) => b.allowed + b.blocked - (a.allowed + a.blocked) || a.client.localeCompare(b.client))
      .slice(0, limit);
  }

  /** The slot of now, dropping slots older than a minute. */
  private currentSlot(): Map<string, Totals> {
    const index = Math.floor(this.now() / SLOT_MS);
    const last = this.slots[this.slots.length - 1];
    if (last?.index === index) return last.clients;
    this.slots = this.slots.filter((slot) => slot.index > index - SLOTS);
    const clients = new Map<string, Totals>();
    this.slots.push({ index, clients });
    return clients;
  }
}
