//! Access tokens: JWTs signed with Ed25519, typed `at+jwt` (RFC 9068), checked against a caller-supplied `now`.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::{ALG_EDDSA, Jwk, KeyError, SigningKey};
use crate::domain::{SessionId, UserId};

/// The JOSE `typ` of an access token (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// How long an access token lives unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// The most clock skew a verifier may tolerate.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Tokens longer than this are refused before any decoding; ours are well under 1 KiB.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token could not be issued or was not accepted.
///
/// The messages never contain token or key material; they are for logs, not for clients.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS, bad base64 or JSON, a claim missing or of the wrong type, or a `crit` header.
    #[error("token is malformed")]
    Malformed,
    /// `alg` is anything but `EdDSA` (including `none` and HMAC).
    #[error("token algorithm is not accepted")]
    Algorithm,
    /// `typ` is missing or not `at+jwt`.
    #[error("token type is not at+jwt")]
    Type,
    /// `kid` is missing or names none of the verifier's keys.
    #[error("token key id is missing or unknown")]
    UnknownKey,
    /// The signature does not verify under the key `kid` names.
    #[error("token signature is invalid")]
    Signature,
    /// `now` is past `exp` plus the leeway.
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is after `now` plus the leeway.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// `aud` is not the expected audience.
    #[error("token audience is not accepted")]
    Audience,
    /// A key given to the verifier is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The issuer or verifier was set up with values it cannot work with.
    #[error("invalid token configuration: {0}")]
    Config(&'static str),
    /// jsonwebtoken failed to sign.
    #[error("could not sign token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience: the one API this token is for.
    pub aud: String,
    /// Subject: the user id (a UUID in the token).
    pub sub: UserId,
    /// The session the token was issued under (a UUID in the token).
    pub sid: SessionId,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Not before, Unix seconds; equal to `iat`.
    pub nbf: i64,
    /// Unique token id: a random UUID v4.
    pub jti: String,
    /// The user's e-mail address.
    pub email: String,
    /// Whether that address was verified.
    pub email_verified: bool,
}

/// Signs access tokens with one key.
#[derive(Debug)]
pub struct AccessTokenIssuer {
    /// The current signing key; its `kid` goes in every header.
    pub key: SigningKey,
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim.
    pub audience: String,
    /// Lifetime of each token; whole seconds count.
    pub ttl: Duration,
}

impl AccessTokenIssuer {
    /// An issuer with the default lifetime ([`DEFAULT_TTL`]).
    pub fn new(key: SigningKey, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl: DEFAULT_TTL,
        }
    }

    /// A signed token for `sub` in session `sid`, valid from `now` for `ttl`, and the claims it carries.
    pub fn issue(
        &self,
        sub: UserId,
        sid: SessionId,
        email: &str,
        email_verified: bool,
        now: OffsetDateTime,
    ) -> Result<(String, AccessClaims), TokenError> {
        let iat = now.unix_timestamp();
        let ttl =
            i64::try_from(self.ttl.as_secs()).map_err(|_| TokenError::Config("ttl too large"))?;
        let exp = iat
            .checked_add(ttl)
            .ok_or(TokenError::Config("ttl too large"))?;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub,
            sid,
            iat,
            exp,
            nbf: iat,
            jti: Uuid::new_v4().to_string(),
            email: email.to_owned(),
            email_verified,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .map_err(TokenError::Signing)?;
        Ok((token, claims))
    }
}

/// Checks access tokens against a fixed set of our own public keys.
#[derive(Debug)]
pub struct AccessTokenVerifier {
    keys: HashMap<String, DecodingKey>,
    issuer: String,
    audience: String,
    /// Allowed lateness of `nbf`/`iat` (the issuer's clock running ahead).
    leeway: i64,
    /// Allowed lateness past `exp`: `leeway` for other services' verifiers, none for our own.
    expiry_leeway: i64,
    validation: Validation,
}

