/**
 * Helpers for the tests of services that use this package: a signing key of your own and
 * tokens made with it (valid, expired, for another audience, forged, alg-confused), and an
 * AidlcAuth that trusts that key without any network.
 */

import { randomUUID } from "node:crypto";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";
import { AidlcAuth } from "./middleware.js";
import { type Settings, settings } from "./settings.js";
import type { Caller } from "./verifier.js";

export const TEST_ISSUER = "http://aidlc-auth.test";
export const TEST_AUDIENCE = "aidlc";

type Claims = Record<string, unknown>;

/** A Caller for tests that bypass verification; any field may be given. */
export function makeCaller(fields: Partial<Caller> = {}): Caller {
  return {
    userId: randomUUID(),
    sessionId: randomUUID(),
    email: "user@example.com",
    emailVerified: true,
    expiresAt: new Date(Date.now() + 15 * 60 * 1000),
    tokenId: randomUUID(),
    claims: {},
    ...fields,
  };
}

/** An Ed25519 key like aidlc-auth's, and access tokens signed with it. */
export class TokenFactory {
  private constructor(
    readonly issuer: string,
    readonly audience: string,
    readonly kid: string,
    private readonly privateKey: CryptoKey,
    private readonly publicKey: CryptoKey,
  ) {}

  static async create(options: { issuer?: string; audience?: string; kid?: string } = {}): Promise<TokenFactory> {
    const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    return new TokenFactory(
      options.issuer ?? TEST_ISSUER,
      options.audience ?? TEST_AUDIENCE,
      options.kid ?? `test-${randomUUID().slice(0, 8)}`,
      privateKey,
      publicKey,
    );
  }

  async publicJwk(): Promise<JWK> {
    return { ...(await exportJWK(this.publicKey)), kid: this.kid, alg: "EdDSA", use: "sig" };
  }

  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: [await this.publicJwk()] };
  }

  /** The claims aidlc-auth puts in a fresh token; an override of undefined drops a claim. */
  claims(overrides: Claims = {}): Claims {
    const now = Math.floor(Date.now() / 1000);
    const claims: Claims = {
      iss: this.issuer, aud: this.audience, sub: randomUUID(), sid: randomUUID(),
      iat: now, nbf: now, exp: now + 900, jti: randomUUID(),
      email: "user@example.com", email_verified: true, ...overrides,
    };
    return Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
  }

  /** `claims` signed with EdDSA (with `key`, default ours) under a header like ours. */
  async sign(claims: Claims, header: Record<string, unknown> = {}, key: CryptoKey = this.privateKey): Promise<string> {
    const protectedHeader = Object.fromEntries(
      Object.entries({ alg: "EdDSA", typ: "at+jwt", kid: this.kid, ...header }).filter(([, v]) => v !== undefined),
    );
    return new SignJWT(claims as JWTPayload).setProtectedHeader(protectedHeader as { alg: string }).sign(key);
  }

  valid(claims: Claims = {}): Promise<string> {
    return this.sign(this.claims(claims));
  }

  /** Well past any leeway a verifier allows (60 s at most). */
  expired(claims: Claims = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return this.valid({ iat: now - 1000, nbf: now - 1000, exp: now - 100, ...claims });
  }

  wrongAudience(audience = "another-unit"): Promise<string> {
    return this.valid({ aud: audience });
  }

  /** Our header and claims, signed by a key that is not ours. */
  async forged(claims: Claims = {}): Promise<string> {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    return this.sign(this.claims(claims), {}, privateKey);
  }

  /** HS256 keyed with our public key's bytes: passes a verifier that lets the header pick the algorithm. */
  async algConfused(): Promise<string> {
    const x = (await this.publicJwk()).x as string;
    return new SignJWT(this.claims() as JWTPayload)
      .setProtectedHeader({ alg: "HS256", typ: "at+jwt", kid: this.kid })
      .sign(Buffer.from(x, "base64url"));
  }

  settings(overrides: Partial<Settings> = {}): Settings {
    return settings({ url: "http://aidlc-auth.test", issuer: this.issuer, audience: this.audience, ...overrides });
  }

  /** An AidlcAuth that trusts this factory's key and never touches the network (strict mode still needs a service). */
  async auth(overrides: Partial<Settings> = {}): Promise<AidlcAuth> {
    const document = await this.jwks();
    return new AidlcAuth(this.settings(overrides), { fetchJwks: async () => document });
  }
}
