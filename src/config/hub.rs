//! `[hub]`: this wxgate, at the domain WeChat authorized, signs users in for other
//! apps as an OpenID Connect provider. Each `[[hub.clients]]` names an app, its secret,
//! the exact URLs its codes may be sent to, and the most it may learn of a user.
//! `[hub_client]`: this wxgate signs its users in through such a hub instead.

use std::fmt;
use std::path::Path;

use http::Uri;

use super::{push, resolve_secret, Algorithm, Env, Problem, Scope};

/// `[hub]`, checked.
#[derive(Debug, Clone, Default)]
pub struct HubConfig {
    pub clients: Vec<HubClient>,
    /// How long a code may wait to be redeemed (60 s; tests shorten it after checking).
    pub code_ttl: std::time::Duration,
}

/// One app allowed to sign its users in through the hub, checked.
#[derive(Clone)]
pub struct HubClient {
    pub client_id: String,
    /// The resolved secret (at least 32 characters).
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub scope: Scope,
}

/// `[hub_client]`, checked.
#[derive(Clone)]
pub struct HubClientConfig {
    /// The hub's issuer, without a trailing `/`.
    pub issuer: String,
    pub client_id: String,
    /// The resolved secret.
    pub client_secret: String,
    pub scope: Scope,
}

// Client secrets are credentials: never printed, not even by `{:?}`.
impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Debug for HubClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClientConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .finish()
    }
}

/// The sections as written in the file.
pub mod file {
    use std::fmt;
    use std::path::PathBuf;

    use serde::{Deserialize, Serialize};

    use super::super::Scope;

    #[derive(Debug, Clone, Default, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct HubConfig {
        pub clients: Vec<HubClient>,
    }

    /// One app allowed to sign its users in through the hub.
    #[derive(Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct HubClient {
        pub client_id: String,
        /// At least 32 bytes; or `client_secret_file`; env `WXGATE_HUB_SECRET_<CLIENT_ID>`.
        pub client_secret: String,
        pub client_secret_file: Option<PathBuf>,
        /// Compared byte for byte with the `redirect_uri` of a request: no prefix, no
        /// pattern, no normalisation, so nothing a browser reads differently can pass.
        pub redirect_uris: Vec<String>,
        /// The most this client may get: `snsapi_userinfo` lets it ask for `profile`.
        pub scope: Scope,
    }

    impl Default for HubClient {
        fn default() -> Self {
            Self {
                client_id: String::new(),
                client_secret: String::new(),
                client_secret_file: None,
                redirect_uris: vec![],
                scope: Scope::Base,
            }
        }
    }

    impl fmt::Debug for HubClient {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HubClient")
                .field("client_id", &self.client_id)
                .field("client_secret", &"<redacted>")
                .field("client_secret_file", &self.client_secret_file)
                .field("redirect_uris", &self.redirect_uris)
                .field("scope", &self.scope)
                .finish()
        }
    }

    /// `[hub_client]`: this wxgate signs its users in through a hub (another wxgate's
    /// `[hub]`) instead of WeChat; it needs no `[wechat]` of its own.
    #[derive(Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct HubClientConfig {
        /// The hub's issuer: its public_url + "/_wxgate".
        pub issuer: String,
        pub client_id: String,
        /// Or `client_secret_file`; env `WXGATE_HUB_CLIENT_SECRET`.
        pub client_secret: String,
        pub client_secret_file: Option<PathBuf>,
        /// What to ask the hub for: `snsapi_base` (scope `openid`) or `snsapi_userinfo`
        /// (`openid profile`; the hub caps it by what it registered for this client).
        pub scope: Scope,
    }

    impl Default for HubClientConfig {
        fn default() -> Self {
            Self {
                issuer: String::new(),
                client_id: String::new(),
                client_secret: String::new(),
                client_secret_file: None,
                scope: Scope::Base,
            }
        }
    }

    impl fmt::Debug for HubClientConfig {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("HubClientConfig")
                .field("issuer", &self.issuer)
                .field("client_id", &self.client_id)
                .field("client_secret", &"<redacted>")
                .field("client_secret_file", &self.client_secret_file)
                .field("scope", &self.scope)
                .finish()
        }
    }
}