impl AccessTokenVerifier {
    /// A verifier trusting exactly `keys` (current and previous), for tokens from `issuer` to `audience`.
    ///
    /// Every key must be an Ed25519 signing JWK with a distinct `kid`; `leeway` may be at most [`MAX_LEEWAY`].
    /// Use [`SigningKey::public_jwk`] to get a JWK from a private key.
    pub fn new(
        keys: &[Jwk],
        issuer: impl Into<String>,
        audience: impl Into<String>,
        leeway: Duration,
    ) -> Result<Self, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::Config("no verification keys"));
        }
        if leeway > MAX_LEEWAY {
            return Err(TokenError::Config("leeway exceeds 60 s"));
        }
        let mut by_kid = HashMap::with_capacity(keys.len());
        for jwk in keys {
            let raw = jwk.ed25519_public_key()?;
            let key = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(raw))
                .map_err(|_| KeyError::InvalidJwk("x rejected by jsonwebtoken"))?;
            if by_kid.insert(jwk.kid.clone(), key).is_some() {
                return Err(TokenError::Config("duplicate kid"));
            }
        }
        let (issuer, audience) = (issuer.into(), audience.into());

        // Pinned to EdDSA: jsonwebtoken then refuses any other header alg before touching the key.
        let mut validation = Validation::new(Algorithm::EdDSA);
        // jsonwebtoken compares exp/nbf with the system clock; time is our parameter, so they are checked below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.validate_aud = true;

        Ok(Self {
            keys: by_kid,
            issuer,
            audience,
            leeway: leeway.as_secs().cast_signed(),
            expiry_leeway: leeway.as_secs().cast_signed(),
            validation,
        })
    }

    /// The same verifier with no leeway past `exp`: a token is dead the second it expires. For
    /// the issuer's own checks, whose clock is the one that set `exp` (RFC 7662 §2.2: an
    /// expired token is not active); the leeway still covers `nbf`/`iat` from a sibling
    /// instance whose clock runs a little ahead.
    pub fn with_strict_expiry(mut self) -> Self {
        self.expiry_leeway = 0;
        self
    }

    /// The claims of `token` if it is a valid access token at `now`.
    ///
    /// The key is chosen only by the header's `kid` among the verifier's keys; `jku`, `jwk`, `x5u` and `x5c`
    /// are never looked at.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = peek_header(token)?;
        // Exact match: `none`, HS*, RS*, ES* and unknown names all stop here.
        if header.alg != ALG_EDDSA {
            return Err(TokenError::Algorithm);
        }
        // RFC 9068 §4: "at+jwt" or "application/at+jwt"; media types compare case-insensitively.
        let typ = header.typ.as_deref().ok_or(TokenError::Type)?;
        let typ = strip_prefix_ignore_case(typ, "application/").unwrap_or(typ);
        if !typ.eq_ignore_ascii_case(TOKEN_TYPE) {
            return Err(TokenError::Type);
        }
        // We implement no JWS extensions, so any critical one must be refused (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;

        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(map_jwt_error)?
            .claims;

        // Repeated here so the contract does not rest on jsonwebtoken's aud/iss rules alone.
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::Audience);
        }
        let now = now.unix_timestamp();
        // Valid while now < exp (RFC 7519 §4.1.4), stretched by the leeway; saturating so huge values cannot wrap.
        if now >= claims.exp.saturating_add(self.expiry_leeway) {
            return Err(TokenError::Expired);
        }
        let latest_start = now.saturating_add(self.leeway);
        if claims.nbf > latest_start || claims.iat > latest_start {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// The header members the verifier decides on, read before any key is chosen.
#[derive(Deserialize)]
struct PeekedHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

fn peek_header(token: &str) -> Result<PeekedHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::EncodingKey;
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;

    const ISS: &str = "https://auth.example.test";
    const AUD: &str = "https://api.example.test";
    const T0: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);
    const USER: UserId = UserId(Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef));
    const SESSION: SessionId =
        SessionId(Uuid::from_u128(0xfedc_ba98_7654_4321_8fed_cba9_8765_4321));

    fn issuer(key: SigningKey) -> AccessTokenIssuer {
        AccessTokenIssuer::new(key, ISS, AUD)
    }

    fn verifier(keys: &[&SigningKey]) -> AccessTokenVerifier {
        let jwks: Vec<Jwk> = keys.iter().map(|k| k.public_jwk()).collect();
        AccessTokenVerifier::new(&jwks, ISS, AUD, MAX_LEEWAY).unwrap()
    }

    fn issue(iss: &AccessTokenIssuer) -> (String, AccessClaims) {
        iss.issue(USER, SESSION, "a@example.test", true, T0)
            .unwrap()
    }

    fn b64(v: &impl Serialize) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// A compact JWS with any header, signed (or not) by `sign` over `header.payload`.
    fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> String) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = sign(message.as_bytes());
        format!("{message}.{signature}")
    }

    fn eddsa_signer(key: &SigningKey) -> impl Fn(&[u8]) -> String + '_ {
        |m| jsonwebtoken::crypto::sign(m, key.encoding_key(), Algorithm::EdDSA).unwrap()
    }

    fn valid_claims(key: &SigningKey) -> Value {
        serde_json::to_value(issue(&issuer_ref(key)).1).unwrap()
    }

    /// An issuer borrowing `key`'s bytes, for tests that keep using the key afterwards.
    fn issuer_ref(key: &SigningKey) -> AccessTokenIssuer {
        issuer(SigningKey::from_stored_bytes(key.kid(), &key.to_stored_bytes()).unwrap())
    }

    #[test]
    fn fresh_token_verifies_with_the_claims_and_header_it_was_issued_with() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let iss = issuer(key);
        let (token, claims) = issue(&iss);

        assert_eq!(v.verify(&token, T0).unwrap(), claims);
        assert_eq!(claims.iss, ISS);
        assert_eq!(claims.aud, AUD);
        assert_eq!(claims.sub, USER);
        assert_eq!(claims.sid, SESSION);
        assert_eq!(claims.email, "a@example.test");
        assert!(claims.email_verified);
        assert_eq!(claims.iat, T0.unix_timestamp());
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.exp, claims.iat + 15 * 60);
        assert_eq!(Uuid::parse_str(&claims.jti).unwrap().get_version_num(), 4);

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(iss.key.kid()));

        // A second token differs in jti.
        assert_ne!(issue(&iss).1.jti, claims.jti);
    }

    #[test]
    fn configured_ttl_is_used() {
        let mut iss = issuer(SigningKey::generate().unwrap());
        iss.ttl = Duration::from_secs(300);
        assert_eq!(issue(&iss).1.exp, T0.unix_timestamp() + 300);
        iss.ttl = Duration::MAX;
        assert!(matches!(
            iss.issue(USER, SESSION, "e", false, T0),
            Err(TokenError::Config(_))
        ));
    }

    #[test]
    fn tampered_signature_or_payload_is_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let (token, _) = issue(&issuer(key));
        let (message, signature) = token.rsplit_once('.').unwrap();

        // First signature character: all six bits are signature bits, unlike the last one.
        let mut sig = signature.to_owned().into_bytes();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let bad_sig = format!("{message}.{}", String::from_utf8(sig).unwrap());
        assert!(matches!(v.verify(&bad_sig, T0), Err(TokenError::Signature)));

        let (header, payload) = message.split_once('.').unwrap();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sub"] = json!("admin");
        let bad_payload = format!("{header}.{}.{signature}", b64(&claims));
        assert!(matches!(
            v.verify(&bad_payload, T0),
            Err(TokenError::Signature)
        ));

        assert!(matches!(
            v.verify(&format!("{message}."), T0),
            Err(TokenError::Signature | TokenError::Malformed)
        ));
        assert!(matches!(
            v.verify("not.a.jwt.at.all", T0),
            Err(TokenError::Malformed)
        ));
        assert!(matches!(v.verify("", T0), Err(TokenError::Malformed)));
        assert!(matches!(
            v.verify(&"a".repeat(MAX_TOKEN_LEN + 1), T0),
            Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn alg_none_is_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let claims = valid_claims(&key);
        for alg in ["none", "None", "NONE"] {
            let header = json!({"alg": alg, "typ": "at+jwt", "kid": key.kid()});
            let unsigned = forge(&header, &claims, |_| String::new());
            assert!(
                matches!(v.verify(&unsigned, T0), Err(TokenError::Algorithm)),
                "{alg}"
            );
            // Even carrying a genuine EdDSA signature over the same bytes.
            let signed = forge(&header, &claims, eddsa_signer(&key));
            assert!(
                matches!(v.verify(&signed, T0), Err(TokenError::Algorithm)),
                "{alg}"
            );
        }
    }

    #[test]
    fn hs256_keyed_with_our_public_key_is_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let claims = valid_claims(&key);
        let jwk = key.public_jwk();
        let raw = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap();
        let jwk_json = serde_json::to_string(&jwk).unwrap();
        let jwks_json = serde_json::to_string(&json!({"keys": [&jwk]})).unwrap();
        for secret in [
            raw.as_slice(),
            jwk.x.as_bytes(),
            jwk_json.as_bytes(),
            jwks_json.as_bytes(),
        ] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut header = Header::new(alg);
                header.typ = Some(TOKEN_TYPE.to_owned());
                header.kid = Some(key.kid().to_owned());
                let token =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
                        .unwrap();
                assert!(
                    matches!(v.verify(&token, T0), Err(TokenError::Algorithm)),
                    "{alg:?}"
                );
            }
        }
    }

    #[test]
    fn wrong_audience_or_issuer_is_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let mut iss = issuer(key);
        iss.audience = "https://other-api.example.test".into();
        assert!(matches!(
            v.verify(&issue(&iss).0, T0),
            Err(TokenError::Audience)
        ));
        iss.audience = AUD.into();
        iss.issuer = "https://evil.example.test".into();
        assert!(matches!(
            v.verify(&issue(&iss).0, T0),
            Err(TokenError::Issuer)
        ));
        iss.issuer = ISS.into();
        assert!(v.verify(&issue(&iss).0, T0).is_ok());

        // An audience array that includes ours is still not our token shape.
        let mut claims = serde_json::to_value(issue(&iss).1).unwrap();
        claims["aud"] = json!([AUD, "https://other-api.example.test"]);
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": iss.key.kid()});
        let token = forge(&header, &claims, eddsa_signer(&iss.key));
        assert!(v.verify(&token, T0).is_err());
    }

    #[test]
    fn expiry_is_enforced_against_now_with_at_most_60s_leeway() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let (token, claims) = issue(&issuer(key));
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap();

        assert!(v.verify(&token, exp - time::Duration::seconds(1)).is_ok());
        assert!(v.verify(&token, exp).is_ok(), "within leeway");
        assert!(
            v.verify(&token, exp + time::Duration::seconds(59)).is_ok(),
            "within leeway"
        );
        assert!(matches!(
            v.verify(&token, exp + time::Duration::seconds(60)),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            v.verify(&token, exp + time::Duration::seconds(61)),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            v.verify(&token, exp + time::Duration::days(365)),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn strict_expiry_ends_a_token_at_exp_but_keeps_the_start_leeway() {
        let key = SigningKey::generate().unwrap();
        let jwks = [key.public_jwk()];
        let own = AccessTokenVerifier::new(&jwks, ISS, AUD, Duration::from_secs(5))
            .unwrap()
            .with_strict_expiry();
        let (token, claims) = issue(&issuer(key));
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap();
        assert!(own.verify(&token, exp - time::Duration::seconds(1)).is_ok());
        assert!(matches!(own.verify(&token, exp), Err(TokenError::Expired)));
        assert!(own.verify(&token, T0 - time::Duration::seconds(4)).is_ok());
        assert!(matches!(
            own.verify(&token, T0 - time::Duration::seconds(6)),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn zero_leeway_means_none_and_more_than_60s_is_refused() {
        let key = SigningKey::generate().unwrap();
        let jwks = [key.public_jwk()];
        let strict = AccessTokenVerifier::new(&jwks, ISS, AUD, Duration::ZERO).unwrap();
        let (token, claims) = issue(&issuer(key));
        let exp = OffsetDateTime::from_unix_timestamp(claims.exp).unwrap();
        assert!(
            strict
                .verify(&token, exp - time::Duration::seconds(1))
                .is_ok()
        );
        assert!(matches!(
            strict.verify(&token, exp),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            strict.verify(&token, T0 - time::Duration::seconds(1)),
            Err(TokenError::NotYetValid)
        ));

        let too_lax = AccessTokenVerifier::new(&jwks, ISS, AUD, Duration::from_secs(61));
        assert!(matches!(too_lax, Err(TokenError::Config(_))));
    }

    #[test]
    fn token_from_the_future_is_rejected_beyond_leeway() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let (token, _) = issue(&issuer(key));
        assert!(v.verify(&token, T0 - time::Duration::seconds(59)).is_ok());
        assert!(matches!(
            v.verify(&token, T0 - time::Duration::seconds(61)),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_each_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid()});
        for claim in ["nbf", "iat"] {
            let mut claims = valid_claims(&key);
            claims[claim] = json!(T0.unix_timestamp() + 120);
            let token = forge(&header, &claims, eddsa_signer(&key));
            assert!(
                matches!(v.verify(&token, T0), Err(TokenError::NotYetValid)),
                "{claim}"
            );
        }
    }

    #[test]
    fn missing_or_mistyped_claims_are_rejected() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid()});
        for claim in [
            "exp",
            "nbf",
            "iat",
            "iss",
            "aud",
            "sub",
            "sid",
            "jti",
            "email",
            "email_verified",
        ] {
            let mut claims = valid_claims(&key);
            claims.as_object_mut().unwrap().remove(claim);
            let token = forge(&header, &claims, eddsa_signer(&key));
            assert!(
                matches!(v.verify(&token, T0), Err(TokenError::Malformed)),
                "missing {claim}"
            );
        }
        let mut claims = valid_claims(&key);
        claims["exp"] = json!("never");
        let token = forge(&header, &claims, eddsa_signer(&key));
        assert!(matches!(v.verify(&token, T0), Err(TokenError::Malformed)));
        let mut claims = valid_claims(&key);
        claims["exp"] = json!(-1);
        let token = forge(&header, &claims, eddsa_signer(&key));
        assert!(
            matches!(v.verify(&token, T0), Err(TokenError::Malformed)),
            "negative exp"
        );
        // Extreme values from a (hypothetically) signed token must not overflow the leeway arithmetic.
        let mut claims = valid_claims(&key);
        claims["exp"] = json!(i64::MAX);
        claims["nbf"] = json!(i64::MIN);
        let token = forge(&header, &claims, eddsa_signer(&key));
        assert!(
            matches!(v.verify(&token, T0), Err(TokenError::Malformed)),
            "nbf below zero is not a u64 for jsonwebtoken"
        );
        claims["nbf"] = json!(0);
        let token = forge(&header, &claims, eddsa_signer(&key));
        assert!(v.verify(&token, datetime!(9999-12-31 23:59:59 UTC)).is_ok());
    }

    #[test]
    fn unknown_or_missing_kid_is_rejected() {
        let trusted = SigningKey::generate().unwrap();
        let stranger = SigningKey::generate().unwrap();
        let v = verifier(&[&trusted]);
        let (token, _) = issue(&issuer(stranger));
        assert!(matches!(v.verify(&token, T0), Err(TokenError::UnknownKey)));

        let header = json!({"alg": "EdDSA", "typ": "at+jwt"});
        let token = forge(&header, &valid_claims(&trusted), eddsa_signer(&trusted));
        assert!(matches!(v.verify(&token, T0), Err(TokenError::UnknownKey)));
    }

    #[test]
    fn key_carrying_headers_are_ignored_so_an_attacker_key_is_not_trusted() {
        let ours = SigningKey::generate().unwrap();
        let attacker = SigningKey::generate().unwrap();
        let v = verifier(&[&ours]);
        let claims = valid_claims(&ours);
        let attacker_jwk = attacker.public_jwk();
        // Never fetched: the verifier must not even look at it. Loopback so no real host is named.
        let attacker_url = "http://127.0.0.1:9/attacker-jwks.json";

        // Pointing at our kid: the signature is checked with our key and fails.
        for extra in [
            json!({"jwk": attacker_jwk}),
            json!({"jku": attacker_url}),
            json!({"x5u": attacker_url}),
            json!({"jwk": attacker_jwk, "jku": attacker_url, "x5u": attacker_url}),
        ] {
            let mut header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ours.kid()});
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let token = forge(&header, &claims, eddsa_signer(&attacker));
            assert!(
                matches!(v.verify(&token, T0), Err(TokenError::Signature)),
                "{header}"
            );

            // With the attacker's own kid: not in our set.
            header["kid"] = json!(attacker.kid());
            let token = forge(&header, &claims, eddsa_signer(&attacker));
            assert!(
                matches!(v.verify(&token, T0), Err(TokenError::UnknownKey)),
                "{header}"
            );
        }

        // The same headers on a token really signed by us change nothing: they are ignored, not trusted.
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ours.kid(), "jwk": attacker_jwk, "jku": attacker_url});
        let token = forge(&header, &claims, eddsa_signer(&ours));
        assert!(v.verify(&token, T0).is_ok());
    }

    #[test]
    fn typ_must_be_at_jwt() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let claims = valid_claims(&key);
        for typ in [
            json!("JWT"),
            json!("jwt"),
            json!("at+jwt2"),
            json!("application/jwt"),
            json!(""),
            json!(1),
        ] {
            let header = json!({"alg": "EdDSA", "typ": typ, "kid": key.kid()});
            let token = forge(&header, &claims, eddsa_signer(&key));
            assert!(
                matches!(
                    v.verify(&token, T0),
                    Err(TokenError::Type | TokenError::Malformed)
                ),
                "{typ}"
            );
        }
        let header = json!({"alg": "EdDSA", "kid": key.kid()});
        let token = forge(&header, &claims, eddsa_signer(&key));
        assert!(
            matches!(v.verify(&token, T0), Err(TokenError::Type)),
            "missing typ"
        );

        // RFC 9068 §4 allows the full media type; media types are case-insensitive.
        for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
            let header = json!({"alg": "EdDSA", "typ": typ, "kid": key.kid()});
            let token = forge(&header, &claims, eddsa_signer(&key));
            assert!(v.verify(&token, T0).is_ok(), "{typ}");
        }
    }

    #[test]
    fn critical_header_extensions_are_refused() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let header =
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid(), "crit": ["exp"], "exp": 1});
        let token = forge(&header, &valid_claims(&key), eddsa_signer(&key));
        assert!(matches!(v.verify(&token, T0), Err(TokenError::Malformed)));
    }

    #[test]
    fn token_from_the_previous_key_verifies_while_that_key_is_in_the_set() {
        let previous = SigningKey::generate().unwrap();
        let current = SigningKey::generate().unwrap();
        let both = verifier(&[&current, &previous]);
        let (old_token, _) = issue(&issuer_ref(&previous));
        let (new_token, _) = issue(&issuer_ref(&current));
        assert!(both.verify(&old_token, T0).is_ok());
        assert!(both.verify(&new_token, T0).is_ok());

        let current_only = verifier(&[&current]);
        assert!(matches!(
            current_only.verify(&old_token, T0),
            Err(TokenError::UnknownKey)
        ));
    }

    #[test]
    fn key_reloaded_from_storage_signs_tokens_the_original_jwk_verifies() {
        let key = SigningKey::generate().unwrap();
        let v = verifier(&[&key]);
        let reloaded = SigningKey::from_stored_bytes(key.kid(), &key.to_stored_bytes()).unwrap();
        assert!(v.verify(&issue(&issuer(reloaded)).0, T0).is_ok());
    }

    #[test]
    fn verifier_refuses_bad_key_sets() {
        let a = SigningKey::generate().unwrap();
        assert!(matches!(
            AccessTokenVerifier::new(&[], ISS, AUD, MAX_LEEWAY),
            Err(TokenError::Config(_))
        ));
        let dup = [a.public_jwk(), a.public_jwk()];
        assert!(matches!(
            AccessTokenVerifier::new(&dup, ISS, AUD, MAX_LEEWAY),
            Err(TokenError::Config(_))
        ));
        let mut short = a.public_jwk();
        short.x = URL_SAFE_NO_PAD.encode([1u8; 31]);
        assert!(matches!(
            AccessTokenVerifier::new(&[short], ISS, AUD, MAX_LEEWAY),
            Err(TokenError::Key(_))
        ));
        let mut hmac = a.public_jwk();
        hmac.kty = "oct".into();
        assert!(matches!(
            AccessTokenVerifier::new(&[hmac], ISS, AUD, MAX_LEEWAY),
            Err(TokenError::Key(_))
        ));
    }

    #[test]
    fn debug_of_issuer_and_verifier_shows_no_private_material() {
        let key = SigningKey::generate().unwrap();
        let stored = key.to_stored_bytes();
        let v = verifier(&[&key]);
        let shown = format!("{:?} {v:?}", issuer(key));
        assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(&stored[16..48])));
        assert!(shown.contains("[REDACTED]"));
    }
}
