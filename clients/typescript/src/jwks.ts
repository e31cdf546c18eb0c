/** A cache of aidlc-auth's published signing keys (its JWKS). */

import { type CryptoKey, importJWK, type JWK } from "jose";
import { AuthUnavailableError, InvalidTokenError } from "./errors.js";

/** Returns the parsed JWKS document; throws anything when it cannot. */
export type FetchJwks = () => Promise<unknown>;

type Key = CryptoKey | Uint8Array;

/**
 * The Ed25519 signing keys of a JWKS document, by kid. Keys of any other type or use are
 * skipped rather than refused: a key we would never accept must not sink the whole set.
 */
export async function parseJwks(document: unknown): Promise<Map<string, Key>> {
  const keys = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error("not a JWKS document");
  const parsed = new Map<string, Key>();
  for (const jwk of keys as Array<JWK & Record<string, unknown>>) {
    if (
      typeof jwk !== "object" || jwk === null ||
      typeof jwk.kid !== "string" ||
      jwk.kty !== "OKP" || jwk.crv !== "Ed25519" ||
      (jwk.use ?? "sig") !== "sig" || (jwk.alg ?? "EdDSA") !== "EdDSA" ||
      "d" in jwk // a private key published by mistake is not ours to use
    ) {
      continue;
    }
    try {
      parsed.set(jwk.kid, await importJWK({ kty: "OKP", crv: "Ed25519", x: jwk.x }, "EdDSA"));
    } catch {
      // unreadable key: skipped like a foreign one
    }
  }
  return parsed;
}

export interface JwksCacheOptions {
  lifetimeSeconds: number;
  cooldownSeconds: number;
  maxStaleSeconds: number;
  /** Milliseconds from a monotonic clock (tests move it). */
  now?: () => number;
  /** Where fetch failures are reported (default console.warn). */
  warn?: (message: string) => void;
}

/**
 * Keeps the key set for `lifetimeSeconds`, re-fetches early on an unknown kid (a rotation)
 * at most once per `cooldownSeconds`, and keeps the last good set, up to `maxStaleSeconds`
 * old, while fetches fail.
 */
export class JwksCache {
  private keys: Map<string, Key> | undefined;
  private fetchedAt = -Infinity;
  private attemptedAt = -Infinity;
  private lastFetchFailed = false;
  private inFlight: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly fetchJwks: FetchJwks,
    private readonly options: JwksCacheOptions,
  ) {
    this.now = options.now ?? (() => performance.now());
  }

  /** The kids of the set held now (for tests and diagnostics). */
  get kids(): string[] {
    return [...(this.keys?.keys() ?? [])].sort();
  }

  /**
   * The key named `kid`. Throws InvalidTokenError when the service, reached just now, does
   * not publish it, and AuthUnavailableError when no usable set is held or can be fetched.
   */
  async key(kid: string): Promise<Key> {
    // A fetch already under way (started by a concurrent request) is awaited, not skipped.
    if (this.inFlight !== undefined) await this.inFlight;
    else if (this.needsFetch(kid)) await this.refresh();
    if (this.keys === undefined) throw new AuthUnavailableError("the signing keys could not be fetched");
    if (this.lastFetchFailed && this.now() - this.fetchedAt > this.options.maxStaleSeconds * 1000) {
      throw new AuthUnavailableError("the signing keys could not be refreshed for too long");
    }
    const found = this.keys.get(kid);
    if (found !== undefined) return found;
    if (this.lastFetchFailed) {
      // It may be a key published after our last good fetch: not the caller's fault.
      throw new AuthUnavailableError("unknown key id and the signing keys could not be refreshed");
    }
    throw new InvalidTokenError("the token's signing key is not published");
  }

  private needsFetch(kid: string): boolean {
    const now = this.now();
    const due =
      this.keys === undefined ||
      now - this.fetchedAt >= this.options.lifetimeSeconds * 1000 ||
      !this.keys.has(kid);
    return due && now - this.attemptedAt >= this.options.cooldownSeconds * 1000;
  }

  private refresh(): Promise<void> {
    // Concurrent requests share one fetch.
    this.inFlight ??= this.fetchOnce().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async fetchOnce(): Promise<void> {
    const attemptedAt = this.now();
    this.attemptedAt = attemptedAt;
    try {
      this.keys = await parseJwks(await this.fetchJwks());
      this.fetchedAt = attemptedAt;
      this.lastFetchFailed = false;
    } catch (e) {
      this.lastFetchFailed = true;
      (this.options.warn ?? console.warn)(
        `aidlc-auth-verifier: JWKS fetch failed; keeping the last good key set: ${String(e)}`,
      );
    }
  }
}
