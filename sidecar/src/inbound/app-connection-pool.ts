/**
 * Keep-alive HTTP/1.1 connections from an `/http` inbound port to its app,
 * one exchange at a time on each (no pipelining towards the app), reused
 * last-in first-out as node:http's Agent does with `scheduling: 'lifo'`.
 * Responses are read with llhttp (h1-response-reader.ts).
 *
 * A connection goes back to the pool only when its exchange finished
 * cleanly on both sides: the whole request body written and the whole
 * response read, and the app did not say `Connection: close`. Anything
 * else (the app answered before the request body was complete, the client
 * went away, the app reset or sent something unreadable) closes it, so a
 * reused connection never starts mid-message.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { H1ResponseReader, type ResponseHandlers, type ResponseReadError } from '../http/h1-response-reader';

/** One exchange's view of its connection's events. */
export interface ExchangeEvents extends ResponseHandlers {
  /** The connection failed before the response was complete (reset, closed early, unreadable answer). */
  failed(reason: string): void;
  /** The connection can take more request bytes again. */
  drain(): void;
}

/** A pooled connection to the app. */
export class AppConnection {
  private exchange: ExchangeEvents | undefined;
  private failedWith: string | undefined;
  readonly reader = new H1ResponseReader();

  constructor(
    readonly socket: Socket,
    private readonly onIdleClose: (c: AppConnection) => void,
  ) {
    socket.on('data', (chunk: Buffer) => {
      const err = this.reader.execute(chunk);
      if (err) this.fail(err);
    });
    socket.on('end', () => {
      const err = this.reader.finish();
      if (err) this.fail(err);
      socket.destroy();
    });
    socket.on('drain', () => this.exchange?.drain());
    socket.on('error', (err: Error & { code?: string }) => {
      this.failedWith = err.code ?? err.message;
    });
    socket.on('close', () => {
      this.reader.close();
      const ex = this.exchange;
      this.exchange = undefined;
      if (ex) ex.failed(this.failedWith ?? 'the app closed the connection');
      else this.onIdleClose(this);
    });
  }

  private fail(err: ResponseReadError): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.socket.destroy();
    ex?.failed(err.message);
  }

  /** Starts an exchange: `events` hear of its response and of this connection's failure. */
  begin(events: ExchangeEvents, headRequest: boolean): void {
    this.exchange = events;
    this.reader.expect(events, headRequest);
  }

  /** Ends the current exchange's hold on this connection (its events are no longer called). */
  detach(): void {
    this.exchange = undefined;
  }

  get usable(): boolean {
    return !this.socket.destroyed && !this.reader.busy && this.exchange === undefined;
  }
}

/** The connections of one forwarder to `host:port`. */
export class AppConnectionPool {
  private readonly idle: AppConnection[] = [];

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly maxIdle = 256,
  ) {}

  /** An idle connection (most recently used first), or a new one. */
  take(): AppConnection {
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (!c.usable) {
        c.socket.destroy();
        continue;
      }
      c.socket.ref();
      return c;
    }
    const socket = netConnect({ host: this.host, port: this.port, noDelay: true });
    return new AppConnection(socket, (c) => this.forget(c));
  }

  /** Hands back a connection whose exchange finished cleanly; any other is closed. */
  give(c: AppConnection, reusable: boolean): void {
    c.detach();
    if (!reusable || !c.usable || this.idle.length >= this.maxIdle) {
      c.socket.destroy();
      return;
    }
    // An idle connection does not keep the process alive (as node:http's Agent does).
    c.socket.unref();
    this.idle.push(c);
  }

  /** Idle connections, for tests and metrics. */
  get idleCount(): number {
    return this.idle.length;
  }

  /** Closes every idle connection. */
  close(): void {
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }

  private forget(c: AppConnection): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
  }
}
