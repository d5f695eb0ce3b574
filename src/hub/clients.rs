//! The apps registered with the hub, and telling which one a token request comes from
//! (`client_secret_basic` or `client_secret_post`, RFC 6749 §2.3.1).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use super::error::TokenError;
use super::params::Params;
use crate::config::{HubClient, Scope};

/// One registered app, as the running hub keeps it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// SHA-256 of the secret: compared digest to digest, so the time a comparison takes
    /// says nothing about the secret.
    secret_digest: [u8; 32],
    pub redirect_uris: Vec<String>,
    pub max_scope: Scope,
}

impl Client {
    /// Whether `uri` is one of this client's redirect URIs, byte for byte.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    fn secret_matches(&self, secret: &str) -> bool {
        let given = digest(secret);
        // Equal length; every byte looked at.
        given
            .iter()
            .zip(self.secret_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(s: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_id: HashMap<String, Client>,
}

impl Clients {
    pub fn new(cfg: &[HubClient]) -> Clients {
        let by_id = cfg
            .iter()
            .map(|c| {
                (
                    c.client_id.clone(),
                    Client {
                        id: c.client_id.clone(),
                        secret_digest: digest(&c.client_secret),
                        redirect_uris: c.redirect_uris.clone(),
                        max_scope: c.scope,
                    },
                )
            })
            .collect();
        Clients { by_id }
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.by_id.get(id)
    }

    /// The client a token request authenticates as, by exactly one method.
    pub fn authenticate(&self, headers: &HeaderMap, form: &Params) -> Result<&Client, TokenError> {
        let basic = basic_credentials(headers)?;
        let posted_id = form
            .one("client_id")
            .map_err(|_| TokenError::InvalidRequest("client_id is given twice"))?;
        let posted_secret = form
            .one("client_secret")
            .map_err(|_| TokenError::InvalidRequest("client_secret is given twice"))?;
        let (id, secret) = match (basic, posted_secret) {
            (Some(_), Some(_)) => {
                return Err(TokenError::InvalidRequest(
                    "use one client authentication method: the Authorization header or client_secret in the body, not both",
                ))
            }
            (Some((id, secret)), None) => {
                // A client_id in the body besides Basic is allowed, if it is the same.
                if posted_id.is_some_and(|p| p != id) {
                    return Err(TokenError::InvalidRequest(
                        "client_id in the body differs from the Authorization header's",
                    ));
                }
                (id, secret)
            }
            (None, Some(secret)) => match posted_id {
                Some(id) => (id.to_string(), secret.to_string()),
                None => return Err(TokenError::InvalidRequest("client_secret without client_id")),
            },
            (None, None) => {
                return Err(TokenError::InvalidClient(
                    "client authentication required (client_secret_basic or client_secret_post)",
                ))
            }
        };
        match self.by_id.get(&id) {
            Some(c) if c.secret_matches(&secret) => Ok(c),
            _ => Err(TokenError::InvalidClient("unknown client or wrong secret")),
        }
    }
}

/// `Authorization: Basic`, its two halves form-urlencoded first (RFC 6749 §2.3.1).
/// None without such a header; an error when it is there but unreadable.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad =
        || TokenError::InvalidClient("the Authorization header is not Basic client credentials");
    if values.next().is_some() {
        return Err(TokenError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, b64) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| super::params::form_decode(s).ok_or_else(bad);
    Ok(Some((decode(id)?, decode(secret)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "0123456789abcdef0123456789abcdef+/";

    fn clients() -> Clients {
        Clients::new(&[HubClient {
            client_id: "crm app".into(),
            client_secret: SECRET.into(),
            redirect_uris: vec!["https://crm.example.com/cb".into()],
            scope: Scope::Base,
        }])
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let enc = |s: &str| super::super::params::form_encode(s);
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        );
        h.insert(AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn either_method_authenticates_and_both_at_once_is_refused() {
        let c = clients();
        let none = Params::parse("");
        assert_eq!(
            c.authenticate(&basic("crm app", SECRET), &none).unwrap().id,
            "crm app"
        );
        let posted = Params::parse(&format!(
            "client_id=crm+app&client_secret={}",
            super::super::params::form_encode(SECRET)
        ));
        assert_eq!(
            c.authenticate(&HeaderMap::new(), &posted).unwrap().id,
            "crm app"
        );
        assert!(matches!(
            c.authenticate(&basic("crm app", SECRET), &posted),
            Err(TokenError::InvalidRequest(_))
        ));
        let same_id = Params::parse("client_id=crm+app");
        assert!(c.authenticate(&basic("crm app", SECRET), &same_id).is_ok());
        let other_id = Params::parse("client_id=other");
        assert!(matches!(
            c.authenticate(&basic("crm app", SECRET), &other_id),
            Err(TokenError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_wrong_secret_an_unknown_client_or_no_credentials_is_invalid_client() {
        let c = clients();
        let none = Params::parse("");
        for h in [
            basic("crm app", "wrong"),
            basic("crm app", &SECRET[..SECRET.len() - 1]),
            basic("nobody", SECRET),
            HeaderMap::new(),
        ] {
            assert!(matches!(
                c.authenticate(&h, &none),
                Err(TokenError::InvalidClient(_))
            ));
        }
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert!(matches!(
            c.authenticate(&bearer, &none),
            Err(TokenError::InvalidClient(_))
        ));
    }
}
