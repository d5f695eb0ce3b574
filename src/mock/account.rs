//! The account-level `cgi-bin` calls as WeChat answers them, with WeChat's rules for
//! the global access_token:
//!
//! - `GET cgi-bin/token`: a new token at every call; every earlier classic token stops
//!   working `token_overlap` (5 minutes) later (40001 "not latest" after that).
//! - `POST cgi-bin/stable_token`: the same token until its last `token_overlap`, then a
//!   new one (the old one works until it expires); `force_refresh: true` ends the
//!   current one at once, at most `force_daily_quota` (20) a day, and is ignored within
//!   `force_interval` (30 s) of the previous one. Stable and classic tokens are
//!   independent.
//! - daily quotas (45009), the IP whitelist (40164), a wrong secret (40125).
//! - `cgi-bin/ticket/getticket`, `cgi-bin/user/info` and `cgi-bin/getcallbackip` take
//!   the token: 41001 without one, 40001 for an unknown or overwritten one, 42001 for
//!   an expired one.
//!
//! And the JS-SDK's side: `/mock/jweixin.js`, a stand-in for WeChat's jweixin script
//! whose `wx.config` asks `/mock/jssdk/verify` to check the signature against the
//! tickets this mock handed out, as WeChat's client does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::api::{broken, read_body, wechat_json};
use super::wire::{param, parse_query};
use super::{random_token, Fault, MockWechat};
use crate::body::{full, Body};

/// The peer of a request to the mock (for the IP whitelist).
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer(pub SocketAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Classic,
    Stable,
}

#[derive(Debug, Clone)]
struct TokenGrant {
    appid: String,
    family: Family,
    expires_at: Instant,
    /// Ended early: overwritten by a newer classic fetch, or a forced stable one.
    cut_at: Option<Instant>,
}

/// One answer of a token endpoint that handed out a token, for tests to compare with
/// the schedule they expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIssue {
    /// `token` or `stable_token`.
    pub endpoint: &'static str,
    pub at: Instant,
    pub expires_in: u64,
    /// False: a stable token handed out again.
    pub new: bool,
    pub forced: bool,
}

#[derive(Debug, Default)]
pub(super) struct AccountState {
    tokens: HashMap<String, TokenGrant>,
    /// The current stable token per appid.
    stable: HashMap<String, String>,
    last_force: Option<Instant>,
    /// Successful calls per quota since the start (or the last reset).
    used: HashMap<&'static str, u32>,
    tickets: HashMap<String, (String, Instant)>,
    issues: Vec<TokenIssue>,
}

/// Why a token is not accepted, as WeChat's errcode.
fn check_token(state: &AccountState, token: &str, now: Instant) -> Result<String, i64> {
    if token.is_empty() {
        return Err(41001);
    }
    let g = state.tokens.get(token).ok_or(40001)?;
    if g.cut_at.is_some_and(|cut| now >= cut) {
        return Err(40001);
    }
    if now >= g.expires_at {
        return Err(42001);
    }
    Ok(g.appid.clone())
}

