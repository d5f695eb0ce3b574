//! The claims of the identity token: a pure function of the session and of the moment
//! and ids the signer chose, so every rule of PRODUCT.md's claim table is tested here.

use serde_json::{Map, Value};

use crate::config::{Scope, Subject};
use crate::session::Session;

/// Every claim a token may carry, for the discovery document.
pub(crate) const CLAIMS_SUPPORTED: &[&str] = &[
    "iss",
    "aud",
    "sub",
    "iat",
    "nbf",
    "exp",
    "jti",
    "sid",
    "appid",
    "openid",
    "scope",
    "unionid",
    "nickname",
    "headimgurl",
    "name",
    "picture",
    "subscribe",
    "sub_type",
];

/// What a WeCom session's identity adds (`idp` = "wecom", the member's ids).
/// Members' private details come with `snsapi_privateinfo`; visitors (with
/// `members_only = false`) are named by `openid` and `external_userid`.
pub const WECOM_CLAIMS: &[&str] = &[
    "idp",
    "corpid",
    "userid",
    "department",
    "email",
    "phone_number",
    "gender",
    "external_userid",
];
/// What a session signed in through a hub adds (`idp` = "hub").
pub const HUB_CLIENT_CLAIMS: &[&str] = &["idp"];

/// Claims that come from outside the session (the account services), each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extra {
    /// Whether the user follows the official account (`cgi-bin/user/info`).
    pub subscribe: Option<bool>,
}

impl Extra {
    /// A small number naming this combination, so a cached token is reused only for
    /// the extra claims it was signed with.
    pub(crate) fn variant(&self) -> u8 {
        match self.subscribe {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        }
    }
}

/// What the signer adds to a session to make one token's claims.
pub(crate) struct Stamp<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    /// Unix seconds.
    pub iat: u64,
    /// Seconds: `exp - iat`.
    pub ttl: u64,
    pub sid: &'a str,
    pub jti: &'a str,
    /// Whether `sub` may be the unionid (`identity.subject`).
    pub subject: Subject,
}

