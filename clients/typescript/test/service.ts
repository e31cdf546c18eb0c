/**
 * Starts the real aidlc-auth binary (AIDLC_AUTH_BIN) on a loopback port with a throwaway
 * SQLite file, and drives it the way a user and an operator would.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const INTROSPECTION_SECRET = "clients-test-introspection-secret";
export const PASSWORD = "correct horse battery";
const MAIL_LOG_MARKER = "이메일 발송 시뮬레이션";

export interface TokenPair {
  access_token: string;
  session_id: string;
  expires_in: number;
  user: { id: string; email: string };
}

function serviceBinary(): string {
  const binary = process.env.AIDLC_AUTH_BIN;
  if (!binary) {
    throw new Error("set AIDLC_AUTH_BIN to the aidlc-auth binary (e.g. target/release/aidlc-auth); the tests start it themselves");
  }
  accessSync(binary, constants.X_OK);
  return binary;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** One aidlc-auth process we started; only it is ever stopped, by its own handle. */
export class Service {
  private process: ChildProcess | undefined;
  readonly logPath: string;

  private constructor(
    readonly binary: string,
    readonly dir: string,
    readonly port: number,
    readonly env: Record<string, string>,
  ) {
    this.logPath = join(dir, "service.log");
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get issuer(): string {
    return this.url;
  }

  get audience(): string {
    return this.env.AIDLC_JWT_AUDIENCE ?? "aidlc";
  }

  static async start(settings: Record<string, string> = {}): Promise<Service> {
    const dir = mkdtempSync(join(tmpdir(), "aidlc-clients-ts-"));
    const port = await freePort();
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      DATABASE_URL: `sqlite://${dir}/db.sqlite`,
      PORT: String(port),
      AIDLC_HOST: "127.0.0.1",
      AIDLC_JWT_ISSUER: `http://127.0.0.1:${port}`,
      AIDLC_INTROSPECTION_SECRET: INTROSPECTION_SECRET,
      // Cheap hashing: the tests log in often and measure nothing about Argon2.
      AIDLC_ARGON2_MEMORY_KIB: "1024",
      AIDLC_ARGON2_ITERATIONS: "1",
      // Every login comes from one address and one client IP.
      AIDLC_RATE_LIMIT_IP: "100000/1m",
      AIDLC_RATE_LIMIT_ADDRESS: "100000/1m",
      AIDLC_LOG_FORMAT: "json",
      RUST_LOG: "info",
      // Key changes made with `keys` reach the running process within a second.
      AIDLC_KEY_RELOAD_SECONDS: "1",
      ...settings,
    };
    const service = new Service(serviceBinary(), dir, port, env);
    await service.spawn();
    return service;
  }

  private async spawn(): Promise<void> {
    const log = openSync(this.logPath, "a");
    const child = spawn(this.binary, [], { env: this.env, cwd: this.dir, stdio: ["ignore", log, log] });
    closeSync(log);
    this.process = child;
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`aidlc-auth exited at start-up:\n${readFileSync(this.logPath, "utf8")}`);
      try {
        if ((await fetch(`${this.url}/health`)).status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`aidlc-auth did not answer /health within 20 s:\n${readFileSync(this.logPath, "utf8")}`);
  }

  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  private async mailedCode(email: string): Promise<string> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const lines = readFileSync(this.logPath, "utf8").split("\n").reverse();
      for (const line of lines) {
        if (!line.includes(MAIL_LOG_MARKER)) continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        const fields = (entry.fields ?? entry) as { to?: string; code?: string };
        if (fields.to === email && fields.code) return String(fields.code);
      }
      await sleep(50);
    }
    throw new Error(`no code was mailed to ${email}`);
  }

  private async post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  }

  /** A new active account; returns its first token pair. */
  async registerUser(email = `user-${randomUUID().slice(0, 12)}@example.com`): Promise<TokenPair> {
    const registered = await this.post("/api/auth/register", { email, password: PASSWORD, full_name: "Test User" });
    if (registered.status !== 202) throw new Error(`register: ${registered.status} ${await registered.text()}`);
    const code = await this.mailedCode(email);
    const verified = await this.post("/api/auth/verify-registration", { email, verification_code: code, password: PASSWORD });
    if (verified.status !== 200) throw new Error(`verify-registration: ${verified.status} ${await verified.text()}`);
    return (await verified.json()) as TokenPair;
  }

  async login(email: string): Promise<TokenPair> {
    const response = await this.post("/api/auth/login", { email, password: PASSWORD });
    if (response.status !== 200) throw new Error(`login: ${response.status} ${await response.text()}`);
    return (await response.json()) as TokenPair;
  }

  async logout(accessToken: string): Promise<void> {
    const response = await fetch(`${this.url}/api/auth/logout`, { method: "POST", headers: { authorization: `Bearer ${accessToken}` } });
    if (response.status !== 204) throw new Error(`logout: ${response.status}`);
  }

  async jwks(): Promise<{ keys: Array<{ kid: string; x: string }> }> {
    return (await (await fetch(`${this.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string; x: string }> };
  }

  async jwksKids(): Promise<string[]> {
    return (await this.jwks()).keys.map((k) => k.kid).sort();
  }

  /** Runs `aidlc-auth keys ARGS` on this service's database, as an operator would. */
  keys(...args: string[]): string {
    const env = {
      PATH: this.env.PATH!,
      DATABASE_URL: this.env.DATABASE_URL!,
      AIDLC_KEY_RELOAD_SECONDS: this.env.AIDLC_KEY_RELOAD_SECONDS!,
      RUST_LOG: "warn",
    };
    return execFileSync(this.binary, ["keys", ...args], { env, cwd: this.dir, timeout: 30_000, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  }
}
