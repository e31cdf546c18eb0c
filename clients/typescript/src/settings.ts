/** Verifier settings, read once from the environment. */

/**
 * Where aidlc-auth is and what its tokens must say. `issuer` is pinned here and only
 * cross-checked against the service's RFC 8414 metadata: a spoofed metadata document must
 * not choose it. `url` is how this unit reaches the service (often an internal address).
 */
export interface Settings {
  url: string;
  issuer: string;
  audience: string;
  introspectionSecret?: string | undefined;
  /** Allowed clock skew for exp/nbf/iat; the service README allows at most 60 s. */
  leewaySeconds: number;
  /** The service's access-token lifetime: a longer-lived token was not minted by it. */
  maxTokenLifetimeSeconds: number;
  /** How long a fetched key set is used (the service sends `Cache-Control: max-age=60`). */
  jwksCacheSeconds: number;
  /** Least time between two JWKS fetches, so made-up kids cannot flood the service. */
  jwksRefetchCooldownSeconds: number;
  /** How long the last good key set still verifies while the service cannot be reached. */
  jwksMaxStaleSeconds: number;
  /** Bound on each request to aidlc-auth. */
  httpTimeoutSeconds: number;
}

export const DEFAULTS = {
  audience: "aidlc",
  leewaySeconds: 60,
  maxTokenLifetimeSeconds: 900,
  jwksCacheSeconds: 60,
  jwksRefetchCooldownSeconds: 10,
  jwksMaxStaleSeconds: 3600,
  httpTimeoutSeconds: 2,
} as const;

function seconds(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a non-negative number of seconds, not ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Settings with the defaults filled in. */
export function settings(given: Partial<Settings> & Pick<Settings, "url" | "issuer">): Settings {
  return { ...DEFAULTS, ...given };
}

/** Reads the `AIDLC_AUTH_*` variables (see clients/typescript/README.md). */
export function settingsFromEnv(env: Record<string, string | undefined> = process.env): Settings {
  const url = env.AIDLC_AUTH_URL;
  const issuer = env.AIDLC_AUTH_ISSUER;
  if (!url) throw new Error("AIDLC_AUTH_URL is not set (e.g. http://aidlc-auth.internal:8001)");
  if (!issuer) throw new Error("AIDLC_AUTH_ISSUER is not set (the service's AIDLC_JWT_ISSUER)");
  return {
    url,
    issuer,
    audience: env.AIDLC_AUTH_AUDIENCE || DEFAULTS.audience,
    introspectionSecret: env.AIDLC_AUTH_INTROSPECTION_SECRET || undefined,
    leewaySeconds: seconds(env, "AIDLC_AUTH_LEEWAY_SECONDS", DEFAULTS.leewaySeconds),
    maxTokenLifetimeSeconds: seconds(env, "AIDLC_AUTH_MAX_TOKEN_LIFETIME_SECONDS", DEFAULTS.maxTokenLifetimeSeconds),
    jwksCacheSeconds: seconds(env, "AIDLC_AUTH_JWKS_CACHE_SECONDS", DEFAULTS.jwksCacheSeconds),
    jwksRefetchCooldownSeconds: seconds(env, "AIDLC_AUTH_JWKS_REFETCH_COOLDOWN_SECONDS", DEFAULTS.jwksRefetchCooldownSeconds),
    jwksMaxStaleSeconds: seconds(env, "AIDLC_AUTH_JWKS_MAX_STALE_SECONDS", DEFAULTS.jwksMaxStaleSeconds),
    httpTimeoutSeconds: seconds(env, "AIDLC_AUTH_HTTP_TIMEOUT_SECONDS", DEFAULTS.httpTimeoutSeconds),
  };
}
