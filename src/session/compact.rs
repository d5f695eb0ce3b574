//! The compact text form of a session, shared by the memory store (kept per entry)
//! and the cookie store (the ticket itself): one-letter field names, the scope as a
//! digit, absent fields omitted.

use serde::{Deserialize, Serialize};

use super::{ExtraClaims, Idp, Session};
use crate::config::Scope;

#[derive(Serialize, Deserialize)]
struct Compact {
    #[serde(rename = "i", default, skip_serializing_if = "String::is_empty")]
    id: String,
    #[serde(rename = "a")]
    appid: String,
    #[serde(rename = "o")]
    openid: String,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    /// 0 = snsapi_base, 1 = snsapi_userinfo.
    #[serde(rename = "s")]
    scope: u8,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    nickname: Option<String>,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    headimgurl: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(rename = "c")]
    created_at: u64,
    #[serde(rename = "p")]
    profile_at: u64,
    #[serde(rename = "e")]
    expires_at: u64,
    /// Absent (WeChat) in sessions written before other providers existed.
    #[serde(rename = "d", default, skip_serializing_if = "Idp::is_wechat")]
    idp: Idp,
    #[serde(rename = "x", default, skip_serializing_if = "ExtraClaims::is_empty")]
    claims: ExtraClaims,
}

/// `with_id: false` leaves the id out, for stores that key entries by it anyway.
pub(crate) fn encode(s: &Session, with_id: bool) -> String {
    let c = Compact {
        id: if with_id { s.id.clone() } else { String::new() },
        appid: s.appid.clone(),
        openid: s.openid.clone(),
        unionid: s.unionid.clone(),
        scope: match s.scope {
            Scope::Base => 0,
            Scope::UserInfo => 1,
        },
        nickname: s.nickname.clone(),
        headimgurl: s.headimgurl.clone(),
        access_token: s.access_token.clone(),
        refresh_token: s.refresh_token.clone(),
        created_at: s.created_at,
        profile_at: s.profile_at,
        expires_at: s.expires_at,
        idp: s.idp,
        claims: s.claims.clone(),
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&c).unwrap_or_default()
}

/// `id` replaces the encoded id when the store keeps it elsewhere.
pub(crate) fn decode(data: &str, id: Option<&str>) -> Option<Session> {
    let c: Compact = serde_json::from_str(data).ok()?;
    Some(Session {
        id: id.map(str::to_owned).unwrap_or(c.id),
        appid: c.appid,
        openid: c.openid,
        unionid: c.unionid,
        scope: match c.scope {
            0 => Scope::Base,
            1 => Scope::UserInfo,
            _ => return None,
        },
        nickname: c.nickname,
        headimgurl: c.headimgurl,
        access_token: c.access_token,
        refresh_token: c.refresh_token,
        created_at: c.created_at,
        profile_at: c.profile_at,
        expires_at: c.expires_at,
        idp: c.idp,
        claims: c.claims,
    })
}

/// Whether `touch` must write `new` over `old`: any change but the expiry, or an
/// expiry moved by a minute or more. Keeps a busy session from writing on every request.
pub(crate) fn needs_write(old: &Session, new: &Session) -> bool {
    let mut same_but_expiry = old.clone();
    same_but_expiry.expires_at = new.expires_at;
    same_but_expiry != *new || old.expires_at.abs_diff(new.expires_at) >= 60
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A realistic snsapi_base session (WeChat tokens are ~110 characters).
    pub(crate) fn base_session() -> Session {
        Session {
            id: crate::session::new_session_id(),
            appid: "wx1234567890abcdef".into(),
            openid: "oLVPpjqs9BhvzwPj5A-vTYAX3GLc".into(),
            unionid: None,
            scope: Scope::Base,
            nickname: None,
            headimgurl: None,
            access_token: Some("A".repeat(110)),
            refresh_token: Some("R".repeat(110)),
            created_at: 1_700_000_000,
            profile_at: 1_700_000_000,
            expires_at: 1_700_604_800,
            idp: Idp::Wechat,
            claims: ExtraClaims::new(),
        }
    }

    #[test]
    fn a_session_stored_before_idp_and_claims_still_decodes() {
        // Exactly what a store held before sessions named their provider.
        let old = r#"{"i":"sid1","a":"wx1234567890abcdef","o":"oLVPpjqs9BhvzwPj5A-vTYAX3GLc","s":1,"n":"小明","c":1700000000,"p":1700000000,"e":1700604800}"#;
        let s = decode(old, None).expect("an old session decodes");
        assert_eq!(s.idp, Idp::Wechat);
        assert!(s.claims.is_empty());
        assert_eq!(s.id, "sid1");
        assert_eq!(s.openid, "oLVPpjqs9BhvzwPj5A-vTYAX3GLc");
        assert_eq!(s.scope, Scope::UserInfo);
        assert_eq!(s.nickname.as_deref(), Some("小明"));
        // And a WeChat session is still written the old way, byte for byte.
        assert_eq!(encode(&s, true), old);
        // The serde form (desktop tickets keep whole sessions) decodes too.
        let full = r#"{"id":"x","appid":"wx1","openid":"o1","scope":"snsapi_base","created_at":1,"profile_at":1,"expires_at":2}"#;
        let s: Session = serde_json::from_str(full).expect("an old ticket's session decodes");
        assert_eq!(s.idp, Idp::Wechat);
        assert!(s.claims.is_empty());
    }

    #[test]
    fn a_session_from_another_provider_keeps_its_claims() {
        let mut s = base_session();
        s.idp = Idp::Wecom;
        s.claims
            .insert("corpid".into(), serde_json::Value::from("ww123"));
        s.claims
            .insert("department".into(), serde_json::json!([1, 2]));
        assert_eq!(decode(&encode(&s, true), None), Some(s));
    }

    #[test]
    fn a_session_survives_encoding_with_or_without_its_id() {
        let mut s = base_session();
        s.scope = Scope::UserInfo;
        s.nickname = Some("小明 \"quoted\" 🌸".into());
        s.unionid = Some("o6_bmasdasdsad6_2sgVt7hMZOPfL".into());
        assert_eq!(decode(&encode(&s, true), None), Some(s.clone()));
        let without = encode(&s, false);
        assert!(!without.contains(&s.id));
        assert_eq!(decode(&without, Some(&s.id)), Some(s));
    }

    #[test]
    fn garbage_and_unknown_scopes_do_not_decode() {
        let mut scope_2 = encode(&base_session(), true);
        scope_2 = scope_2.replace("\"s\":0", "\"s\":2");
        for data in ["", "{", "null", "{\"a\":1}", scope_2.as_str()] {
            assert_eq!(decode(data, None), None, "{data:?}");
        }
    }

    #[test]
    fn touch_writes_only_changes_or_expiry_moves_of_a_minute() {
        let old = base_session();
        type Change = fn(&mut Session);
        let table: &[(&str, Change, bool)] = &[
            ("unchanged", |_| {}, false),
            ("expiry +59s", |s| s.expires_at += 59, false),
            ("expiry +60s", |s| s.expires_at += 60, true),
            ("expiry -60s", |s| s.expires_at -= 60, true),
            ("new nickname", |s| s.nickname = Some("n".into()), true),
            (
                "new profile_at, expiry +1s",
                |s| {
                    s.profile_at += 1;
                    s.expires_at += 1
                },
                true,
            ),
        ];
        for (name, change, want) in table {
            let mut new = old.clone();
            change(&mut new);
            assert_eq!(needs_write(&old, &new), *want, "{name}");
        }
    }
}
