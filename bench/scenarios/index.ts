/**
 * Every scenario, in the order `npm run bench` runs them: baselines first, so
 * the scenarios after them can state their ratios.
 */
import type { Scenario } from "../lib/context.js";
import { baselinesKafka } from "./baselines-kafka.js";
import { baselinesRpc } from "./baselines-rpc.js";
import { catchUp } from "./catchup.js";
import { e2e } from "./e2e.js";
import { fanout } from "./fanout.js";
import { sendData } from "./senddata.js";
import { sendDataStream } from "./senddatastream.js";
import { startStream } from "./startstream.js";
import { watchers } from "./watchers.js";
import { sendDataWorkers } from "./workers.js";

export const SCENARIOS: Scenario[] = [
  baselinesRpc,
  baselinesKafka,
  startStream,
  sendData,
  sendDataWorkers,
  sendDataStream,
  fanout,
  catchUp,
  e2e,
  watchers,
];