/// Whole seconds left, rounded up (a token WeChat says lasts N seconds lasts N).
fn secs_left(until: Instant, now: Instant) -> u64 {
    let ms = until.saturating_duration_since(now).as_millis();
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// WeChat's errmsg for 40164 names the caller's address.
fn ip_error(ip: IpAddr) -> Value {
    let r = random_token(24).to_ascii_lowercase();
    json!({
        "errcode": 40164,
        "errmsg": format!(
            "invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist rid: {}-{}-{}",
            &r[..8], &r[8..16], &r[16..]
        ),
    })
}

impl MockWechat {
    /// Every token the token endpoints handed out, in order.
    pub fn token_issues(&self) -> Vec<TokenIssue> {
        self.state().account.issues.clone()
    }

    /// Whether WeChat would accept `token` now: Ok(appid), or the errcode.
    pub fn token_status(&self, token: &str) -> Result<String, i64> {
        check_token(&self.state().account, token, Instant::now())
    }

    /// Ends every account token now (the next use gets 42001), as time passing would.
    pub fn expire_account_tokens(&self) {
        let now = Instant::now();
        for g in self.state().account.tokens.values_mut() {
            g.expires_at = g.expires_at.min(now);
        }
    }

    /// Starts a new day for the daily quotas.
    pub fn reset_quotas(&self) {
        let mut s = self.state();
        s.account.used.clear();
        s.account.last_force = None;
    }

    /// Counts one use of `quota` if `limit` allows it.
    fn spend(account: &mut AccountState, quota: &'static str, limit: u32) -> Result<(), i64> {
        let used = account.used.entry(quota).or_insert(0);
        if *used >= limit {
            return Err(45009);
        }
        *used += 1;
        Ok(())
    }

    /// appid, secret and caller address, checked as WeChat does for a token fetch.
    fn check_credentials(
        &self,
        appid: &str,
        secret: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Value> {
        let expected = self.secret_of(appid).ok_or_else(|| error(40013))?;
        if secret != expected {
            return Err(error(40125));
        }
        let allowed = &self.inner.config.ip_whitelist;
        match peer {
            Some(ip) if !allowed.is_empty() && !allowed.contains(&ip) => Err(ip_error(ip)),
            _ => Ok(()),
        }
    }

    fn issue(
        &self,
        account: &mut AccountState,
        appid: &str,
        family: Family,
        now: Instant,
    ) -> String {
        let token = random_token(136);
        account.tokens.insert(
            token.clone(),
            TokenGrant {
                appid: appid.into(),
                family,
                expires_at: now + self.inner.config.token_ttl,
                cut_at: None,
            },
        );
        token
    }

    fn classic_token(&self, q: &[(String, String)], peer: Option<IpAddr>) -> Result<Value, Value> {
        let get = |n: &str| param(q, n).unwrap_or("");
        let appid = get("appid");
        self.check_credentials(appid, get("secret"), peer)?;
        if get("grant_type") != "client_credential" {
            return Err(error(40002));
        }
        let c = &self.inner.config;
        let now = Instant::now();
        let mut s = self.state();
        let account = &mut s.account;
        Self::spend(account, "token", c.classic_daily_quota).map_err(error)?;
        // Every earlier classic token of this app ends after the overlap.
        let cut = now + c.token_overlap;
        for g in account.tokens.values_mut() {
            if g.family == Family::Classic && g.appid == appid {
                g.cut_at = Some(g.cut_at.map_or(cut, |c| c.min(cut)));
            }
        }
        let token = self.issue(account, appid, Family::Classic, now);
        let expires_in = c.token_ttl.as_secs();
        account.issues.push(TokenIssue {
            endpoint: "token",
            at: now,
            expires_in,
            new: true,
            forced: false,
        });
        Ok(json!({"access_token": token, "expires_in": expires_in}))
    }

    fn stable_token(&self, body: &str, peer: Option<IpAddr>) -> Result<Value, Value> {
        // POST JSON only, as WeChat says.
        let v: Value = serde_json::from_str(body).map_err(|_| error(47001))?;
        let get = |n: &str| v.get(n).and_then(Value::as_str).unwrap_or("");
        let appid = get("appid");
        self.check_credentials(appid, get("secret"), peer)?;
        if get("grant_type") != "client_credential" {
            return Err(error(40002));
        }
        let force = v
            .get("force_refresh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let c = &self.inner.config;
        let now = Instant::now();
        let mut s = self.state();
        let account = &mut s.account;
        Self::spend(account, "stable_token", c.stable_daily_quota).map_err(error)?;
        let current = account
            .stable
            .get(appid)
            .and_then(|t| Some((t.clone(), account.tokens.get(t)?.clone())))
            .filter(|(_, g)| g.cut_at.is_none() && now < g.expires_at);
        let too_soon = account
            .last_force
            .is_some_and(|at| now.duration_since(at) < c.force_interval);
        let (token, new, forced) = match current {
            // "Consecutive forced calls must be 30 s apart, or nothing is refreshed."
            Some((t, _)) if force && too_soon => (t, false, false),
            Some((t, _)) if force => {
                Self::spend(account, "force_refresh", c.force_daily_quota).map_err(error)?;
                if let Some(g) = account.tokens.get_mut(&t) {
                    g.cut_at = Some(now);
                }
                account.last_force = Some(now);
                (self.issue(account, appid, Family::Stable, now), true, true)
            }
            Some((t, g)) if g.expires_at.saturating_duration_since(now) > c.token_overlap => {
                (t, false, false)
            }
            // In its last five minutes (or none yet): a new one; the old one keeps working
            // until it expires.
            _ => (self.issue(account, appid, Family::Stable, now), true, false),
        };
        account.stable.insert(appid.to_string(), token.clone());
        let expires_at = account.tokens.get(&token).map_or(now, |g| g.expires_at);
        let expires_in = secs_left(expires_at, now);
        account.issues.push(TokenIssue {
            endpoint: "stable_token",
            at: now,
            expires_in,
            new,
            forced,
        });
        Ok(json!({"access_token": token, "expires_in": expires_in}))
    }

    fn getticket(&self, q: &[(String, String)]) -> Result<Value, Value> {
        let now = Instant::now();
        let c = &self.inner.config;
        let mut s = self.state();
        let account = &mut s.account;
        let appid =
            check_token(account, param(q, "access_token").unwrap_or(""), now).map_err(error)?;
        if !matches!(param(q, "type"), Some("jsapi" | "wx_card")) {
            return Err(error(40097));
        }
        Self::spend(account, "getticket", c.ticket_daily_quota).map_err(error)?;
        let ticket = random_token(86);
        account
            .tickets
            .insert(ticket.clone(), (appid, now + c.ticket_ttl));
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "ticket": ticket,
            "expires_in": c.ticket_ttl.as_secs(),
        }))
    }

    fn user_info(&self, q: &[(String, String)]) -> Result<Value, Value> {
        let appid = check_token(
            &self.state().account,
            param(q, "access_token").unwrap_or(""),
            Instant::now(),
        )
        .map_err(error)?;
        let openid = param(q, "openid").unwrap_or("");
        let user = self
            .inner
            .config
            .users
            .iter()
            .find(|u| !u.snapshot && self.openid(&u.key, &appid) == openid)
            .ok_or_else(|| error(40003))?;
        let mut v = if user.subscribed {
            json!({
                "subscribe": 1,
                "openid": openid,
                "language": param(q, "lang").unwrap_or("zh_CN"),
                "subscribe_time": 1_700_000_000,
                "remark": "",
                "groupid": 0,
                "tagid_list": [],
                "subscribe_scene": "ADD_SCENE_QR_CODE",
                "qr_scene": 0,
                "qr_scene_str": "",
            })
        } else {
            json!({"subscribe": 0, "openid": openid})
        };
        if let Some(u) = self.unionid(&user.key) {
            v["unionid"] = json!(u);
        }
        Ok(v)
    }

    fn callback_ip(&self, q: &[(String, String)]) -> Result<Value, Value> {
        check_token(
            &self.state().account,
            param(q, "access_token").unwrap_or(""),
            Instant::now(),
        )
        .map_err(error)?;
        Ok(json!({"ip_list": ["127.0.0.1"]}))
    }

    /// What WeChat's client says to a `wx.config` with these fields for a page at `url`.
    pub fn check_jssdk_config(
        &self,
        app_id: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
        url: &str,
    ) -> Result<(), &'static str> {
        let c = &self.inner.config;
        if app_id != c.appid {
            return Err("config:invalid appid");
        }
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', '?', '#']).next())
            .map(|a| a.split(':').next().unwrap_or(a).to_ascii_lowercase())
            .unwrap_or_default();
        if !c.js_safe_domains.is_empty() && !c.js_safe_domains.contains(&host) {
            return Err("config:invalid url domain");
        }
        let now = Instant::now();
        let s = self.state();
        let good = s.account.tickets.iter().any(|(ticket, (appid, until))| {
            appid == app_id && now < *until && sign(ticket, nonce, timestamp, url) == signature
        });
        if good {
            Ok(())
        } else {
            Err("config:invalid signature")
        }
    }
}

