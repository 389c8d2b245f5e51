/** The busiest clients of the last minute, with their requests and their bucket's level. */
import type { Stats } from "../../gen/streamgate/v1/admin_service_pb.js";
import { element } from "./dom.js";
import { formatNumber } from "./format.js";

/** Fills the `#leaderboard` table's body, one row per client, from each snapshot. */
export class Leaderboard {
  private readonly body: HTMLTableSectionElement;

  constructor(table: HTMLTableElement) {
    this.body = table.tBodies[0] ?? table.createTBody();
  }

  /** Shows `stats.topClients`, busiest first (the server's order). */
  show(stats: Stats): void {
    const burst = stats.limits?.perClient?.burst;
    const rows = stats.topClients.map((figures) => {
      const row = element("tr");
      row.dataset.client = figures.client;
      row.append(
        element("td", figures.client, "client"),
        element("td", figures.tenant, "tenant"),
        element("td", formatNumber(figures.allowed), "number"),
        element("td", formatNumber(figures.blocked), "number"),
        tokensCell(figures.tokens, burst),
      );
      return row;
    });
    if (rows.length === 0) {
      const empty = element("td", "No requests in the last minute.", "empty");
      empty.colSpan = 5;
      const row = element("tr");
      row.append(empty);
      rows.push(row);
    }
    this.body.replaceChildren(...rows);
  }

  /** Empties the table. */
  clear(): void {
    this.body.replaceChildren();
  }
}

/** The client's tokens as a number and a level bar out of the per-client burst; "no limit" without a bucket. */
function tokensCell(tokens: number | undefined, burst: number | undefined): HTMLTableCellElement {
  const cell = element("td", undefined, "tokens");
  if (tokens === undefined || burst === undefined) {
    cell.textContent = "no limit";
    return cell;
  }
  const meter = element("meter");
  meter.min = 0;
  meter.max = burst;
  meter.value = tokens;
  // Coloured by the browser: fine while mostly full, a warning once below a fifth.
  meter.low = burst * 0.2;
  meter.high = burst * 0.5;
  meter.optimum = burst;
  meter.title = `${formatNumber(tokens, 1)} of ${formatNumber(burst)} tokens`;
  cell.append(meter, element("span", formatNumber(tokens, 1), "number"));
  return cell;
}