pub(crate) fn claims(s: &Session, st: &Stamp<'_>, extra: &Extra) -> Value {
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    put("iss", st.iss.into());
    put("aud", st.aud.into());
    // WeChat sends "" for some absent fields; an empty claim would only mislead.
    let present = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    let unionid = present(&s.unionid);
    match (st.subject, &unionid) {
        // A WeCom session's subject is its userid (a visitor's openid): WeCom has no
        // unionid to offer, and a `sub_type` naming WeChat's ids would mislead.
        _ if s.idp == crate::session::Idp::Wecom => put("sub", s.openid.as_str().into()),
        (Subject::Openid, _) => put("sub", s.openid.as_str().into()),
        // One user across the apps of an Open Platform account: the unionid when WeChat
        // gave one; `sub_type` tells an app which it got, so an openid is never taken
        // for a unionid.
        (Subject::Unionid, Some(u)) => {
            put("sub", u.as_str().into());
            put("sub_type", "unionid".into());
        }
        (Subject::Unionid, None) => {
            put("sub", s.openid.as_str().into());
            put("sub_type", "openid".into());
        }
    }
    put("iat", st.iat.into());
    put("nbf", st.iat.into());
    put("exp", (st.iat + st.ttl).into());
    put("jti", st.jti.into());
    put("sid", st.sid.into());
    // WeCom names its organisation `corpid` and its member `userid` (in its claims):
    // an `openid` or `appid` would pass a userid or a CorpID off as WeChat's.
    if s.idp != crate::session::Idp::Wecom {
        put("appid", s.appid.as_str().into());
        put("openid", s.openid.as_str().into());
        put("scope", s.scope.as_str().into());
    }
    if let Some(u) = unionid {
        put("unionid", u.into());
    }
    // A profile is only claimed when the user consented to share it.
    if s.scope == Scope::UserInfo {
        if let Some(n) = present(&s.nickname) {
            put("nickname", n.as_str().into());
            put("name", n.into());
        }
        if let Some(h) = present(&s.headimgurl) {
            put("headimgurl", h.as_str().into());
            put("picture", h.into());
        }
    }
    // WeChat's own form: 1 follows the account, 0 does not.
    if let Some(subscribed) = extra.subscribe {
        put("subscribe", u8::from(subscribed).into());
    }
    // Another provider than WeChat says so, and adds what its sign-in method found;
    // an extra claim never overrides one of the claims above.
    if !s.idp.is_wechat() {
        c.entry("idp").or_insert_with(|| s.idp.as_str().into());
    }
    for (name, value) in &s.claims {
        c.entry(name.as_str()).or_insert_with(|| value.clone());
    }
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(
        scope: Scope,
        unionid: Option<&str>,
        nick: Option<&str>,
        img: Option<&str>,
    ) -> Session {
        Session {
            id: "session-id".into(),
            appid: "wxappid".into(),
            openid: "o-user".into(),
            unionid: unionid.map(Into::into),
            scope,
            nickname: nick.map(Into::into),
            headimgurl: img.map(Into::into),
            access_token: Some("never a claim".into()),
            refresh_token: Some("never a claim".into()),
            created_at: 1,
            profile_at: 2,
            expires_at: 3,
            ..Session::new("", "", scope)
        }
    }

    #[test]
    fn claims_follow_the_product_table() {
        let stamp = Stamp {
            iss: "https://app.example.com/_wxgate",
            aud: "http://127.0.0.1:3000",
            iat: 1_700_000_000,
            ttl: 300,
            sid: "SID",
            jti: "JTI",
            subject: Subject::Openid,
        };
        let common = json!({
            "iss": "https://app.example.com/_wxgate", "aud": "http://127.0.0.1:3000",
            "sub": "o-user", "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64,
            "exp": 1_700_000_300u64, "jti": "JTI", "sid": "SID", "appid": "wxappid",
            "openid": "o-user",
        });
        let with = |extra: Value| {
            let mut v = common.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let cases = [
            (
                "base scope: no profile even if one is stored",
                session(Scope::Base, None, Some("Nick"), Some("http://img")),
                with(json!({"scope": "snsapi_base"})),
            ),
            (
                "userinfo scope: profile under WeChat and OIDC names",
                session(
                    Scope::UserInfo,
                    Some("u-1"),
                    Some("Nick"),
                    Some("http://img"),
                ),
                with(json!({"scope": "snsapi_userinfo", "unionid": "u-1",
                    "nickname": "Nick", "name": "Nick",
                    "headimgurl": "http://img", "picture": "http://img"})),
            ),
            (
                "absent optionals are omitted, not null",
                session(Scope::UserInfo, None, None, None),
                with(json!({"scope": "snsapi_userinfo"})),
            ),
            (
                "empty strings count as absent",
                session(Scope::UserInfo, Some(""), Some(""), Some("")),
                with(json!({"scope": "snsapi_userinfo"})),
            ),
            (
                "unionid is claimed in base scope too",
                session(Scope::Base, Some("u-1"), None, None),
                with(json!({"scope": "snsapi_base", "unionid": "u-1"})),
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(claims(&s, &stamp, &Extra::default()), want, "{name}");
        }
        let base = session(Scope::Base, None, None, None);
        for (subscribe, want) in [(Some(true), json!(1)), (Some(false), json!(0))] {
            let c = claims(&base, &stamp, &Extra { subscribe });
            assert_eq!(c["subscribe"], want, "subscribe {subscribe:?}");
        }
    }

    #[test]
    fn subject_unionid_makes_sub_the_unionid_when_wechat_gave_one_and_says_which() {
        let stamp = |subject| Stamp {
            iss: "i",
            aud: "a",
            iat: 0,
            ttl: 1,
            sid: "s",
            jti: "j",
            subject,
        };
        let cases = [
            (Subject::Openid, Some("u-1"), "o-user", None),
            (Subject::Openid, None, "o-user", None),
            (Subject::Unionid, Some("u-1"), "u-1", Some("unionid")),
            (Subject::Unionid, None, "o-user", Some("openid")),
            (Subject::Unionid, Some(""), "o-user", Some("openid")),
        ];
        for (subject, unionid, sub, sub_type) in cases {
            let s = session(Scope::Base, unionid, None, None);
            let c = claims(&s, &stamp(subject), &Extra::default());
            let case = format!("{subject:?} with unionid {unionid:?}");
            assert_eq!(c["sub"], json!(sub), "{case}");
            assert_eq!(c["openid"], json!("o-user"), "{case}");
            assert_eq!(
                c.get("sub_type").and_then(Value::as_str),
                sub_type,
                "{case}"
            );
        }
    }

    #[test]
    fn every_claim_made_is_listed_as_supported() {
        let s = session(Scope::UserInfo, Some("u"), Some("n"), Some("h"));
        let stamp = Stamp {
            iss: "i",
            aud: "a",
            iat: 0,
            ttl: 1,
            sid: "s",
            jti: "j",
            subject: Subject::Unionid,
        };
        let c = claims(
            &s,
            &stamp,
            &Extra {
                subscribe: Some(true),
            },
        );
        let made: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        let mut supported = CLAIMS_SUPPORTED.to_vec();
        supported.sort_unstable();
        let mut made_sorted = made.clone();
        made_sorted.sort_unstable();
        assert_eq!(made_sorted, supported);
    }
}
