//! `[wecom]`: signing an organisation's members in with WeCom (企业微信) instead of an
//! official account. The file's section is `file::WecomConfig`; its check and the
//! checked [`WecomConfig`] live here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::{file, parse_http_url, push, resolve_secret, DesktopMode, Dur, Env, Problem};

/// What the app asks WeCom for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum WecomScope {
    /// The member's userid only, silently.
    #[serde(rename = "snsapi_base")]
    Base,
    /// Also the member's private details (avatar, mobile, email), with their consent.
    #[serde(rename = "snsapi_privateinfo")]
    PrivateInfo,
}

impl WecomScope {
    pub fn as_str(self) -> &'static str {
        match self {
            WecomScope::Base => "snsapi_base",
            WecomScope::PrivateInfo => "snsapi_privateinfo",
        }
    }
}

impl fmt::Display for WecomScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[wecom]`, checked: the secret resolved (environment, file or inline).
#[derive(Clone)]
pub struct WecomConfig {
    /// The organisation's CorpID ("ww..."), the `appid` of WeCom's links.
    pub corp_id: String,
    /// The self-built app's AgentId (digits).
    pub agent_id: String,
    /// The app's Secret.
    pub secret: String,
    pub scope: WecomScope,
    /// Visitors WeCom does not know as members of this organisation (they come back
    /// with an openid instead of a userid) get a page rather than a session.
    pub members_only: bool,
    /// Department ids a member must be in (directly); empty: every member.
    pub allowed_departments: Vec<u64>,
    pub authorize_url: String,
    pub sso_url: String,
    /// Without a trailing slash.
    pub api_base_url: String,
    /// Per-call timeout for WeCom's API.
    pub timeout: Dur,
    /// WeCom's trusted-domain check files (`WW_verify_*.txt`), served at the root.
    pub verify_files: BTreeMap<String, String>,
}

impl Default for WecomConfig {
    fn default() -> Self {
        let raw = file::WecomConfig::default();
        Self {
            corp_id: raw.corp_id,
            agent_id: raw.agent_id,
            secret: raw.secret,
            scope: raw.scope,
            members_only: raw.members_only,
            allowed_departments: raw.allowed_departments,
            authorize_url: raw.authorize_url,
            sso_url: raw.sso_url,
            api_base_url: raw.api_base_url,
            timeout: raw.timeout,
            verify_files: raw.verify_files,
        }
    }
}

// The secret is a credential: never printed, not even by `{:?}`.
impl fmt::Debug for WecomConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WecomConfig")
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("scope", &self.scope)
            .field("members_only", &self.members_only)
            .field("allowed_departments", &self.allowed_departments)
            .field("authorize_url", &self.authorize_url)
            .field("sso_url", &self.sso_url)
            .field("api_base_url", &self.api_base_url)
            .field("timeout", &self.timeout)
            .field("verify_files", &self.verify_files)
            .finish()
    }
}

/// An AgentId as WeCom's console shows it: a TOML integer or string is taken alike.
pub(super) fn agent_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::Number(n) => n.to_string(),
        Either::Text(s) => s,
    })
}

/// WeCom's trusted-domain check file: `WW_verify_` + letters and digits + `.txt`.
pub fn is_verify_file_name(name: &str) -> bool {
    name.strip_prefix("WW_verify_")
        .and_then(|r| r.strip_suffix(".txt"))
        .is_some_and(|mid| !mid.is_empty() && mid.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A CorpID as WeCom hands them out: "ww" or "wx" and letters and digits.
fn corp_id_ok(s: &str) -> bool {
    (6..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `[wecom]`, checked, with the sections it stands instead of: every problem to `p`;
/// the checked section when the secret could be had.
pub(super) fn check(
    raw: &file::WecomConfig,
    whole: &file::Config,
    base: &Path,
    env: &dyn Env,
    p: &mut Vec<Problem>,
) -> Option<WecomConfig> {
    if raw.corp_id.is_empty() {
        push(
            p,
            "wecom.corp_id",
            "is required (the organisation's CorpID, \"ww...\", under My Company in WeCom's admin console)",
        );
    } else if !corp_id_ok(&raw.corp_id) {
        push(
            p,
            "wecom.corp_id",
            format!("{:?} does not look like a CorpID", raw.corp_id),
        );
    }
    if raw.agent_id.is_empty() {
        push(
            p,
            "wecom.agent_id",
            "is required (the self-built app's AgentId, e.g. \"1000002\")",
        );
    } else if raw.agent_id.len() > 10 || !raw.agent_id.bytes().all(|b| b.is_ascii_digit()) {
        push(
            p,
            "wecom.agent_id",
            format!(
                "{:?}: an AgentId is a number like \"1000002\"",
                raw.agent_id
            ),
        );
    }
    let secret = match resolve_secret(
        &raw.secret,
        raw.secret_file.as_deref(),
        "WXGATE_WECOM_SECRET",
        base,
        env,
    ) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            push(
                p,
                "wecom.secret",
                "is required (or wecom.secret_file, or env WXGATE_WECOM_SECRET): the app's Secret",
            );
            None
        }
        Err(m) => {
            push(p, "wecom.secret_file", m);
            None
        }
    };
    for (key, url) in [
        ("wecom.authorize_url", &raw.authorize_url),
        ("wecom.sso_url", &raw.sso_url),
        ("wecom.api_base_url", &raw.api_base_url),
    ] {
        if let Err(m) = parse_http_url(url) {
            push(p, key, m);
        }
    }
    if raw.timeout.get().is_zero() {
        push(p, "wecom.timeout", "must be more than 0s");
    }
    for name in raw.verify_files.keys() {
        if !is_verify_file_name(name) {
            push(
                p,
                "wecom.verify_files",
                format!("{name:?}: WeCom's file names look like \"WW_verify_abc123.txt\""),
            );
        }
    }
    if !whole.wechat.appid.is_empty() {
        push(p, "wecom", "[wecom] stands instead of [wechat]: remove the [wechat] section (one wxgate signs in with one of them)");
    }
    if whole.account.is_some() {
        push(
            p,
            "account",
            "the account services are an official account's: they need [wechat], not [wecom]",
        );
    }
    if whole.desktop.mode == DesktopMode::Qrconnect {
        push(p, "desktop.mode", "\"qrconnect\" is WeChat's website login: with [wecom], computers get WeCom's web-login QR (\"qr\") or a page (\"off\")");
    }
    Some(WecomConfig {
        corp_id: raw.corp_id.clone(),
        agent_id: raw.agent_id.clone(),
        secret: secret?,
        scope: raw.scope,
        members_only: raw.members_only,
        allowed_departments: raw.allowed_departments.clone(),
        authorize_url: raw.authorize_url.clone(),
        sso_url: raw.sso_url.clone(),
        api_base_url: raw.api_base_url.trim_end_matches('/').to_string(),
        timeout: raw.timeout,
        verify_files: raw.verify_files.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{from_toml, Config};
    use super::*;
    use std::collections::BTreeMap;

    const WECOM: &str = r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:3000"
[wecom]
corp_id = "ww0000000000000000"
agent_id = "1000002"
secret = "corp-secret"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_toml(text, Path::new("."), &env).map_err(|e| e.problems())
    }

    #[test]
    fn a_wecom_section_stands_instead_of_wechat_with_the_documented_defaults() {
        let c = load(WECOM, &[]).unwrap();
        let w = c.wecom.as_ref().unwrap();
        assert_eq!(w.corp_id, "ww0000000000000000");
        assert_eq!(w.agent_id, "1000002");
        assert_eq!(w.secret, "corp-secret");
        assert_eq!(w.scope, WecomScope::Base);
        assert!(w.members_only);
        assert!(w.allowed_departments.is_empty());
        assert_eq!(
            w.authorize_url,
            "https://open.weixin.qq.com/connect/oauth2/authorize"
        );
        assert_eq!(
            w.sso_url,
            "https://login.work.weixin.qq.com/wwlogin/sso/login"
        );
        assert_eq!(w.api_base_url, "https://qyapi.weixin.qq.com");
        assert!(c.summary().contains("wecom"), "{}", c.summary());
    }

    #[test]
    fn the_secret_comes_from_the_environment_first() {
        let c = load(WECOM, &[("WXGATE_WECOM_SECRET", "from-env")]).unwrap();
        assert_eq!(c.wecom.unwrap().secret, "from-env");
        let shown = format!("{:?}", load(WECOM, &[]).unwrap().wecom.unwrap());
        assert!(!shown.contains("corp-secret"), "{shown}");
    }

    #[test]
    fn an_agent_id_may_be_written_as_a_number() {
        let c = load(&WECOM.replace("\"1000002\"", "1000002"), &[]).unwrap();
        assert_eq!(c.wecom.unwrap().agent_id, "1000002");
    }

    #[test]
    fn each_bad_key_is_named() {
        let text = r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:3000"
[wecom]
corp_id = "ww-not valid"
agent_id = "10x"
sso_url = "ftp://x"
verify_files = { "MP_verify_a.txt" = "a" }
"#;
        let p = load(text, &[]).unwrap_err().join("\n");
        for key in [
            "wecom.corp_id:",
            "wecom.agent_id:",
            "wecom.secret:",
            "wecom.sso_url:",
            "wecom.verify_files:",
        ] {
            assert!(p.contains(key), "missing {key} in:\n{p}");
        }
        assert!(!p.contains("wechat."), "[wechat] is not required: {p}");
        let p = load(&format!("{WECOM}scope = \"snsapi_userinfo\"\n"), &[]).unwrap_err();
        assert!(p[0].starts_with("wecom.scope"), "{p:?}");
        let p = load(&format!("{WECOM}allowed_departments = [\"x\"]\n"), &[]).unwrap_err();
        assert!(p[0].starts_with("wecom.allowed_departments"), "{p:?}");
    }

    #[test]
    fn wecom_and_wechat_are_one_or_the_other() {
        let both = format!("{WECOM}[wechat]\nappid = \"wx0000000000000000\"\nsecret = \"s\"\n");
        let p = load(&both, &[]).unwrap_err().join("\n");
        assert!(p.contains("wecom:") && p.contains("[wechat]"), "{p}");
        let account = format!("{WECOM}[account]\n");
        let p = load(&account, &[]).unwrap_err().join("\n");
        assert!(p.contains("account:"), "{p}");
        let qrconnect = format!("{WECOM}[desktop]\nmode = \"qrconnect\"\n");
        let p = load(&qrconnect, &[]).unwrap_err().join("\n");
        assert!(p.contains("desktop.mode:"), "{p}");
    }
}
