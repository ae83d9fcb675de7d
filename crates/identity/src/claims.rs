//! What ringside's tokens say: access tokens for apps, and the token on every callback.

use serde::{Deserialize, Serialize};

/// Claims of an app-only access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub tid: String,
    pub appid: String,
    pub azp: String,
    pub roles: Vec<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub idtyp: String,
}

/// Claims of the token on every notification POST (reference §8.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackClaims {
    pub iss: String,
    pub aud: String,
    pub tid: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Claims of a user's token (the web phone's sign-in), minted by the admin API. It is not
/// an app token: its `typ` says so, and neither validates as the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub iss: String,
    pub sub: String,
    pub tid: String,
    pub typ: UserTyp,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// The one value `typ` takes in a user token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserTyp {
    #[serde(rename = "ringside-user")]
    User,
}

/// The audience of a token requested for `scope` (`https://graph.microsoft.com/.default`).
pub fn audience_of_scope(scope: Option<&str>) -> String {
    let s = scope
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("https://graph.microsoft.com/.default");
    s.trim_end_matches("/.default")
        .trim_end_matches(".default")
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_becomes_audience() {
        assert_eq!(
            audience_of_scope(Some("https://graph.microsoft.com/.default")),
            "https://graph.microsoft.com"
        );
        assert_eq!(audience_of_scope(None), "https://graph.microsoft.com");
    }
}
