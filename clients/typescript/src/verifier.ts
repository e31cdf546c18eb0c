/**
 * Verifies aidlc-auth access tokens: locally against the cached JWKS, and on request also by
 * asking the service's introspection endpoint (to see a logout before the token expires).
 */

import { type CryptoKey, decodeProtectedHeader, errors as jose, jwtVerify, type JWTPayload } from "jose";
import { AuthUnavailableError, InvalidTokenError } from "./errors.js";
import { type FetchJwks, JwksCache } from "./jwks.js";
import { type Settings, settingsFromEnv } from "./settings.js";

/** Who is calling, as an aidlc-auth access token proves it. */
export interface Caller {
  userId: string;
  sessionId: string;
  email: string | undefined;
  emailVerified: boolean;
  expiresAt: Date;
  tokenId: string;
  claims: Readonly<JWTPayload>;
}

// RFC 9068 section 4: a resource server must check typ; both spellings are allowed.
const ACCEPTED_TYPES = new Set(["at+jwt", "application/at+jwt"]);
const REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "sub", "sid", "jti"];
// Far above any token we issue (about 600 bytes); stops huge headers from costing a parse.
const MAX_TOKEN_LENGTH = 8192;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The token of an `Authorization: Bearer <token>` header value. */
export function bearerToken(authorization: string | undefined | null): string {
  const value = (authorization ?? "").trim();
  const space = value.indexOf(" ");
  if (value === "" || space < 0 || value.slice(0, space).toLowerCase() !== "bearer") {
    throw new InvalidTokenError("a bearer token is required", null);
  }
  const token = value.slice(space + 1).trim();
  if (token.length > MAX_TOKEN_LENGTH || !JWS_COMPACT.test(token)) {
    throw new InvalidTokenError("the token is not a signed JWT");
  }
  return token;
}

export interface VerifierOptions {
  /** Replaces the JWKS fetch (tests: a key set of your own, no network). */
  fetchJwks?: FetchJwks;
  /** Where problems talking to aidlc-auth are reported (default console). */
  log?: { warn(message: string): void; error(message: string): void };
}

/**
 * Checks tokens in the order that keeps untrusted input away from the crypto: header (`alg`
 * EdDSA only, `typ` at+jwt, `kid` present; `jku`/`jwk`/`x5u` never read), then the key by
 * kid from the cached JWKS, then signature, `iss`, `aud`, `exp`, `nbf`, `iat` (with the
 * leeway), `exp - iat` and the required `sub`/`sid`/`jti`.
 */
export class Verifier {
  readonly jwks: JwksCache;
  private metadataChecked: boolean;
  private metadataProblem: string | undefined;
  private metadataAttemptedAt = -Infinity;
  protected readonly log: { warn(message: string): void; error(message: string): void };

  constructor(
    readonly settings: Settings,
    options: VerifierOptions = {},
  ) {
    this.log = options.log ?? console;
    this.jwks = new JwksCache(options.fetchJwks ?? (() => this.getJson(this.endpoint("/.well-known/jwks.json"))), {
      lifetimeSeconds: settings.jwksCacheSeconds,
      cooldownSeconds: settings.jwksRefetchCooldownSeconds,
      maxStaleSeconds: settings.jwksMaxStaleSeconds,
      warn: (message) => this.log.warn(message),
    });
    // A key set of the caller's own has no metadata to cross-check.
    this.metadataChecked = options.fetchJwks !== undefined;
  }

  static fromEnv(env?: Record<string, string | undefined>): Verifier {
    return new Verifier(settingsFromEnv(env));
  }

  /** The caller of an `Authorization` header value, checked locally. */
  async verify(authorization: string | undefined | null): Promise<Caller> {
    return this.verifyToken(bearerToken(authorization));
  }

  /**
   * Like `verify`, and also asks aidlc-auth whether the session is still live, so a logout
   * counts at once. Costs one request to the service.
   */
  async verifyStrict(authorization: string | undefined | null): Promise<Caller> {
    const token = bearerToken(authorization);
    const caller = await this.verifyToken(token);
    await this.introspect(token, caller);
    return caller;
  }

  async verifyToken(token: string): Promise<Caller> {
    const kid = this.checkHeader(token);
    if (!this.metadataChecked && performance.now() - this.metadataAttemptedAt >= this.settings.jwksRefetchCooldownSeconds * 1000) {
      await this.checkMetadata();
    }
    if (this.metadataProblem !== undefined) throw new AuthUnavailableError(this.metadataProblem);
    const key = await this.jwks.key(kid);
    return callerFrom(await this.checkClaims(token, key));
  }

