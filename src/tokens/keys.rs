//! Ed25519 signing keys: generation, storage as PKCS#8 DER, and publication as JWK / JWKS.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::EncodingKey;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The JWK `kty` of an Ed25519 key (RFC 8037).
pub const KTY_OKP: &str = "OKP";
/// The JWK `crv` of an Ed25519 key (RFC 8037).
pub const CRV_ED25519: &str = "Ed25519";
/// The JWS `alg` of an Ed25519 signature (RFC 8037).
pub const ALG_EDDSA: &str = "EdDSA";
/// The JWK `use` of a signing key.
pub const USE_SIG: &str = "sig";

/// Longest `kid` accepted; anything longer is not one of ours.
const MAX_KID_LEN: usize = 128;

/// Why a key could not be made, loaded or accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed")]
    Rng,
    /// Stored bytes are not an Ed25519 PKCS#8 private key. No detail is kept: it could echo secret bytes.
    #[error("stored private key is not a valid Ed25519 PKCS#8 document")]
    InvalidPrivateKey,
    /// The private key could not be encoded as PKCS#8.
    #[error("private key could not be encoded as PKCS#8")]
    Encoding,
    /// A key id that is empty, too long, or has whitespace or control characters.
    #[error("key id must be 1 to 128 printable ASCII characters")]
    InvalidKid,
    /// A public JWK that is not an Ed25519 signing key.
    #[error("JWK is not a usable Ed25519 signing key: {0}")]
    InvalidJwk(&'static str),
}

/// An Ed25519 private key with its key id.
///
/// `Debug` shows the key id and public key only.
pub struct SigningKey {
    kid: String,
    /// PKCS#8 DER: the form jsonwebtoken signs with and the form stored. Zeroized on drop by jsonwebtoken.
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// A new key from the OS CSPRNG; its `kid` is the RFC 7638 JWK thumbprint (SHA-256) of its public key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        // try_fill_bytes, not generate(): a failing OS RNG becomes an error instead of a panic.
        OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|_| KeyError::Rng)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let der = key.to_pkcs8_der().map_err(|_| KeyError::Encoding)?;
        let public = key.verifying_key();
        Ok(Self {
            kid: thumbprint(&public),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public,
        })
    }

    /// Loads a key saved with [`SigningKey::to_stored_bytes`] under the `kid` it was published with.
    ///
    /// Accepts PKCS#8 v1 (RFC 8410, as OpenSSL writes) and v2 (with the public key, as `to_stored_bytes`
    /// writes; the embedded public key must match). The `kid` is taken as given, not re-derived, so ids
    /// assigned some other way (e.g. random) keep working.
    pub fn from_stored_bytes(kid: impl Into<String>, bytes: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        // Parsed here so a bad row fails at load time, not at the first signature.
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(bytes)
            .map_err(|_| KeyError::InvalidPrivateKey)?;
        // The bytes are kept as given: jsonwebtoken parses them with the same function.
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(bytes),
            public: key.verifying_key(),
        })
    }

    /// The private key as PKCS#8 DER, for storage (encrypt it at rest). Zeroized when dropped.
    pub fn to_stored_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encoding.as_bytes().to_vec())
    }

    /// The key id placed in token headers and in the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK, for the JWKS endpoint and for verifiers.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: KTY_OKP.to_owned(),
            crv: CRV_ED25519.to_owned(),
            x: URL_SAFE_NO_PAD.encode(self.public.as_bytes()),
            kid: self.kid.clone(),
            alg: ALG_EDDSA.to_owned(),
            key_use: USE_SIG.to_owned(),
        }
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("public", &URL_SAFE_NO_PAD.encode(self.public.as_bytes()))
            .field("private", &"[REDACTED]")
            .finish()
    }
}

/// A public Ed25519 key as a JSON Web Key (RFC 7517, RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Key type: always `OKP`.
    pub kty: String,
    /// Curve: always `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Key id, matched against the token header's `kid`.
    pub kid: String,
    /// Algorithm: always `EdDSA`.
    pub alg: String,
    /// Public key use: always `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
}

