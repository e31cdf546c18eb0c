/** The verifier's rules and the test helpers, with keys made here (no service needed). */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AidlcAuth, AuthUnavailableError, InvalidTokenError, JwksCache, type ReplyLike, type RequestLike, settingsFromEnv } from "../src/index.js";
import { TokenFactory } from "../src/testing.js";

const bearer = (token: string) => `Bearer ${token}`;
const now = () => Math.floor(Date.now() / 1000);
const quiet = { warn() {} };
const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

function rejectsWith(reason: RegExp, kind: typeof InvalidTokenError | typeof AuthUnavailableError = InvalidTokenError) {
  return (error: unknown) => error instanceof kind && reason.test((error as Error).message);
}

describe("tokens breaking a rule are refused with the reason", async () => {
  const f = await TokenFactory.create();
  const auth = await f.auth();
  const cases: Array<[string, () => Promise<string>, RegExp]> = [
    ["expired", () => f.expired(), /expired/],
    ["another audience", () => f.wrongAudience(), /audience/],
    ["forged", () => f.forged(), /signature/],
    ["HS256 keyed with the public key", () => f.algConfused(), /EdDSA/],
    ["another issuer", () => f.valid({ iss: "https://elsewhere.example" }), /issuer/],
    ["no sid", () => f.valid({ sid: undefined }), /sid/],
    ["no jti", () => f.valid({ jti: undefined }), /jti/],
    ["no sub", () => f.valid({ sub: undefined }), /sub/],
    ["a numeric sub", () => f.valid({ sub: 42 }), /sub/],
    ["nbf in the future", () => f.valid({ nbf: now() + 600 }), /not valid yet/],
    ["iat in the future", () => f.valid({ iat: now() + 600 }), /not valid yet/],
    ["a lifetime over 900 s", () => f.valid({ exp: now() + 3600 }), /longer than an access token/],
    ["typ JWT", () => f.sign(f.claims(), { typ: "JWT" }), /at\+jwt/],
    ["no kid", () => f.sign(f.claims(), { kid: undefined }), /kid/],
    // jose will not sign with an unknown crit; the header check comes before the signature anyway.
    ["a crit header", async () => `${b64json({ alg: "EdDSA", typ: "at+jwt", kid: f.kid, crit: ["exp"], exp: 1 })}.${b64json(f.claims())}.AAAA`, /critical/],
    ["an unpublished kid", () => f.sign(f.claims(), { kid: "some-other-kid" }), /not published/],
  ];
  for (const [name, make, reason] of cases) {
    test(name, async () => {
      await assert.rejects(auth.verify(bearer(await make())), rejectsWith(reason));
    });
  }
});

test("the factory's valid token passes its own verifier", async () => {
  const f = await TokenFactory.create();
  const caller = await (await f.auth()).verify(bearer(await f.valid({ sub: "u-1", email: "a@b.example" })));
  assert.deepEqual([caller.userId, caller.email, caller.emailVerified], ["u-1", "a@b.example", true]);
});

test("keys named in the token's own header are never used", async () => {
  const ours = await TokenFactory.create();
  const attacker = await TokenFactory.create({ issuer: ours.issuer, kid: ours.kid });
  const token = await attacker.sign(attacker.claims(), {
    jwk: await attacker.publicJwk(), jku: "http://attacker.example/jwks.json", x5u: "http://attacker.example/x",
  });
  await assert.rejects((await ours.auth()).verify(bearer(token)), rejectsWith(/signature/));
});

test("clock skew within the leeway is allowed", async () => {
  const f = await TokenFactory.create();
  const t = now();
  const justExpired = await f.valid({ iat: t - 920, nbf: t - 920, exp: t - 20 });
  await (await f.auth({ leewaySeconds: 30 })).verify(bearer(justExpired));
  await assert.rejects((await f.auth({ leewaySeconds: 10 })).verify(bearer(justExpired)), rejectsWith(/expired/));
});

