/** The two ways a verification fails, kept apart so an outage never becomes a 401. */

/** Base of every error this package throws while verifying a caller. */
export class AuthError extends Error {
  /** The HTTP status a route should answer with. */
  readonly status: number = 500;
}

/**
 * The caller's credential is missing, malformed, forged, expired or revoked: answer 401.
 * `code` is the RFC 6750 error for `WWW-Authenticate` (null when no credential was sent,
 * as RFC 6750 section 3.1 asks); the message is safe to show the caller.
 */
export class InvalidTokenError extends AuthError {
  override readonly status = 401;
  override readonly name = "InvalidTokenError";
  constructor(
    message: string,
    readonly code: string | null = "invalid_token",
  ) {
    super(message);
  }

  /** The `WWW-Authenticate` challenge to send with the 401. */
  wwwAuthenticate(realm = "aidlc"): string {
    let challenge = `Bearer realm="${realm}"`;
    if (this.code !== null) {
      // RFC 6750 values are quoted strings: keep quotes and backslashes out.
      const description = this.message.replace(/["\\]/g, "'");
      challenge += `, error="${this.code}", error_description="${description}"`;
    }
    return challenge;
  }
}

/**
 * aidlc-auth (its keys or its introspection) could not be asked, or contradicts our settings:
 * answer 503, never 401. The message is for the log, not for the caller.
 */
export class AuthUnavailableError extends AuthError {
  override readonly status = 503;
  override readonly name = "AuthUnavailableError";
}
