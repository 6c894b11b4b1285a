// Client options matching the test planes' fast timings.

import type { ConnectOptions } from "../src/index.js";
import { DEADLINE_MS, POLL_PERIOD_MS } from "./plane.js";

export function fastOptions(extra: ConnectOptions = {}): ConnectOptions {
  return {
    failoverTimeoutMs: DEADLINE_MS,
    connectTimeoutMs: 500,
    keepAliveMs: 300,
    pollPeriodMs: POLL_PERIOD_MS,
    ...extra,
  };
}

/** Asserts that `views` never go down in epoch (rule 4, as the application sees it). */
export function epochsNeverDecrease(views: readonly { epoch: bigint }[]): boolean {
  return views.every((view, i) => i === 0 || view.epoch >= views[i - 1]!.epoch);
}