  private checkHeader(token: string): string {
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new InvalidTokenError("the token is not a signed JWT");
    }
    if (header.alg !== "EdDSA") throw new InvalidTokenError("the token is not signed with EdDSA");
    if (typeof header.typ !== "string" || !ACCEPTED_TYPES.has(header.typ.toLowerCase())) {
      throw new InvalidTokenError("the token is not an access token (typ at+jwt)");
    }
    // RFC 7515 4.1.11: extensions we do not understand make the token invalid; we use none.
    if (header.crit !== undefined) throw new InvalidTokenError("the token has critical header extensions");
    if (typeof header.kid !== "string" || header.kid === "") {
      throw new InvalidTokenError("the token names no signing key (kid)");
    }
    return header.kid;
  }

  private async checkClaims(token: string, key: CryptoKey | Uint8Array): Promise<JWTPayload> {
    const s = this.settings;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, {
        algorithms: ["EdDSA"],
        issuer: s.issuer,
        audience: s.audience,
        clockTolerance: s.leewaySeconds,
        requiredClaims: REQUIRED_CLAIMS,
      }));
    } catch (e) {
      throw new InvalidTokenError(reasonFor(e));
    }
    for (const name of ["sub", "sid", "jti"]) {
      if (typeof payload[name] !== "string" || payload[name] === "") {
        throw new InvalidTokenError(`the token's ${name} claim is not a string`);
      }
    }
    const { exp, iat } = payload as { exp: number; iat: number };
    // jose checks iat only against a maxTokenAge; a token from the future is not ours.
    if (iat > Date.now() / 1000 + s.leewaySeconds) throw new InvalidTokenError("the token is not valid yet");
    if (exp - iat > s.maxTokenLifetimeSeconds) {
      throw new InvalidTokenError("the token lives longer than an access token does");
    }
    return payload;
  }

  /**
   * Cross-checks the RFC 8414 metadata with our pinned settings. An unreachable document is
   * only logged (the JWKS decides availability); a contradicting one is a deployment error
   * that makes every request a 503 until it is fixed.
   */
  private async checkMetadata(): Promise<void> {
    this.metadataAttemptedAt = performance.now();
    let metadata: Record<string, unknown>;
    try {
      metadata = (await this.getJson(this.endpoint("/.well-known/oauth-authorization-server"))) as Record<string, unknown>;
    } catch (e) {
      this.log.warn(`aidlc-auth-verifier: could not read aidlc-auth's metadata to cross-check: ${String(e)}`);
      return;
    }
    let problem: string | undefined;
    if (metadata?.issuer !== this.settings.issuer) {
      problem = `aidlc-auth announces issuer ${JSON.stringify(metadata?.issuer)}, but AIDLC_AUTH_ISSUER is ${JSON.stringify(this.settings.issuer)}`;
    } else if (!(Array.isArray(metadata.access_token_signing_alg_values_supported) && metadata.access_token_signing_alg_values_supported.includes("EdDSA"))) {
      problem = "aidlc-auth's metadata does not list EdDSA for access tokens";
    }
    if (problem !== undefined) this.log.error(`aidlc-auth-verifier: ${problem}`);
    this.metadataProblem = problem;
    this.metadataChecked = problem === undefined;
  }

  private async introspect(token: string, caller: Caller): Promise<void> {
    const secret = this.settings.introspectionSecret;
    let response: Response;
    try {
      response = await fetch(this.endpoint("/api/auth/introspect"), {
        method: "POST",
        headers: { "content-type": "application/json", ...(secret ? { authorization: `Bearer ${secret}` } : {}) },
        body: JSON.stringify({ token }),
        signal: AbortSignal.timeout(this.settings.httpTimeoutSeconds * 1000),
      });
    } catch (e) {
      throw new AuthUnavailableError(`introspection could not be reached: ${String(e)}`);
    }
    if (response.status !== 200) {
      // 401 invalid_client is our missing or wrong secret: a deployment error, not the
      // caller's; anything else is the service failing.
      await response.body?.cancel();
      this.log.error(`aidlc-auth-verifier: introspection answered ${response.status}`);
      throw new AuthUnavailableError(`introspection answered ${response.status}`);
    }
    let answer: Record<string, unknown>;
    try {
      answer = (await response.json()) as Record<string, unknown>;
    } catch {
      throw new AuthUnavailableError("introspection answered something that is not JSON");
    }
    if (answer?.active !== true) throw new InvalidTokenError("the session has ended");
    if (answer.sub !== caller.userId || answer.sid !== caller.sessionId) {
      throw new InvalidTokenError("the token does not belong to this session");
    }
  }

  private endpoint(path: string): string {
    return this.settings.url.replace(/\/+$/, "") + path;
  }

  private async getJson(url: string): Promise<unknown> {
    const response = await fetch(url, { signal: AbortSignal.timeout(this.settings.httpTimeoutSeconds * 1000) });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`GET ${url} answered ${response.status}`);
    }
    return response.json();
  }
}

function reasonFor(e: unknown): string {
  if (e instanceof jose.JWTExpired) return "the token has expired";
  if (e instanceof jose.JWTClaimValidationFailed) {
    switch (e.claim) {
      case "aud": return "the token is for another audience";
      case "iss": return "the token is from another issuer";
      case "nbf": case "iat": return "the token is not valid yet";
      default: return e.reason === "missing" ? `the token has no ${e.claim} claim` : `the token's ${e.claim} claim is invalid`;
    }
  }
  if (e instanceof jose.JWSSignatureVerificationFailed) return "the token's signature is invalid";
  return "the token is invalid";
}

function callerFrom(claims: JWTPayload): Caller {
  return {
    userId: claims.sub as string,
    sessionId: claims.sid as string,
    email: typeof claims.email === "string" ? claims.email : undefined,
    emailVerified: claims.email_verified === true,
    expiresAt: new Date((claims.exp as number) * 1000),
    tokenId: claims.jti as string,
    claims,
  };
}