impl Jwk {
    /// The raw public key, after checking every field names an Ed25519 signing key.
    pub(crate) fn ed25519_public_key(&self) -> Result<[u8; 32], KeyError> {
        if self.kty != KTY_OKP {
            return Err(KeyError::InvalidJwk("kty is not OKP"));
        }
        if self.crv != CRV_ED25519 {
            return Err(KeyError::InvalidJwk("crv is not Ed25519"));
        }
        if self.alg != ALG_EDDSA {
            return Err(KeyError::InvalidJwk("alg is not EdDSA"));
        }
        if self.key_use != USE_SIG {
            return Err(KeyError::InvalidJwk("use is not sig"));
        }
        check_kid(&self.kid)
            .map_err(|_| KeyError::InvalidJwk("kid is empty, too long or not printable ASCII"))?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&self.x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyError::InvalidJwk("x is not 32 bytes of base64url"))?;
        // Rejects encodings that are not points on the curve, so a bad JWKS fails at startup.
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::InvalidJwk("x is not an Ed25519 point"))?;
        Ok(bytes)
    }
}

/// A JWK Set document (`{"keys": [...]}`): the current key and the previous ones still accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The public keys.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The public halves of `keys`, in order.
    pub fn from_signing_keys<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Self {
        keys.into_iter().map(SigningKey::public_jwk).collect()
    }
}

impl FromIterator<Jwk> for Jwks {
    fn from_iter<I: IntoIterator<Item = Jwk>>(iter: I) -> Self {
        Self {
            keys: iter.into_iter().collect(),
        }
    }
}

fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok =
        !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or(KeyError::InvalidKid)
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(public: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
    let canonical = format!(r#"{{"crv":"{CRV_ED25519}","kty":"{KTY_OKP}","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    /// RFC 8410 §10.3: a PKCS#8 v1 Ed25519 private key; its public key is the one in §10.1.
    const RFC8410_PRIVATE: &str =
        "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
    const RFC8410_PUBLIC_X: &str = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";

    #[test]
    fn public_jwk_has_exactly_the_rfc8037_members() {
        let key = SigningKey::generate().unwrap();
        let json = serde_json::to_value(key.public_jwk()).unwrap();
        let obj = json.as_object().unwrap();
        let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
        assert_eq!(obj["kty"], "OKP");
        assert_eq!(obj["crv"], "Ed25519");
        assert_eq!(obj["alg"], "EdDSA");
        assert_eq!(obj["use"], "sig");
        assert_eq!(obj["kid"], key.kid());
        let x = obj["x"].as_str().unwrap();
        assert!(!x.contains('='), "x must be unpadded");
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 32);
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_as_jsonwebtoken_computes_it() {
        let key = SigningKey::generate().unwrap();
        let theirs: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(serde_json::to_value(key.public_jwk()).unwrap()).unwrap();
        assert_eq!(
            theirs
                .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            key.kid()
        );
        assert_eq!(key.kid().len(), 43);
    }

    #[test]
    fn generated_keys_differ() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        assert_ne!(a.kid(), b.kid());
        assert_ne!(*a.to_stored_bytes(), *b.to_stored_bytes());
    }

    #[test]
    fn stored_bytes_are_pkcs8_and_load_back_to_the_same_key() {
        let key = SigningKey::generate().unwrap();
        let stored = key.to_stored_bytes();
        // v2 OneAsymmetricKey: seed plus public key; the loader checks the two agree.
        assert_eq!(stored.len(), 83);
        assert!(ed25519_dalek::SigningKey::from_pkcs8_der(&stored).is_ok());
        let loaded = SigningKey::from_stored_bytes(key.kid(), &stored).unwrap();
        assert_eq!(loaded.public_jwk(), key.public_jwk());
        assert_eq!(*loaded.to_stored_bytes(), *stored);
    }

    #[test]
    fn loads_an_external_pkcs8_v1_key() {
        let der = STANDARD.decode(RFC8410_PRIVATE).unwrap();
        let key = SigningKey::from_stored_bytes("rfc8410", &der).unwrap();
        assert_eq!(key.public_jwk().x, RFC8410_PUBLIC_X);
        assert_eq!(key.kid(), "rfc8410");
    }

    #[test]
    fn rejects_garbage_mismatched_public_key_and_bad_kids() {
        assert!(matches!(
            SigningKey::from_stored_bytes("k", b"not der"),
            Err(KeyError::InvalidPrivateKey)
        ));
        let mut stored = SigningKey::generate().unwrap().to_stored_bytes();
        let last = stored.len() - 1;
        stored[last] ^= 1; // flips a bit of the embedded public key
        assert!(matches!(
            SigningKey::from_stored_bytes("k", &stored),
            Err(KeyError::InvalidPrivateKey)
        ));
        let good = SigningKey::generate().unwrap().to_stored_bytes();
        for kid in ["", "has space", "tab\t", &"k".repeat(129)] {
            assert!(
                matches!(
                    SigningKey::from_stored_bytes(kid, &good),
                    Err(KeyError::InvalidKid)
                ),
                "{kid:?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_private_material() {
        let key = SigningKey::generate().unwrap();
        let stored = key.to_stored_bytes();
        let seed = &stored[16..48]; // v2 layout: 16-byte prefix, then the 32-byte seed
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains("[REDACTED]"));
        assert!(shown.contains(key.kid()));
        for secret in [
            URL_SAFE_NO_PAD.encode(seed),
            STANDARD.encode(seed),
            STANDARD.encode(&*stored),
            seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            format!("{:?}", &seed[..8]),
        ] {
            assert!(!shown.contains(&secret), "Debug leaks {secret}");
        }
    }

    #[test]
    fn jwks_serialises_as_a_key_set_and_round_trips() {
        let current = SigningKey::generate().unwrap();
        let previous = SigningKey::generate().unwrap();
        let jwks = Jwks::from_signing_keys([&current, &previous]);
        let json = serde_json::to_value(&jwks).unwrap();
        assert_eq!(json["keys"].as_array().unwrap().len(), 2);
        assert_eq!(json["keys"][0]["kid"], current.kid());
        assert_eq!(json["keys"][1]["kid"], previous.kid());
        let back: Jwks = serde_json::from_value(json).unwrap();
        assert_eq!(back, jwks);
        // jsonwebtoken's own JWKS type reads it too.
        let theirs: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&serde_json::to_string(&jwks).unwrap()).unwrap();
        assert!(theirs.find(previous.kid()).is_some());
    }

    /// A way to spoil an otherwise good JWK, and what it spoils.
    type Spoil = (fn(&mut Jwk), &'static str);

    #[test]
    fn jwk_validation_rejects_non_ed25519_keys() {
        let good = SigningKey::generate().unwrap().public_jwk();
        assert!(good.ed25519_public_key().is_ok());
        let cases: [Spoil; 8] = [
            (|j| j.kty = "oct".into(), "kty"),
            (|j| j.crv = "X25519".into(), "crv"),
            (|j| j.alg = "HS256".into(), "alg"),
            (|j| j.key_use = "enc".into(), "use"),
            (|j| j.kid = String::new(), "kid"),
            // Shorter than 32 bytes: jsonwebtoken 11 would panic slicing it, so it must never get that far.
            (|j| j.x = URL_SAFE_NO_PAD.encode([7u8; 16]), "x"),
            // Longer: jsonwebtoken 11 would silently use the first 32 bytes.
            (|j| j.x = URL_SAFE_NO_PAD.encode([7u8; 33]), "x"),
            (|j| j.x = format!("{}=", j.x), "x"),
        ];
        for (spoil, what) in cases {
            let mut jwk = good.clone();
            spoil(&mut jwk);
            assert!(jwk.ed25519_public_key().is_err(), "{what}");
        }

        // 32 bytes that do not decode to a curve point (about half of all byte strings).
        let not_a_point = (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .unwrap();
        let mut jwk = good.clone();
        jwk.x = URL_SAFE_NO_PAD.encode(not_a_point);
        assert!(matches!(
            jwk.ed25519_public_key(),
            Err(KeyError::InvalidJwk("x is not an Ed25519 point"))
        ));
    }
}
