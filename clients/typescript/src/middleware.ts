/** Express/Connect-style and Fastify-style glue over the framework-neutral Verifier. */

import { AuthError, AuthUnavailableError, InvalidTokenError } from "./errors.js";
import { settingsFromEnv } from "./settings.js";
import { type Caller, Verifier } from "./verifier.js";

/** What the middleware needs of a request (Express, Connect and plain node:http all fit). */
export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  caller?: Caller;
}

/** What the middleware needs of a response (node:http's ServerResponse, so Express's too). */
export interface ResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

/** What the Fastify hook needs of a reply. */
export interface ReplyLike {
  code(status: number): ReplyLike;
  header(name: string, value: string): ReplyLike;
  send(body?: unknown): unknown;
}

// How soon a client may retry after a 503: about one JWKS re-fetch cooldown.
const RETRY_AFTER_SECONDS = "5";

/** The status, headers and JSON body to answer for a failed verification. */
export function errorResponse(error: AuthError): { status: number; headers: Record<string, string>; body: unknown } {
  if (error instanceof InvalidTokenError) {
    return {
      status: 401,
      headers: { "www-authenticate": error.wwwAuthenticate() },
      body: { error: { code: "unauthorized", message: error.message } },
    };
  }
  // The cause is for our log; the caller learns only that we could not check.
  return {
    status: 503,
    headers: { "retry-after": RETRY_AFTER_SECONDS },
    body: { error: { code: "auth_unavailable", message: "the authentication service cannot be reached" } },
  };
}

function authorizationOf(request: RequestLike): string | undefined {
  const value = request.headers.authorization;
  // Two Authorization headers are ambiguous: refuse rather than pick one.
  return Array.isArray(value) ? (value.length === 1 ? value[0] : "") : value;
}

/**
 * A Verifier with middleware: `app.use(auth.middleware())` sets `req.caller`, or answers 401
 * (with `WWW-Authenticate`) or 503 itself.
 */
export class AidlcAuth extends Verifier {
  static override fromEnv(env?: Record<string, string | undefined>): AidlcAuth {
    return new AidlcAuth(settingsFromEnv(env));
  }

  /** `(req, res, next)` middleware; `strict` also asks introspection (sees a logout at once). */
  middleware(options: { strict?: boolean } = {}) {
    return (request: RequestLike, response: ResponseLike, next: (error?: unknown) => void): void => {
      const header = authorizationOf(request);
      const verified = options.strict ? this.verifyStrict(header) : this.verify(header);
      verified.then(
        (caller) => {
          request.caller = caller;
          next();
        },
        (error: unknown) => {
          if (!(error instanceof AuthError)) return next(error);
          if (error instanceof AuthUnavailableError) this.log.error(`aidlc-auth-verifier: ${error.message}`);
          const answer = errorResponse(error);
          response.statusCode = answer.status;
          for (const [name, value] of Object.entries(answer.headers)) response.setHeader(name, value);
          response.setHeader("content-type", "application/json");
          response.end(JSON.stringify(answer.body));
        },
      );
    };
  }

  /** A Fastify `preHandler` hook: `fastify.addHook("preHandler", auth.fastifyPreHandler())`. */
  fastifyPreHandler(options: { strict?: boolean } = {}) {
    return async (request: RequestLike, reply: ReplyLike): Promise<void> => {
      const header = authorizationOf(request);
      try {
        request.caller = options.strict ? await this.verifyStrict(header) : await this.verify(header);
      } catch (error) {
        if (!(error instanceof AuthError)) throw error;
        if (error instanceof AuthUnavailableError) this.log.error(`aidlc-auth-verifier: ${error.message}`);
        const answer = errorResponse(error);
        let r = reply.code(answer.status);
        for (const [name, value] of Object.entries(answer.headers)) r = r.header(name, value);
        r.send(answer.body);
      }
    };
  }
}
