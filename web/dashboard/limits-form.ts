/**
 * The admin form for the request limits: filled from GetLimits, sent with
 * UpdateLimits naming in its update_mask only the groups the operator changed,
 * so that a change made meanwhile elsewhere to another group is kept.
 */
import { create } from "@bufbuild/protobuf";
import { type RequestLimits, RequestLimitsSchema, type TokenBucket } from "../../gen/streamgate/v1/admin_service_pb.js";
import type { Clients } from "./client.js";
import { byId } from "./dom.js";
import { describeError, isAbort, type ShownError } from "./errors.js";

const UINT32_MAX = 4_294_967_295;

/** The update_mask paths, one per group of inputs. */
type Group = "global" | "per_client" | "client_max_watchers";

/** A bucket as typed: undefined for no limit. */
type Bucket = { ratePerSecond: number; burst: number } | undefined;

/** The form's values, parsed. */
interface Values {
  global: Bucket;
  perClient: Bucket;
  clientMaxWatchers: number;
}

/** Raised for input the form will not send. */
class InputError extends Error {}

/** The limits form (`#limits-form`). */
export class LimitsForm {
  private readonly form = byId("limits-form", HTMLFormElement);
  private readonly inputs = {
    globalRate: byId("global-rate", HTMLInputElement),
    globalBurst: byId("global-burst", HTMLInputElement),
    clientRate: byId("client-rate", HTMLInputElement),
    clientBurst: byId("client-burst", HTMLInputElement),
    clientMaxWatchers: byId("client-max-watchers", HTMLInputElement),
  };
  private readonly submit = byId("limits-submit", HTMLButtonElement);
  private readonly status = byId("limits-status", HTMLElement);
  private readonly shared = byId("limits-shared", HTMLElement);
  /** The limits the inputs were last filled with: what "changed" is measured against. */
  private current: Values | undefined;
  /** The text each input was last filled with, to tell whether the operator has typed since. */
  private filledText = new Map<HTMLInputElement, string>();
  private sending = false;

  constructor(private readonly admin: Clients["admin"]) {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
    this.setEnabled(false);
  }

  /** Fills the form with the limits in force (GetLimits). */
  async load(signal: AbortSignal): Promise<ShownError | undefined> {
    this.report("loading…", "pending");
    try {
      const response = await this.admin.getLimits({}, { signal });
      this.fill(response.limits ?? create(RequestLimitsSchema));
      this.shared.textContent = response.shared
        ? "Shared through Redis: a change applies to every instance."
        : "Local to this instance.";
      this.report("", "idle");
      this.setEnabled(true);
      return undefined;
    } catch (error) {
      if (isAbort(error, signal)) return undefined;
      const shown = describeError(error);
      this.report(shown.text, "error");
      return shown;
    }
  }

  /**
   * Shows limits seen in a Stats snapshot, unless the operator is editing:
   * the form follows changes made elsewhere while it is untouched.
   */
  follow(limits: RequestLimits | undefined): void {
    if (!limits || !this.current || this.sending || !this.pristine()) return;
    if (this.form.contains(document.activeElement) && document.activeElement instanceof HTMLInputElement) return;
    if (sameValues(this.current, valuesOf(limits))) return;
    this.fill(limits);
  }

  /** Empties the form (another key, another session). */
  clear(): void {
    this.current = undefined;
    for (const input of Object.values(this.inputs)) input.value = "";
    this.filledText.clear();
    this.shared.textContent = "";
    this.report("", "idle");
    this.setEnabled(false);
  }

  private fill(limits: RequestLimits): void {
    const values = valuesOf(limits);
    const text = (n: number | undefined) => (n === undefined ? "" : String(n));
    this.inputs.globalRate.value = text(values.global?.ratePerSecond);
    this.inputs.globalBurst.value = text(values.global?.burst);
    this.inputs.clientRate.value = text(values.perClient?.ratePerSecond);
    this.inputs.clientBurst.value = text(values.perClient?.burst);
    // 0 is no cap: left empty, so the placeholder says so.
    this.inputs.clientMaxWatchers.value = values.clientMaxWatchers === 0 ? "" : String(values.clientMaxWatchers);
    this.filledText = new Map(Object.values(this.inputs).map((input) => [input, input.value]));
    this.current = values;
  }