/// The JS-SDK signature, computed here on its own so the mock checks wxgate's rather
/// than sharing its code.
fn sign(ticket: &str, nonce: &str, timestamp: &str, url: &str) -> String {
    let text = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}");
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect()
}

fn error(errcode: i64) -> Value {
    super::api::error_body(errcode)
}

/// `cgi-bin/*` on the mock: `endpoint` is the knob and counter name.
pub(super) async fn handle(
    mock: MockWechat,
    req: Request<Incoming>,
    endpoint: &'static str,
) -> Response<Body> {
    match mock.enter(endpoint).await {
        Some(Fault::Broken(b)) => return broken(b),
        Some(Fault::Errcode(40164)) => {
            let ip = req
                .extensions()
                .get::<Peer>()
                .map_or(IpAddr::from([127, 0, 0, 1]), |p| p.0.ip());
            return wechat_json(&ip_error(ip));
        }
        Some(Fault::Errcode(code)) => return wechat_json(&error(code)),
        None => {}
    }
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let query = parse_query(req.uri().query().unwrap_or(""));
    let post = req.method() == Method::POST;
    let result = match (endpoint, post) {
        ("stable_token", true) => {
            let body = read_body(req).await.unwrap_or_default();
            mock.stable_token(&body, peer)
        }
        // stable_token takes POST JSON only; the others GET only.
        ("stable_token", false) => Err(error(43002)),
        (_, true) => Err(error(43001)),
        ("token", false) => mock.classic_token(&query, peer),
        ("getticket", false) => mock.getticket(&query),
        ("user_info", false) => mock.user_info(&query),
        _ => mock.callback_ip(&query),
    };
    wechat_json(&result.unwrap_or_else(|e| e))
}