test("a missing or malformed authorization header is refused", async () => {
  const auth = await (await TokenFactory.create()).auth();
  for (const header of [undefined, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b", "Bearer a b.c.d"]) {
    await assert.rejects(auth.verify(header), InvalidTokenError, String(header));
  }
  const missing = await auth.verify(undefined).catch((e: InvalidTokenError) => e);
  assert.equal((missing as InvalidTokenError).wwwAuthenticate(), 'Bearer realm="aidlc"');
});

class FlakyJwks {
  fetches = 0;
  failing = false;
  constructor(public document: unknown) {}
  fetch = async () => {
    this.fetches += 1;
    if (this.failing) throw new Error("connection refused");
    return this.document;
  };
}

test("the cache refetches an unknown kid at most once per cooldown", async () => {
  const f = await TokenFactory.create();
  const jwks = new FlakyJwks(await f.jwks());
  let clock = 1_000_000;
  const cache = new JwksCache(jwks.fetch, { lifetimeSeconds: 60, cooldownSeconds: 10, maxStaleSeconds: 3600, now: () => clock, ...quiet });
  await cache.key(f.kid);
  for (let i = 0; i < 5; i++) await assert.rejects(cache.key("made-up"), InvalidTokenError);
  assert.equal(jwks.fetches, 1, "a flood of unknown kids must not become a flood of fetches");
  clock += 10_000;
  await assert.rejects(cache.key("made-up"), InvalidTokenError);
  assert.equal(jwks.fetches, 2);
});

test("concurrent misses share one fetch", async () => {
  const f = await TokenFactory.create();
  const jwks = new FlakyJwks(await f.jwks());
  const cache = new JwksCache(jwks.fetch, { lifetimeSeconds: 60, cooldownSeconds: 10, maxStaleSeconds: 3600, ...quiet });
  await Promise.all(Array.from({ length: 20 }, () => cache.key(f.kid)));
  assert.equal(jwks.fetches, 1);
});

test("the cache keeps the last good set while fetches fail, until max stale", async () => {
  const f = await TokenFactory.create();
  const jwks = new FlakyJwks(await f.jwks());
  let clock = 1_000_000;
  const cache = new JwksCache(jwks.fetch, { lifetimeSeconds: 60, cooldownSeconds: 10, maxStaleSeconds: 600, now: () => clock, ...quiet });
  await cache.key(f.kid);
  jwks.failing = true;
  clock += 61_000;
  await cache.key(f.kid);
  await assert.rejects(cache.key("published-during-the-outage"), AuthUnavailableError);
  clock += 600_000;
  await assert.rejects(cache.key(f.kid), rejectsWith(/too long/, AuthUnavailableError));
  jwks.failing = false;
  clock += 10_000;
  await cache.key(f.kid);
});

test("keys that are not Ed25519 signing keys are skipped", async () => {
  const f = await TokenFactory.create();
  const jwk = await f.publicJwk();
  const jwks = new FlakyJwks({ keys: [
    { kty: "RSA", kid: "rsa", n: "AQAB", e: "AQAB" }, { ...jwk, kid: "enc", use: "enc" }, { ...jwk, kid: "hs", alg: "HS256" }, jwk,
  ] });
  const cache = new JwksCache(jwks.fetch, { lifetimeSeconds: 60, cooldownSeconds: 10, maxStaleSeconds: 3600 });
  await cache.key(f.kid);
  assert.deepEqual(cache.kids, [f.kid]);
});

test("the fastify hook sets the caller or answers 401 with a challenge", async () => {
  const f = await TokenFactory.create();
  const hook = (await f.auth()).fastifyPreHandler();
  const sent: { status?: number; headers: Record<string, string>; body?: unknown } = { headers: {} };
  const reply: ReplyLike = {
    code(status) { sent.status = status; return reply; },
    header(name, value) { sent.headers[name] = value; return reply; },
    send(body) { sent.body = body; },
  };
  const ok: RequestLike = { headers: { authorization: bearer(await f.valid({ sub: "u-5" })) } };
  await hook(ok, reply);
  assert.equal(ok.caller?.userId, "u-5");
  assert.equal(sent.status, undefined);

  await hook({ headers: { authorization: bearer(await f.expired()) } }, reply);
  assert.equal(sent.status, 401);
  assert.match(sent.headers["www-authenticate"]!, /error="invalid_token", error_description="the token has expired"/);
});

test("settings come from the AIDLC_AUTH_ variables", () => {
  const s = settingsFromEnv({ AIDLC_AUTH_URL: "http://a:8001", AIDLC_AUTH_ISSUER: "https://auth.example", AIDLC_AUTH_JWKS_CACHE_SECONDS: "5" });
  assert.equal(s.audience, "aidlc");
  assert.equal(s.jwksCacheSeconds, 5);
  assert.equal(s.leewaySeconds, 60);
  assert.throws(() => settingsFromEnv({ AIDLC_AUTH_URL: "http://a:8001" }), /AIDLC_AUTH_ISSUER/);
  assert.throws(() => AidlcAuth.fromEnv({ AIDLC_AUTH_URL: "http://a", AIDLC_AUTH_ISSUER: "x", AIDLC_AUTH_LEEWAY_SECONDS: "soon" }), /LEEWAY/);
});