  private pristine(): boolean {
    return Object.values(this.inputs).every((input) => input.value === this.filledText.get(input));
  }

  private async send(): Promise<void> {
    if (!this.current || this.sending) return;
    let next: Values;
    try {
      next = this.read();
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      this.report(error.message, "error");
      return;
    }
    const paths: Group[] = [];
    if (!sameBucket(next.global, this.current.global)) paths.push("global");
    if (!sameBucket(next.perClient, this.current.perClient)) paths.push("per_client");
    if (next.clientMaxWatchers !== this.current.clientMaxWatchers) paths.push("client_max_watchers");
    if (paths.length === 0) {
      this.report("nothing changed", "idle");
      return;
    }
    this.sending = true;
    this.submit.disabled = true;
    this.report("saving…", "pending");
    try {
      const response = await this.admin.updateLimits({
        limits: { global: next.global, perClient: next.perClient, clientMaxWatchers: next.clientMaxWatchers },
        updateMask: { paths },
      });
      this.fill(response.limits ?? create(RequestLimitsSchema));
      this.report(`saved: ${paths.join(", ")}`, "ok");
    } catch (error) {
      this.report(describeError(error).text, "error");
    } finally {
      this.sending = false;
      this.submit.disabled = false;
    }
  }

  /** The inputs as limits; throws {@link InputError} for what cannot be sent at all. */
  private read(): Values {
    return {
      global: readBucket("global", this.inputs.globalRate, this.inputs.globalBurst),
      perClient: readBucket("per-client", this.inputs.clientRate, this.inputs.clientBurst),
      clientMaxWatchers: readWhole("max watchers", this.inputs.clientMaxWatchers) ?? 0,
    };
  }

  private report(text: string, state: "idle" | "pending" | "ok" | "error"): void {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  private setEnabled(enabled: boolean): void {
    for (const input of Object.values(this.inputs)) input.disabled = !enabled;
    this.submit.disabled = !enabled;
  }
}

/**
 * A bucket from its two inputs: both empty means no limit; an empty burst is
 * one second's worth, as with RATE_LIMIT_BURST. Ranges are the server's to check.
 */
function readBucket(name: string, rateInput: HTMLInputElement, burstInput: HTMLInputElement): Bucket {
  const rate = readWhole(`${name} rate`, rateInput);
  const burst = readWhole(`${name} burst`, burstInput);
  if (rate === undefined && burst === undefined) return undefined;
  if (rate === undefined) throw new InputError(`${name}: give a rate with the burst, or leave both empty for no limit`);
  return { ratePerSecond: rate, burst: burst ?? rate };
}

/** A whole number from an input, undefined when empty. */
function readWhole(name: string, input: HTMLInputElement): number | undefined {
  const text = input.value.trim();
  if (text === "") return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > UINT32_MAX) {
    throw new InputError(`${name}: a whole number from 0 to ${UINT32_MAX}`);
  }
  return value;
}

function valuesOf(limits: RequestLimits): Values {
  const bucket = (given: TokenBucket | undefined): Bucket =>
    given && { ratePerSecond: given.ratePerSecond, burst: given.burst };
  return {
    global: bucket(limits.global),
    perClient: bucket(limits.perClient),
    clientMaxWatchers: limits.clientMaxWatchers,
  };
}

function sameBucket(a: Bucket, b: Bucket): boolean {
  return a === undefined || b === undefined ? a === b : a.ratePerSecond === b.ratePerSecond && a.burst === b.burst;
}

function sameValues(a: Values, b: Values): boolean {
  return (
    sameBucket(a.global, b.global) &&
    sameBucket(a.perClient, b.perClient) &&
    a.clientMaxWatchers === b.clientMaxWatchers
  );
}
