/**
 * Rolling line charts (uPlot) of the last {@link POINTS} snapshots, sized to
 * their container as the layout changes.
 */
import uPlot from "uplot";
import { formatNumber } from "./format.js";

/** Points kept per chart: two minutes at one snapshot a second. */
const POINTS = 120;
const HEIGHT = 200;

/** One line of a chart. */
export interface Line {
  label: string;
  color: string;
  dash?: number[];
  /** Decimals in the legend. */
  decimals?: number;
}

/** A chart of `lines` over time; a missing value (null) leaves a gap. */
export class RollingChart {
  private readonly times: number[] = [];
  private readonly values: Array<Array<number | null>>;
  private readonly plot: uPlot;
  private readonly resize: ResizeObserver;
  private width = 0;

  constructor(container: HTMLElement, lines: Line[], unit: string) {
    this.values = lines.map(() => []);
    this.width = Math.max(1, Math.floor(container.clientWidth));
    this.plot = new uPlot(
      {
        width: this.width,
        height: HEIGHT,
        scales: {
          x: { time: true },
          // From zero, with some room above the highest point; a flat zero line while idle.
          y: { range: (_plot, _min, max) => [0, max > 0 ? max * 1.15 : 1] },
        },
        axes: [{}, { label: unit, size: 60 }],
        series: [
          {},
          ...lines.map((line) => ({
            label: line.label,
            stroke: line.color,
            width: 2,
            dash: line.dash,
            points: { show: false },
            value: (_plot: uPlot, value: number | null) =>
              value === null ? "—" : formatNumber(value, line.decimals ?? 1),
          })),
        ],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
      },
      this.data(),
      container,
    );
    // The container's width comes from the grid, never from the chart, so resizing cannot loop.
    this.resize = new ResizeObserver((entries) => {
      const width = Math.floor(entries[0]?.contentRect.width ?? 0);
      if (width > 0 && width !== this.width) {
        this.width = width;
        requestAnimationFrame(() => this.plot.setSize({ width: this.width, height: HEIGHT }));
      }
    });
    this.resize.observe(container);
  }

  /** Adds the values at `time` (seconds since the epoch), one per line, dropping the oldest beyond {@link POINTS}. */
  push(time: number, values: Array<number | null>): void {
    this.times.push(time);
    values.forEach((value, i) => this.values[i]?.push(value));
    if (this.times.length > POINTS) {
      this.times.shift();
      for (const line of this.values) line.shift();
    }
    this.plot.setData(this.data());
  }

  /** Empties the chart. */
  clear(): void {
    this.times.length = 0;
    for (const line of this.values) line.length = 0;
    this.plot.setData(this.data());
  }

  private data(): uPlot.AlignedData {
    return [this.times, ...this.values];
  }
}
