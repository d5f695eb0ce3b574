//! The account-level `cgi-bin` calls: the official account's global access_token
//! (`cgi-bin/token`, `cgi-bin/stable_token`), the JS-SDK ticket, and whether a user
//! follows the account. Unlike the `sns` calls these belong to the account, not to a
//! user: whoever holds the token holds the account's API.

use serde::Deserialize;
use serde_json::json;

use super::{AppCredentials, WechatClient, WechatError};

/// Calls that take the account's access_token: a 40001/42001 from them means the token
/// is no longer good (and is logged as such), not that the secret is wrong.
pub(super) const USES_ACCOUNT_TOKEN: &[&str] = &["getticket", "user_info"];

/// The account's global access_token as WeChat handed it out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct AccountToken {
    pub access_token: String,
    /// Seconds from now; 7200 for a new token, less for a stable token handed out again.
    #[serde(default)]
    pub expires_in: u64,
}

/// The JS-SDK's `jsapi_ticket`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct JsapiTicket {
    pub ticket: String,
    #[serde(default)]
    pub expires_in: u64,
}

// Both are credentials: `{:?}` shows how long they live, never what they are.
impl std::fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl std::fmt::Debug for JsapiTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsapiTicket")
            .field("ticket", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    subscribe: i64,
}

impl WechatClient {
    /// `GET cgi-bin/token`: a new token at every call (2000 a day), and the previous
    /// one stops working five minutes later, wherever it is being used.
    pub async fn classic_token(&self, app: &AppCredentials) -> Result<AccountToken, WechatError> {
        self.call(
            "token",
            "/cgi-bin/token",
            &[
                ("grant_type", "client_credential"),
                ("appid", &app.appid),
                ("secret", &app.secret),
            ],
        )
        .await
    }

    /// `POST cgi-bin/stable_token`: the same token until its last five minutes, then a
    /// new one (the old one still works until it expires). `force` invalidates the
    /// current token at once: 20 a day, and ignored within 30 s of the previous one.
    pub async fn stable_token(
        &self,
        app: &AppCredentials,
        force: bool,
    ) -> Result<AccountToken, WechatError> {
        let body = json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret,
            "force_refresh": force,
        });
        self.call_with("stable_token", "/cgi-bin/stable_token", &[], Some(&body))
            .await
    }

    /// `GET cgi-bin/ticket/getticket?type=jsapi`: the ticket JS-SDK signatures are made
    /// with. Its quota is small: share it like the token.
    pub async fn jsapi_ticket(&self, access_token: &str) -> Result<JsapiTicket, WechatError> {
        self.call(
            "getticket",
            "/cgi-bin/ticket/getticket",
            &[("access_token", access_token), ("type", "jsapi")],
        )
        .await
    }

    /// `GET cgi-bin/user/info`: whether `openid` follows the account (`subscribe` 1).
    pub async fn subscribed(
        &self,
        access_token: &str,
        openid: &str,
        lang: &str,
    ) -> Result<bool, WechatError> {
        let info: UserInfo = self
            .call(
                "user_info",
                "/cgi-bin/user/info",
                &[
                    ("access_token", access_token),
                    ("openid", openid),
                    ("lang", lang),
                ],
            )
            .await?;
        Ok(info.subscribe == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_debug_output() {
        let t = AccountToken {
            access_token: "ACCESS-TOKEN-VALUE".into(),
            expires_in: 7200,
        };
        let k = JsapiTicket {
            ticket: "TICKET-VALUE".into(),
            expires_in: 7200,
        };
        let shown = format!("{t:?} {k:?}");
        assert!(!shown.contains("ACCESS-TOKEN-VALUE") && !shown.contains("TICKET-VALUE"));
        assert!(shown.contains("7200"), "{shown}");
    }
}