/// `POST /mock/jssdk/verify` (form: appId, timestamp, nonceStr, signature, url), asked
/// by `/mock/jweixin.js` from the page's origin: CORS-open.
pub(super) async fn verify(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    let _ = mock.enter("jssdk_verify").await;
    let form = parse_query(&read_body(req).await.unwrap_or_default());
    let get = |n: &str| param(&form, n).unwrap_or("");
    let outcome = mock.check_jssdk_config(
        get("appId"),
        get("timestamp"),
        get("nonceStr"),
        get("signature"),
        get("url"),
    );
    let body = match outcome {
        Ok(()) => json!({"ok": true, "errMsg": "config:ok"}),
        Err(m) => json!({"ok": false, "errMsg": m}),
    };
    cors(json_reply(body.to_string()))
}

/// `GET /mock/jweixin.js`.
pub(super) fn script() -> Response<Body> {
    let mut r = Response::new(full(JWEIXIN));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    cors(r)
}

fn json_reply(body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn cors(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// A stand-in for WeChat's jweixin: `wx.config` has the signature checked by the mock
/// for the URL WeChat's client would use (on iOS the one the page was loaded at, else
/// the current one), then calls the `wx.ready` or `wx.error` callbacks.
const JWEIXIN: &str = include_str!("jweixin.js");

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_are_judged_like_wechat_does() {
        let now = Instant::now();
        let mut s = AccountState::default();
        let grant = |cut: Option<Instant>, expires_at: Instant| TokenGrant {
            appid: "wx1".into(),
            family: Family::Classic,
            expires_at,
            cut_at: cut,
        };
        let later = now + Duration::from_secs(60);
        s.tokens.insert("good".into(), grant(None, later));
        s.tokens
            .insert("overwritten".into(), grant(Some(now), later));
        s.tokens.insert("overlap".into(), grant(Some(later), later));
        s.tokens.insert("expired".into(), grant(None, now));
        let cases = [
            ("", Err(41001)),
            ("unknown", Err(40001)),
            ("good", Ok("wx1".to_string())),
            ("overwritten", Err(40001)),
            ("overlap", Ok("wx1".to_string())),
            ("expired", Err(42001)),
        ];
        for (token, want) in cases {
            assert_eq!(check_token(&s, token, now), want, "{token:?}");
        }
    }

    #[test]
    fn expires_in_rounds_up_to_whole_seconds() {
        let now = Instant::now();
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(1000), 1),
            (Duration::from_millis(7_199_001), 7200),
        ];
        for (left, want) in cases {
            assert_eq!(secs_left(now + left, now), want, "{left:?}");
        }
    }

    #[test]
    fn the_mock_signs_like_wechats_documented_example() {
        assert_eq!(
            sign(
                "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
                "Wm3WZYTPz0wzccnW",
                "1414587457",
                "http://mp.weixin.qq.com?params=value"
            ),
            "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
        );
    }
}