/// Checks `[hub]`, resolving each client's secret. `public_https`: whether the hub's
/// own public_url is https (an http hub is a development setup, where http apps are fine).
pub(super) fn check(
    raw: &file::HubConfig,
    algorithm: Algorithm,
    public_https: bool,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<HubConfig> {
    if algorithm == Algorithm::HS256 {
        push(p, "identity.algorithm", "HS256 cannot sign for [hub]: its apps verify id_tokens from the published JWKS, which a shared secret is never in (use ES256, EdDSA or RS256)");
    }
    if raw.clients.is_empty() {
        push(
            p,
            "hub.clients",
            "[hub] needs at least one [[hub.clients]] (client_id, client_secret, redirect_uris)",
        );
    }
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut clients = Vec::new();
    for (i, c) in raw.clients.iter().enumerate() {
        let key = |k: &str| format!("hub.clients[{i}].{k}");
        if !is_client_id(&c.client_id) {
            push(
                p,
                &key("client_id"),
                format!(
                    "{:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                    c.client_id
                ),
            );
        }
        let env_name = secret_env_name(&c.client_id);
        if let Some((other, _)) = ids
            .iter()
            .find(|(id, e)| *id == c.client_id || *e == env_name)
        {
            push(
                p,
                &key("client_id"),
                format!(
                    "{:?} is already a client (or shares its secret's environment variable {env_name} with {other:?})",
                    c.client_id
                ),
            );
        }
        ids.push((c.client_id.clone(), env_name.clone()));
        let secret = match resolve_secret(
            &c.client_secret,
            c.client_secret_file.as_deref(),
            &env_name,
            base,
            env,
        ) {
            Ok(Some(s)) if s.trim().len() >= 32 => Some(s.trim().to_string()),
            Ok(Some(s)) => {
                push(
                    p,
                    &key("client_secret"),
                    format!(
                        "must be at least 32 characters (got {}); `wxgate keygen` prints one",
                        s.trim().len()
                    ),
                );
                None
            }
            Ok(None) => {
                push(
                    p,
                    &key("client_secret"),
                    format!("is required (or client_secret_file, or env {env_name}); `wxgate keygen` prints one"),
                );
                None
            }
            Err(m) => {
                push(p, &key("client_secret_file"), m);
                None
            }
        };
        if c.redirect_uris.is_empty() {
            push(
                p,
                &key("redirect_uris"),
                "needs at least one URL, e.g. \"https://crm.example.com/_wxgate/callback\"",
            );
        }
        for (j, uri) in c.redirect_uris.iter().enumerate() {
            if let Err(m) = check_redirect_uri(uri, public_https) {
                push(p, &format!("hub.clients[{i}].redirect_uris[{j}]"), m);
            }
        }
        if let Some(client_secret) = secret {
            clients.push(HubClient {
                client_id: c.client_id.clone(),
                client_secret,
                redirect_uris: c.redirect_uris.clone(),
                scope: c.scope,
            });
        }
    }
    Some(HubConfig {
        clients,
        code_ttl: CODE_TTL,
    })
}

/// Checks `[hub_client]`, resolving its secret.
pub(super) fn check_client(
    raw: &file::HubClientConfig,
    public_https: bool,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<HubClientConfig> {
    let issuer = raw.issuer.trim_end_matches('/').to_string();
    if issuer.is_empty() {
        push(
            p,
            "hub_client.issuer",
            "is required: the hub's public_url + \"/_wxgate\", e.g. \"https://auth.example.com/_wxgate\"",
        );
    } else if let Err(m) = check_issuer(&issuer, public_https) {
        push(p, "hub_client.issuer", m);
    }
    if !is_client_id(&raw.client_id) {
        push(
            p,
            "hub_client.client_id",
            format!(
                "{:?} must be 1 to 64 letters, digits, '-', '_' or '.' (as registered at the hub)",
                raw.client_id
            ),
        );
    }
    let secret = match resolve_secret(
        &raw.client_secret,
        raw.client_secret_file.as_deref(),
        "WXGATE_HUB_CLIENT_SECRET",
        base,
        env,
    ) {
        Ok(Some(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Ok(_) => {
            push(
                p,
                "hub_client.client_secret",
                "is required (or client_secret_file, or env WXGATE_HUB_CLIENT_SECRET)",
            );
            None
        }
        Err(m) => {
            push(p, "hub_client.client_secret_file", m);
            None
        }
    };
    Some(HubClientConfig {
        issuer,
        client_id: raw.client_id.clone(),
        client_secret: secret?,
        scope: raw.scope,
    })
}

/// The hub's issuer: an http(s) URL without query, fragment or user info; https unless
/// the hub is on loopback or this wxgate is itself on http.
fn check_issuer(s: &str, public_https: bool) -> Result<(), String> {
    let u: Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
    let https = match u.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{s:?} must start with https://")),
    };
    let Some(auth) = u.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    if auth.as_str().contains('@') || u.query().is_some() || s.contains('#') {
        return Err(format!(
            "{s:?} must be the hub's public_url + \"/_wxgate\" (no user info, query or fragment)"
        ));
    }
    let host = auth.host().trim_matches(['[', ']']);
    let loopback = is_loopback(host);
    if !https && !loopback && public_https {
        return Err(format!(
            "{s:?}: the hub must be reached over https (http only on loopback, or when this wxgate is on http too)"
        ));
    }
    Ok(())
}

/// `localhost` or a loopback address: where plain http cannot be overheard.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A code is redeemed by the app's server right after the browser brings it back.
pub const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The environment variable holding a client's secret: `WXGATE_HUB_SECRET_` and the
/// client_id in capitals, every other character than a letter or digit as `_`.
pub fn secret_env_name(client_id: &str) -> String {
    let id: String = client_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("WXGATE_HUB_SECRET_{id}")
}

fn is_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A registered redirect URI: an absolute http(s) URL with a host, no user info, no
/// fragment (RFC 6749 §3.1.2), nothing a browser would read two ways; http only for a
/// loopback app or a hub that is itself on http.
pub fn check_redirect_uri(s: &str, public_https: bool) -> Result<(), String> {
    if s.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || !b.is_ascii())
    {
        return Err(format!(
            "{s:?} must be plain ASCII without spaces, controls or backslashes (write an IDN host in its xn-- form)"
        ));
    }
    if s.contains('#') {
        return Err(format!("{s:?} must not have a fragment"));
    }
    let u: Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
    let https = match u.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "{s:?} must start with https:// (or http:// for a loopback app)"
            ))
        }
    };
    let Some(auth) = u.authority() else {
        return Err(format!("{s:?} has no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("{s:?} must not contain user info"));
    }
    let host = auth.host().trim_matches(['[', ']']);
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let head = format!("{}://{}", u.scheme_str().unwrap_or(""), auth.as_str());
    if !s
        .strip_prefix(&head)
        .is_some_and(|rest| rest.starts_with('/'))
    {
        return Err(format!("{s:?} must be written scheme://host[:port]/path"));
    }
    let loopback = is_loopback(host);
    if !https && !loopback && public_https {
        return Err(format!(
            "{s:?}: codes travel only over https (http is for loopback apps, or a hub on http)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_redirect_uris_are_plain_absolute_urls() {
        for ok in [
            "https://crm.example.com/_wxgate/callback",
            "https://crm.example.com:8443/oauth2/callback?x=1",
            "http://127.0.0.1:4180/oauth2/callback",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
            "https://xn--fiqs8s.example/cb",
        ] {
            assert_eq!(check_redirect_uri(ok, true), Ok(()), "{ok}");
        }
        for bad in [
            "crm.example.com/cb",
            "/cb",
            "ftp://crm.example.com/cb",
            "https://crm.example.com/cb#frag",
            "https://user@crm.example.com/cb",
            "https://crm.example.com\\@evil.example/cb",
            "https://中国.example/cb",
            "https://crm.example.com/c b",
            "http://crm.example.com/cb",
            "https://crm.example.com",
            "https:///cb",
        ] {
            assert!(check_redirect_uri(bad, true).is_err(), "{bad}");
        }
        assert_eq!(check_redirect_uri("http://crm.test/cb", false), Ok(()));
    }

    #[test]
    fn each_client_secret_has_its_own_variable() {
        assert_eq!(secret_env_name("crm"), "WXGATE_HUB_SECRET_CRM");
        assert_eq!(secret_env_name("my-app.v2"), "WXGATE_HUB_SECRET_MY_APP_V2");
    }
}
