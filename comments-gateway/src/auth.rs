//! Token checks: HS256 only, `exp` enforced, before the WebSocket upgrade.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use shared_proto::Claims;

/// Verifies the library's tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = true;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use shared_proto::{Role, Username};

    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: Username::parse("JD").expect("valid"),
            name: "John Doe".into(),
            role: Role::User,
            exp,
            iat: None,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn accepts_valid_and_refuses_the_rest() {
        let verifier = TokenVerifier::new("s3cret");
        let good = encode(
            &Header::new(Algorithm::HS256),
            &claims(now() + 60),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("encodes");
        assert_eq!(verifier.verify(&good).expect("valid").sub.as_str(), "JD");
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &claims(now() - 5),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("encodes");
        assert!(verifier.verify(&expired).is_err());
        let other_key = encode(
            &Header::new(Algorithm::HS256),
            &claims(now() + 60),
            &EncodingKey::from_secret(b"nope"),
        )
        .expect("encodes");
        assert!(verifier.verify(&other_key).is_err());
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims(now() + 60),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .expect("encodes");
        assert!(verifier.verify(&hs512).is_err(), "algorithm is pinned");
        assert!(verifier.verify("garbage").is_err());
    }
}
