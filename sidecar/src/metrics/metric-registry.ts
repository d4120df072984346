/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * each registered with one registry (no global default), collected on
 * demand. It keeps the parts of prom-client's API the sidecar uses
 * (`inc`, `dec`, `set`, `observe`, `get()`, per-metric `collect`,
 * `registry.metrics()`, `registry.contentType`) so callers read the same.
 */
import { PROMETHEUS_CONTENT_TYPE, renderExposition, type MetricFamily, type MetricType, type Sample } from './prometheus-text';

/** Label values by label name. */
export type Labels<N extends string> = Partial<Record<N, string | number>>;

/** A metric's current values, as prom-client's `get()` returns them. */
export interface MetricSnapshot<N extends string> {
  name: string;
  help: string;
  type: MetricType;
  values: Array<{ labels: Labels<N>; value: number; metricName?: string }>;
}

interface MetricBase {
  readonly name: string;
  family(): Promise<MetricFamily>;
}

/** Holds metrics in registration order and renders them. */
export class MetricRegistry {
  private readonly members: MetricBase[] = [];
  /** The Content-Type of `metrics()`. */
  readonly contentType = PROMETHEUS_CONTENT_TYPE;

  /** Adds a metric; a second metric of the same name is a programming error. */
  register(m: MetricBase): void {
    if (this.members.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} is already registered`);
    this.members.push(m);
  }

  /** Runs every metric's collect hook, then renders the text exposition. */
  async metrics(): Promise<string> {
    const families: MetricFamily[] = [];
    for (const m of this.members) families.push(await m.family());
    return renderExposition(families);
  }
}

interface MetricOptions<N extends string, M> {
  name: string;
  help: string;
  labelNames?: readonly N[];
  registry: MetricRegistry;
  /** Called before each scrape (e.g. to set a gauge from current state). */
  collect?: (this: M) => void | Promise<void>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

abstract class LabelledMetric<N extends string> implements MetricBase {
  readonly name: string;
  readonly help: string;
  protected readonly labelNames: readonly N[];
  /** Values by label key, each with the labels object first used for it (its key order is the output order). */
  protected readonly series = new Map<string, { labels: Labels<N>; value: number }>();
  private readonly collectHook: (() => void | Promise<void>) | undefined;

  constructor(opts: MetricOptions<N, never>) {
    if (!NAME.test(opts.name)) throw new Error(`invalid metric name ${JSON.stringify(opts.name)}`);
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames ?? [];
    // Bound to the metric, so `this.set(...)` inside a collect hook works as in prom-client.
    this.collectHook = opts.collect ? (opts.collect as (this: unknown) => void | Promise<void>).bind(this) : undefined;
    opts.registry.register(this);
  }

  protected abstract readonly type: MetricType;

  /** Current values (after running the collect hook). */
  async get(): Promise<MetricSnapshot<N>> {
    await this.collectHook?.();
    return { name: this.name, help: this.help, type: this.type, values: [...this.series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })) };
  }

  /** Forgets every labelled value. */
  reset(): void {
    this.series.clear();
  }

  async family(): Promise<MetricFamily> {
    await this.collectHook?.();
    return { name: this.name, help: this.help, type: this.type, samples: this.samples() };
  }

  protected samples(): Sample[] {
    return [...this.series.values()].map((s) => ({ labels: Object.entries(s.labels).map(([k, v]) => [k, String(v)] as const), value: s.value }));
  }

  protected add(labels: Labels<N>, delta: number, setTo?: number): void {
    const key = this.key(labels);
    const s = this.series.get(key);
    if (s) s.value = setTo ?? s.value + delta;
    else this.series.set(key, { labels: { ...labels }, value: setTo ?? delta });
  }

  protected key(labels: Labels<N>): string {
    for (const k of Object.keys(labels)) {
      if (!(this.labelNames as readonly string[]).includes(k)) throw new Error(`${this.name}: unknown label ${k}`);
    }
    return this.labelNames.map((n) => (labels[n] === undefined ? '' : `${n}=${String(labels[n])}`)).join('\u0000');
  }
}

/** A value that only goes up. */
export class Counter<N extends string = never> extends LabelledMetric<N> {
  protected readonly type = 'counter';

  constructor(opts: MetricOptions<N, Counter<N>>) {
    super(opts as unknown as MetricOptions<N, never>);
    if (this.labelNames.length === 0) this.add({}, 0);
  }

  /** Adds `value` (default 1; never negative) to the series for `labels`. */
  inc(labels: Labels<N> = {}, value = 1): void {
    if (!(value >= 0)) throw new Error(`${this.name}: a counter cannot be increased by ${value}`);
    this.add(labels, value);
  }
}

/** A value that goes up and down. */
export class Gauge<N extends string = never> extends LabelledMetric<N> {
  protected readonly type = 'gauge';

  constructor(opts: MetricOptions<N, Gauge<N>>) {
    super(opts as unknown as MetricOptions<N, never>);
    if (this.labelNames.length === 0) this.add({}, 0);
  }

  /** Sets the value: `set(v)` or `set(labels, v)`. */
  set(labelsOrValue: Labels<N> | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.add({}, 0, labelsOrValue);
    else this.add(labelsOrValue, 0, value ?? 0);
  }

  /** Adds `value` (default 1, may be negative). */
  inc(labels: Labels<N> = {}, value = 1): void {
    this.add(labels, value);
  }

  /** Subtracts `value` (default 1). */
  dec(labels: Labels<N> = {}, value = 1): void {
    this.add(labels, -value);
  }
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram<N extends string = never> extends LabelledMetric<N> {
  protected readonly type = 'histogram';
  private readonly buckets: readonly number[];
  private readonly observations = new Map<string, { labels: Labels<N>; counts: number[]; sum: number; count: number }>();

  constructor(opts: MetricOptions<N, Histogram<N>> & { buckets: readonly number[] }) {
    super(opts as unknown as MetricOptions<N, never>);
    this.buckets = [...opts.buckets].sort((a, b) => a - b);
  }

  /** Records one observation. */
  observe(labels: Labels<N>, value: number): void {
    const key = this.key(labels);
    let o = this.observations.get(key);
    if (!o) {
      o = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.observations.set(key, o);
    }
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) o.counts[i]!++;
    o.sum += value;
    o.count++;
  }

  override reset(): void {
    this.observations.clear();
  }

  protected override samples(): Sample[] {
    const out: Sample[] = [];
    for (const o of this.observations.values()) {
      const labels = Object.entries(o.labels).map(([k, v]) => [k, String(v)] as const);
      let cumulative = 0;
      this.buckets.forEach((b, i) => {
        cumulative += o.counts[i]!;
        out.push({ suffix: '_bucket', labels: [['le', String(b)], ...labels], value: cumulative });
      });
      out.push({ suffix: '_bucket', labels: [['le', '+Inf'], ...labels], value: o.count });
      out.push({ suffix: '_sum', labels, value: o.sum });
      out.push({ suffix: '_count', labels, value: o.count });
    }
    return out;
  }
}
