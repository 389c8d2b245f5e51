/**
 * How figures read on the page: plain numbers (no thousands separators, a
 * point for decimals), so that what is shown is also what a script reads back.
 */

const formats = new Map<number, Intl.NumberFormat>();

/** `value` with at most `decimals` decimals. */
export function formatNumber(value: number | bigint, decimals = 0): string {
  let format = formats.get(decimals);
  if (!format) {
    format = new Intl.NumberFormat("en-US", { maximumFractionDigits: decimals, useGrouping: false });
    formats.set(decimals, format);
  }
  return format.format(value);
}

/** A wall-clock time, local, to the millisecond: "14:03:07.125". */
export function formatTime(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}
