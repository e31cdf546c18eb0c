/**
 * Verify aidlc-auth access tokens in a Node service.
 *
 *     import { AidlcAuth } from "@aidlc/auth-verifier";
 *     const auth = AidlcAuth.fromEnv();
 *     const caller = await auth.verify(req.headers.authorization);   // or app.use(auth.middleware())
 */

export { AuthError, AuthUnavailableError, InvalidTokenError } from "./errors.js";
export { type FetchJwks, JwksCache, type JwksCacheOptions, parseJwks } from "./jwks.js";
export { AidlcAuth, errorResponse, type ReplyLike, type RequestLike, type ResponseLike } from "./middleware.js";
export { DEFAULTS, type Settings, settings, settingsFromEnv } from "./settings.js";
export { bearerToken, type Caller, Verifier, type VerifierOptions } from "./verifier.js";
