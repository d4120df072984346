/**
 * A grpc-js load generator as its own process (so its CPU is not the
 * proxies'): `node l7-grpc-load.js TARGET MODE SECONDS CONCURRENCY`, MODE
 * `unary` (CONCURRENCY calls in flight on one channel) or `stream`
 * (CONCURRENCY bidirectional streams, each sending its next message when the
 * echo of the last one arrives). Prints `{"calls":N,"per_s":N,"p99_ms":N,"errors":N}`.
 */
import * as grpc from '@grpc/grpc-js';
import { BENCH_GRPC_SERVICE } from './l7-grpc-service';

type Echo = grpc.Client & { Unary: (m: Buffer, cb: (e: grpc.ServiceError | null) => void) => void; Chat: () => grpc.ClientDuplexStream<Buffer, Buffer> };
const [target, mode, secondsText, concurrencyText] = process.argv.slice(2) as [string, string, string, string];
const Client = grpc.makeGenericClientConstructor(BENCH_GRPC_SERVICE, 'Echo') as unknown as new (t: string, c: grpc.ChannelCredentials) => Echo;
const client = new Client(target, grpc.credentials.createInsecure());
const msg = Buffer.alloc(64, 0x61);
const latencies: number[] = [];
let errors = 0;
const seconds = Number(secondsText);
const concurrency = Number(concurrencyText);

async function main(): Promise<void> {
  // Warm-up: one call, so the channel is connected before the clock starts.
  await new Promise<void>((r) => client.Unary(msg, () => r()));
  const start = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  const workers = Array.from({ length: concurrency }, () =>
    mode === 'unary'
      ? (async () => {
          while (Date.now() < deadline) {
            const t = process.hrtime.bigint();
            await new Promise<void>((r) =>
              client.Unary(msg, (e) => {
                if (e) errors++;
                else latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
                r();
              }),
            );
          }
        })()
      : new Promise<void>((resolve) => {
          const call = client.Chat();
          let t = process.hrtime.bigint();
          call.on('data', () => {
            latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
            if (Date.now() >= deadline) return void call.end();
            t = process.hrtime.bigint();
            call.write(msg);
          });
          call.on('error', () => {
            errors++;
            resolve();
          });
          call.on('end', resolve);
          call.write(msg);
        }),
  );
  await Promise.all(workers);
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  latencies.sort((a, b) => a - b);
  const p99 = latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]! : NaN;
  process.stdout.write(JSON.stringify({ calls: latencies.length, per_s: Math.round(latencies.length / secs), p99_ms: Math.round(p99 * 100) / 100, errors }) + '\n');
  client.close();
}

void main();
