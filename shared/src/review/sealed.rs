//! How sealed values are stored: base64url text in D1, with `<row id>/<field>` as the
//! associated data, so a value copied into another row or another column does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The sealed columns and the field name each binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An integration's platform access token.
    AccessToken,
    /// An integration's webhook secret (current and, during rotation, previous).
    WebhookSecret,
    /// GitLab's Standard Webhooks signing token.
    SigningToken,
    /// A BYOK provider's API key (sealed to the review worker's public key).
    ApiKey,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::AccessToken => "access_token",
            Field::WebhookSecret => "webhook_secret",
            Field::SigningToken => "signing_token",
            Field::ApiKey => "api_key",
        }
    }
}

pub fn aad(row_id: &str, field: Field) -> String {
    format!("{row_id}/{}", field.name())
}

pub fn encode(sealed: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sealed)
}

pub fn decode(stored: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(stored.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_binds_row_and_field() {
        assert_eq!(aad("int_1", Field::AccessToken), "int_1/access_token");
        assert_ne!(
            aad("int_1", Field::AccessToken),
            aad("int_1", Field::WebhookSecret)
        );
        assert_eq!(decode(&encode(b"\x00\x01xyz")).unwrap(), b"\x00\x01xyz");
        assert!(decode("!!").is_none());
    }
}
