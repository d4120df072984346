/**
 * The process and Node.js runtime metrics the sidecar exports under
 * `trellis_process_*`: the same names, help texts, types and labels as
 * prom-client's default metrics with that prefix (CPU, memory from
 * /proc/self/status, file descriptors, event-loop delay, active handles,
 * requests and resources, heap and heap spaces, Node.js version, GC
 * durations), so dashboards built on them keep working. Reads are made when
 * the registry is scraped; only the event-loop delay monitor and the GC
 * observer run in between, as they did under prom-client.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver, constants as perf } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Counter, Gauge, Histogram, type MetricRegistry } from './metric-registry';

/** Stops the monitors started by registerProcessMetrics. */
export type StopProcessMetrics = () => void;

const GC_KINDS: Record<number, string> = {
  [perf.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perf.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perf.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perf.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

/** Registers the process metrics with names prefixed `prefix`. */
export function registerProcessMetrics(registry: MetricRegistry, prefix: string): StopProcessMetrics {
  const p = (n: string): string => prefix + n;
  const gauge = (name: string, help: string, collect?: (this: Gauge<string>) => void, labelNames: string[] = []): Gauge<string> =>
    new Gauge<string>({ name: p(name), help, registry, labelNames, ...(collect ? { collect } : {}) });

  // CPU: counters advanced by the usage since the last scrape.
  let last = process.cpuUsage();
  new Counter({
    name: p('process_cpu_user_seconds_total'),
    help: 'Total user CPU time spent in seconds.',
    registry,
    collect() {
      const now = process.cpuUsage();
      const user = (now.user - last.user) / 1e6;
      const system = (now.system - last.system) / 1e6;
      last = now;
      this.inc({}, user);
      cpuSystem.inc({}, system);
      cpuTotal.inc({}, user + system);
    },
  });
  const cpuSystem = new Counter({ name: p('process_cpu_system_seconds_total'), help: 'Total system CPU time spent in seconds.', registry });
  const cpuTotal = new Counter({ name: p('process_cpu_seconds_total'), help: 'Total user and system CPU time spent in seconds.', registry });
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', function () {
    this.set(START_SECONDS);
  });

  // Memory from /proc/self/status (a virtual file: reading it never blocks).
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', function () {
    const status = procStatus();
    if (status.VmRSS !== undefined) this.set(status.VmRSS);
    if (status.VmSize !== undefined) virtualMem.set(status.VmSize);
    if (status.VmData !== undefined) heapBytes.set(status.VmData);
  });
  const virtualMem = gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.');
  const heapBytes = gauge('process_heap_bytes', 'Process heap size in bytes.');
  gauge('process_open_fds', 'Number of open file descriptors.', function () {
    try {
      this.set(readdirSync('/proc/self/fd').length - 1);
    } catch {
      /* not Linux */
    }
  });
  const maxFds = readMaxFds();
  gauge('process_max_fds', 'Maximum number of open file descriptors.', function () {
    if (maxFds !== undefined) this.set(maxFds);
  });

  // Event-loop delay.
  const delay = monitorEventLoopDelay();
  delay.enable();
  const lag = gauge('nodejs_eventloop_lag_seconds', 'Lag of event loop in seconds.', function () {
    const start = process.hrtime.bigint();
    setImmediate(() => lag.set(Number(process.hrtime.bigint() - start) / 1e9));
    lagMin.set(delay.min / 1e9);
    lagMax.set(delay.max / 1e9);
    lagMean.set(delay.mean / 1e9);
    lagStddev.set(delay.stddev / 1e9);
    lagP50.set(delay.percentile(50) / 1e9);
    lagP90.set(delay.percentile(90) / 1e9);
    lagP99.set(delay.percentile(99) / 1e9);
    delay.reset();
  });
  const lagMin = gauge('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.');
  const lagMax = gauge('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.');
  const lagMean = gauge('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.');
  const lagStddev = gauge('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.');
  const lagP50 = gauge('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.');
  const lagP90 = gauge('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.');
  const lagP99 = gauge('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.');

  // What keeps the event loop alive.
  const byType = (g: Gauge<string>, types: string[]): void => {
    g.reset();
    const counts = new Map<string, number>();
    for (const t of types) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [type, n] of counts) g.set({ type }, n);
  };
  const internal = process as unknown as { _getActiveHandles(): object[]; _getActiveRequests(): object[] };
  const className = (o: object): string => (o && o.constructor ? o.constructor.name : typeof o);
  gauge(
    'nodejs_active_resources',
    'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
    function () {
      byType(this, process.getActiveResourcesInfo());
    },
    ['type'],
  );
  gauge('nodejs_active_resources_total', 'Total number of active resources.', function () {
    this.set(process.getActiveResourcesInfo().length);
  });
  gauge(
    'nodejs_active_handles',
    'Number of active libuv handles grouped by handle type. Every handle type is C++ class name.',
    function () {
      byType(this, internal._getActiveHandles().map(className));
    },
    ['type'],
  );
  gauge('nodejs_active_handles_total', 'Total number of active handles.', function () {
    this.set(internal._getActiveHandles().length);
  });
  gauge(
    'nodejs_active_requests',
    'Number of active libuv requests grouped by request type. Every request type is C++ class name.',
    function () {
      byType(this, internal._getActiveRequests().map(className));
    },
    ['type'],
  );
  gauge('nodejs_active_requests_total', 'Total number of active requests.', function () {
    this.set(internal._getActiveRequests().length);
  });

  // Heap.
  gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', function () {
    const m = process.memoryUsage();
    this.set(m.heapTotal);
    heapUsed.set(m.heapUsed);
    external.set(m.external);
  });
  const heapUsed = gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.');
  const external = gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.');
  gauge(
    'nodejs_heap_space_size_total_bytes',
    'Process heap space size total from Node.js in bytes.',
    function () {
      for (const s of getHeapSpaceStatistics()) {
        const space = s.space_name.replace(/_space$/, '');
        this.set({ space }, s.space_size);
        spaceUsed.set({ space }, s.space_used_size);
        spaceAvailable.set({ space }, s.space_available_size);
      }
    },
    ['space'],
  );
  const spaceUsed = gauge('nodejs_heap_space_size_used_bytes', 'Process heap space size used from Node.js in bytes.', undefined, ['space']);
  const spaceAvailable = gauge('nodejs_heap_space_size_available_bytes', 'Process heap space size available from Node.js in bytes.', undefined, ['space']);

  const [major, minor, patch] = process.version.slice(1).split('.');
  gauge(
    'nodejs_version_info',
    'Node.js version info.',
    function () {
      this.set({ version: process.version, major: String(Number(major)), minor: String(Number(minor)), patch: String(Number(patch)) }, 1);
    },
    ['version', 'major', 'minor', 'patch'],
  );

  // GC pauses, by kind.
  const gc = new Histogram<'kind'>({
    name: p('nodejs_gc_duration_seconds'),
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    registry,
    labelNames: ['kind'],
    buckets: [0.001, 0.01, 0.1, 1, 2, 5],
  });
  const observer = new PerformanceObserver((list) => {
    const entry = list.getEntries()[0];
    if (!entry) return;
    const kind = GC_KINDS[((entry as { detail?: { kind?: number } }).detail)?.kind ?? -1];
    gc.observe(kind === undefined ? {} : { kind }, entry.duration / 1000);
  });
  observer.observe({ entryTypes: ['gc'] });

  return () => {
    delay.disable();
    observer.disconnect();
  };
}

function procStatus(): { VmRSS?: number; VmSize?: number; VmData?: number } {
  const out: Record<string, number> = {};
  try {
    for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
      const m = /^(VmRSS|VmSize|VmData):\s*(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) * 1024;
    }
  } catch {
    /* not Linux */
  }
  return out;
}

function readMaxFds(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/  +/)[1];
    return soft !== undefined && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}
