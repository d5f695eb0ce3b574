//! The mock's WeCom (企业微信): an organisation with departments, members and a few
//! outsiders; the in-app OAuth page (with `agentid`), the web-login QR page
//! (`login_type=CorpApp`) with a simulated scan; and the four API calls a sign-in
//! makes, with WeCom's wire habits:
//!
//! - HTTP 200 and `application/json` for everything, errors included, as
//!   `{"errcode":N,"errmsg":"..., hint: [id], from ip: IP, more info at URL"}`;
//! - `gettoken` hands out the same token until it expires (no overwriting);
//! - a code is single-use and lives five minutes; used or expired it is 40029;
//! - `getuserinfo` answers `userid` (+ `user_ticket` with snsapi_privateinfo, for a
//!   member in the app's visible range) or, for a non-member, `openid` (+
//!   `external_userid` for a customer contact);
//! - `user/get` returns name and departments but, as for apps created after
//!   2022-06-20, no avatar, mobile or email: those come from `getuserdetail` only;
//! - a trusted domain (50001 on the pages) and a trusted IP list (60020 on the API).
//!
//! Knobs over HTTP (besides `/mock/inject` etc. with the endpoints `wecom_authorize`,
//! `wecom_sso`, `wecom_gettoken`, `wecom_getuserinfo`, `wecom_user_get`,
//! `wecom_getuserdetail`):
//!
//! | request | effect |
//! |---|---|
//! | `POST /mock/wecom/as?user=U` | the WeCom app is signed in as U (a userid or an outsider's key) |
//! | `POST /mock/wecom/scan?key=K&user=U` | the phone scans web-login K as U and confirms |
//! | `POST /mock/wecom/expire_tokens` | every corp token is now expired (42001) |
//! | `GET /mock/wecom/users` | the organisation: departments, members, outsiders (JSON) |

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::account::Peer;
use super::api::{broken, read_body};
use super::wire::{callback_location, derive_id, html_escape, location_value, param, parse_query};
use super::{random_token, Fault, MockWechat};
use crate::body::{full, Body};
use crate::wechat::is_valid_state;

/// A code from either page lives five minutes.
pub const WECOM_CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// A user_ticket lives 30 minutes.
pub const USER_TICKET_TTL: Duration = Duration::from_secs(30 * 60);
/// A web-login QR code is good this long.
pub const SSO_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockDepartment {
    pub id: u64,
    pub name: String,
    /// 0 for the root.
    pub parent: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockMember {
    pub userid: String,
    pub name: String,
    pub department: Vec<u64>,
    /// In the app's visible range (可见范围): outside it `user/get` says 60011 and no
    /// user_ticket is handed out.
    pub in_range: bool,
    pub mobile: String,
    pub email: String,
    pub gender: String,
}

impl MockMember {
    pub fn new(userid: &str, name: &str, department: &[u64]) -> Self {
        Self {
            userid: userid.into(),
            name: name.into(),
            department: department.to_vec(),
            in_range: true,
            mobile: String::new(),
            email: String::new(),
            gender: "0".into(),
        }
    }
}

/// Someone WeCom knows who is not a member: another organisation's member, or a
/// WeChat user. Their openid derives from (corp_id, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOutsider {
    pub key: String,
    pub name: String,
    /// A customer contact of the organisation: `getuserinfo` adds `external_userid`.
    pub contact: bool,
}

#[derive(Debug, Clone)]
pub struct WecomMockConfig {
    pub corp_id: String,
    pub agent_id: String,
    /// The app's Secret.
    pub secret: String,
    /// The app's trusted domains (可信域名), exact hosts; empty: any.
    pub trusted_domains: Vec<String>,
    /// The app's trusted IPs (企业可信IP); empty: any.
    pub trusted_ips: Vec<IpAddr>,
    pub departments: Vec<MockDepartment>,
    pub members: Vec<MockMember>,
    pub outsiders: Vec<MockOutsider>,
    /// Lifetime of a corp access_token (WeCom: 7200 s).
    pub token_ttl: Duration,
}

impl Default for WecomMockConfig {
    fn default() -> Self {
        let dep = |id, name: &str, parent| MockDepartment {
            id,
            name: name.into(),
            parent,
        };
        let mut zhangsan = MockMember::new("zhangsan", "张三", &[1, 2]);
        zhangsan.mobile = "13800000001".into();
        zhangsan.email = "zhangsan@corp.example".into();
        zhangsan.gender = "1".into();
        let mut wangwu = MockMember::new("wangwu", "王五", &[2]);
        wangwu.in_range = false;
        Self {
            corp_id: "wwmock0000000001".into(),
            agent_id: "1000002".into(),
            secret: "mockcorpsecret000000000000000001".into(),
            trusted_domains: Vec::new(),
            trusted_ips: Vec::new(),
            departments: vec![
                dep(1, "总部 · Headquarters", 0),
                dep(2, "研发部 · R&D", 1),
                dep(3, "销售部 · Sales", 1),
            ],
            members: vec![zhangsan, MockMember::new("lisi", "李四", &[3]), wangwu],
            outsiders: vec![MockOutsider {
                key: "guest".into(),
                name: "访客 Guest".into(),
                contact: true,
            }],
            token_ttl: Duration::from_secs(7200),
        }
    }
}

#[derive(Debug, Clone)]
struct WecomCode {
    /// A member's userid or an outsider's key.
    who: String,
    scope: String,
    expires_at: Instant,
    used: bool,
}

#[derive(Debug, Clone)]
struct SsoLogin {
    redirect_uri: String,
    state: String,
    expires_at: Instant,
    /// Where the page goes once the phone confirmed: the callback with its code.
    confirmed: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct WecomState {
    codes: HashMap<String, WecomCode>,
    /// The current corp token and when it expires.
    token: Option<(String, Instant)>,
    /// Tokens handed out earlier, still good until they expire.
    tokens: HashMap<String, Instant>,
    tickets: HashMap<String, (String, Instant)>,
    sso: HashMap<String, SsoLogin>,
    /// Whom the WeCom app is signed in as (None: the first member).
    signed_in_as: Option<String>,
}

/// WeCom's words for the codes the mock answers with.
fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system busy",
        40001 => "invalid credential",
        40013 => "invalid corpid",
        40014 => "invalid access_token",
        40029 => "invalid code",
        40056 => "invalid agentid",
        40129 => "invalid user_ticket",
        41001 => "access_token missing",
        41008 => "missing code",
        42001 => "access_token expired",
        43002 => "require POST method",
        45009 => "api freq out of limit",
        47001 => "data format error",
        50001 => "redirect_url not trusted",
        60011 => "no privilege to access/modify contact/party/agent",
        60020 => "not allow to access from your ip",
        60111 => "userid not found",
        _ => "mock error",
    }
}

/// An error as WeCom writes it, with its request id and the caller's address.
fn error_body(errcode: i64, ip: Option<IpAddr>) -> Value {
    let r = random_token(16).to_ascii_lowercase();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ip = ip.map_or_else(|| "127.0.0.1".to_string(), |i| i.to_string());
    json!({
        "errcode": errcode,
        "errmsg": format!(
            "{}, hint: [{secs}_{}_{r}], from ip: {ip}, more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}",
            errmsg(errcode),
            errcode.unsigned_abs() % 100,
        ),
    })
}

/// Every answer: HTTP 200, JSON, errors included.
fn wecom_json(value: &Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

fn ok(mut v: Value) -> Value {
    v["errcode"] = json!(0);
    v["errmsg"] = json!("ok");
    v
}

impl MockWechat {
    fn wecom(&self) -> &WecomMockConfig {
        &self.inner.config.wecom
    }

    fn member(&self, userid: &str) -> Option<&MockMember> {
        self.wecom().members.iter().find(|m| m.userid == userid)
    }

    fn outsider(&self, key: &str) -> Option<&MockOutsider> {
        self.wecom().outsiders.iter().find(|o| o.key == key)
    }

    /// The openid WeCom gives an outsider of this organisation.
    pub fn wecom_openid(&self, key: &str) -> String {
        derive_id("wecom-openid", &[&self.wecom().corp_id, key])
    }

    /// The external_userid of an outsider who is a customer contact.
    pub fn wecom_external_userid(&self, key: &str) -> Option<String> {
        self.outsider(key)
            .filter(|o| o.contact)
            .map(|o| format!("wm{}", &derive_id("wecom-external", &[&o.key])[1..]))
    }

    /// The WeCom app is signed in as `user` (a userid or an outsider's key) from now on.
    pub fn wecom_sign_in_as(&self, user: &str) {
        self.state().wecom.signed_in_as = Some(user.to_string());
    }

    fn wecom_current_user(&self) -> Option<String> {
        let chosen = self.state().wecom.signed_in_as.clone();
        chosen.or_else(|| self.wecom().members.first().map(|m| m.userid.clone()))
    }

    /// Ages every corp token past its lifetime (the next call with one gets 42001).
    pub fn expire_wecom_tokens(&self) {
        let now = Instant::now();
        let mut s = self.state();
        if let Some((_, at)) = &mut s.wecom.token {
            *at = now;
        }
        for at in s.wecom.tokens.values_mut() {
            *at = now;
        }
    }

    /// A code as if `who` had just authorized on either WeCom page.
    pub fn issue_wecom_code(&self, who: &str, scope: &str) -> String {
        let code = random_token(32);
        self.state().wecom.codes.insert(
            code.clone(),
            WecomCode {
                who: who.into(),
                scope: scope.into(),
                expires_at: Instant::now() + WECOM_CODE_TTL,
                used: false,
            },
        );
        code
    }

    /// The phone scans web-login `key` as `who` and confirms; the page then moves on
    /// to the callback. False when there is no such login waiting.
    pub fn wecom_scan(&self, key: &str, who: &str) -> bool {
        if self.member(who).is_none() && self.outsider(who).is_none() {
            return false;
        }
        let login = {
            let s = self.state();
            match s.wecom.sso.get(key) {
                Some(l) if l.confirmed.is_none() && Instant::now() < l.expires_at => l.clone(),
                _ => return false,
            }
        };
        let code = self.issue_wecom_code(who, "snsapi_base");
        let location = callback_location(&login.redirect_uri, Some(&code), &login.state);
        if let Some(l) = self.state().wecom.sso.get_mut(key) {
            l.confirmed = Some(location);
        }
        true
    }

    /// The keys of the web-login pages shown and not yet scanned (for tests that play
    /// the phone without reading the page).
    pub fn wecom_pending_logins(&self) -> Vec<String> {
        let s = self.state();
        s.wecom
            .sso
            .iter()
            .filter(|(_, l)| l.confirmed.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn token_ok(&self, token: &str) -> Result<(), i64> {
        if token.is_empty() {
            return Err(41001);
        }
        let s = self.state();
        let expires = match &s.wecom.token {
            Some((t, at)) if t == token => Some(*at),
            _ => s.wecom.tokens.get(token).copied(),
        };
        match expires {
            None => Err(40014),
            Some(at) if Instant::now() >= at => Err(42001),
            Some(_) => Ok(()),
        }
    }

    fn wecom_gettoken(&self, corpid: &str, secret: &str) -> Result<Value, i64> {
        let c = self.wecom();
        if corpid != c.corp_id {
            return Err(40013);
        }
        if secret != c.secret {
            return Err(40001);
        }
        let now = Instant::now();
        let mut s = self.state();
        // Within its lifetime the same token comes back.
        if let Some((t, at)) = &s.wecom.token {
            if now < *at {
                return Ok(ok(json!({
                    "access_token": t,
                    "expires_in": at.duration_since(now).as_secs(),
                })));
            }
        }
        let token = random_token(64);
        let at = now + c.token_ttl;
        if let Some((old, old_at)) = s.wecom.token.replace((token.clone(), at)) {
            s.wecom.tokens.insert(old, old_at);
        }
        Ok(ok(json!({
            "access_token": token,
            "expires_in": c.token_ttl.as_secs(),
        })))
    }

    fn wecom_getuserinfo(&self, token: &str, code: &str) -> Result<Value, i64> {
        self.token_ok(token)?;
        if code.is_empty() {
            return Err(41008);
        }
        let grant = {
            let mut s = self.state();
            let g = s.wecom.codes.get_mut(code).ok_or(40029)?;
            if g.used || Instant::now() >= g.expires_at {
                return Err(40029);
            }
            g.used = true;
            g.clone()
        };
        if let Some(m) = self.member(&grant.who) {
            let mut body = json!({ "userid": m.userid });
            if grant.scope == "snsapi_privateinfo" && m.in_range {
                let ticket = random_token(48);
                self.state().wecom.tickets.insert(
                    ticket.clone(),
                    (m.userid.clone(), Instant::now() + USER_TICKET_TTL),
                );
                body["user_ticket"] = json!(ticket);
                body["expires_in"] = json!(USER_TICKET_TTL.as_secs());
            }
            return Ok(ok(body));
        }
        let o = self.outsider(&grant.who).ok_or(40029)?;
        let mut body = json!({ "openid": self.wecom_openid(&o.key) });
        if let Some(ext) = self.wecom_external_userid(&o.key) {
            body["external_userid"] = json!(ext);
        }
        Ok(ok(body))
    }

    fn wecom_user_get(&self, token: &str, userid: &str) -> Result<Value, i64> {
        self.token_ok(token)?;
        let m = self.member(userid).ok_or(60111)?;
        if !m.in_range {
            return Err(60011);
        }
        let main = m.department.first().copied().unwrap_or(1);
        Ok(ok(json!({
            "userid": m.userid,
            "name": m.name,
            "department": m.department,
            "order": vec![0; m.department.len()],
            "position": "",
            "is_leader_in_dept": vec![0; m.department.len()],
            "direct_leader": [],
            "status": 1,
            "enable": 1,
            "main_department": main,
            "open_userid": derive_id("wecom-open-userid", &[&self.wecom().corp_id, &m.userid]),
        })))
    }

    fn wecom_getuserdetail(&self, token: &str, body: &str) -> Result<Value, i64> {
        self.token_ok(token)?;
        let v: Value = serde_json::from_str(body).map_err(|_| 47001)?;
        let ticket = v["user_ticket"].as_str().ok_or(47001)?;
        let userid = {
            let s = self.state();
            match s.wecom.tickets.get(ticket) {
                Some((u, at)) if Instant::now() < *at => u.clone(),
                _ => return Err(40129),
            }
        };
        let m = self.member(&userid).ok_or(60111)?;
        Ok(ok(json!({
            "userid": m.userid,
            "gender": m.gender,
            "avatar": format!("https://wework.qpic.cn/mock/{}/0", m.userid),
            "qr_code": format!("https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=mock{}", m.userid),
            "mobile": m.mobile,
            "email": m.email,
            "biz_mail": format!("{}@mock.exmail.example", m.userid),
            "address": "",
        })))
    }
}

/// The four API calls.
pub(super) async fn api(
    mock: MockWechat,
    req: Request<Incoming>,
    endpoint: &'static str,
) -> Response<Body> {
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    match mock.enter(endpoint).await {
        Some(Fault::Broken(b)) => return broken(b),
        Some(Fault::Errcode(code)) => return wecom_json(&error_body(code, peer)),
        None => {}
    }
    let c = mock.wecom();
    if !c.trusted_ips.is_empty() && !peer.is_some_and(|ip| c.trusted_ips.contains(&ip)) {
        return wecom_json(&error_body(60020, peer));
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let q = |name: &str| param(&query, name).unwrap_or_default().to_string();
    let post = req.method() == Method::POST;
    let result = match endpoint {
        "wecom_gettoken" => mock.wecom_gettoken(&q("corpid"), &q("corpsecret")),
        "wecom_getuserinfo" => mock.wecom_getuserinfo(&q("access_token"), &q("code")),
        "wecom_user_get" => mock.wecom_user_get(&q("access_token"), &q("userid")),
        _ if !post => Err(43002),
        _ => {
            let token = q("access_token");
            let body = read_body(req).await.unwrap_or_default();
            mock.wecom_getuserdetail(&token, &body)
        }
    };
    wecom_json(&result.unwrap_or_else(|code| error_body(code, peer)))
}

/// Which of WeCom's two sign-in pages a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    InApp,
    Sso,
}

/// Why a WeCom page refuses a link, as the page itself says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WecomPageRefusal {
    /// The parameters are not the documented ones, in the documented order.
    LinkInvalid,
    /// 40013: not this organisation's CorpID.
    CorpId,
    /// 40056: not the app's AgentId (or none with snsapi_privateinfo).
    AgentId,
    /// 50001: redirect_uri's host is not the app's trusted domain.
    Untrusted,
    Scope,
    State,
    /// The in-app link opened outside WeCom.
    NotWecom,
    /// The web-login QR code is older than its lifetime.
    Expired,
}

impl WecomPageRefusal {
    fn code(self) -> i64 {
        match self {
            Self::CorpId => 40013,
            Self::AgentId => 40056,
            Self::Untrusted => 50001,
            _ => 0,
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::LinkInvalid => ("该链接无法访问", "This link cannot be accessed"),
            Self::CorpId => ("企业ID参数错误", "The CorpID is wrong"),
            Self::AgentId => ("应用ID参数错误", "The AgentId is wrong"),
            Self::Untrusted => (
                "redirect_uri需使用应用可信域名",
                "redirect_uri must use the app's trusted domain",
            ),
            Self::Scope => ("scope参数错误", "The scope is wrong"),
            Self::State => ("state参数错误", "The state is wrong"),
            Self::NotWecom => (
                "请在企业微信客户端打开链接",
                "Please open this link in WeCom",
            ),
            Self::Expired => ("二维码已失效", "This QR code has expired"),
        }
    }

    /// A stable name for scripts (the `x-mock-wecom-error` header).
    pub fn name(self) -> &'static str {
        match self {
            Self::LinkInvalid => "link_invalid",
            Self::CorpId => "corpid",
            Self::AgentId => "agentid",
            Self::Untrusted => "redirect_uri_not_trusted",
            Self::Scope => "scope",
            Self::State => "state",
            Self::NotWecom => "not_wecom",
            Self::Expired => "expired",
        }
    }
}

struct Link {
    redirect_uri: String,
    scope: String,
    state: String,
}

/// Reads a link the way WeCom documents it: these names in this order.
fn check_link(raw: &str, page: Page, c: &WecomMockConfig) -> Result<Link, WecomPageRefusal> {
    use WecomPageRefusal as R;
    let pairs = parse_query(raw);
    let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let allowed: &[&[&str]] = match page {
        Page::InApp => &[
            &[
                "appid",
                "redirect_uri",
                "response_type",
                "scope",
                "state",
                "agentid",
            ],
            &["appid", "redirect_uri", "response_type", "scope", "agentid"],
            &["appid", "redirect_uri", "response_type", "scope", "state"],
            &["appid", "redirect_uri", "response_type", "scope"],
        ],
        Page::Sso => &[
            &["login_type", "appid", "agentid", "redirect_uri", "state"],
            &[
                "login_type",
                "appid",
                "agentid",
                "redirect_uri",
                "state",
                "lang",
            ],
            &["login_type", "appid", "agentid", "redirect_uri"],
        ],
    };
    if !allowed.contains(&names.as_slice()) {
        return Err(R::LinkInvalid);
    }
    let get = |name: &str| param(&pairs, name).unwrap_or_default().to_string();
    if page == Page::InApp && get("response_type") != "code" {
        return Err(R::LinkInvalid);
    }
    if page == Page::Sso && get("login_type") != "CorpApp" {
        return Err(R::LinkInvalid);
    }
    if get("appid") != c.corp_id {
        return Err(R::CorpId);
    }
    let scope = match page {
        Page::InApp => get("scope"),
        Page::Sso => "snsapi_base".into(),
    };
    if scope != "snsapi_base" && scope != "snsapi_privateinfo" {
        return Err(R::Scope);
    }
    let agentid = get("agentid");
    let agent_needed = page == Page::Sso || scope == "snsapi_privateinfo";
    if (agent_needed || !agentid.is_empty()) && agentid != c.agent_id {
        return Err(R::AgentId);
    }
    let redirect_uri = get("redirect_uri");
    let host = reqwest::Url::parse(&redirect_uri)
        .ok()
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .ok_or(R::Untrusted)?;
    if !c.trusted_domains.is_empty()
        && !c
            .trusted_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&host))
    {
        return Err(R::Untrusted);
    }
    let state = get("state");
    if !state.is_empty() && !is_valid_state(&state) {
        return Err(R::State);
    }
    Ok(Link {
        redirect_uri,
        scope,
        state,
    })
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:30em;margin:2em auto;padding:0 1em;color:#222}}\
h1{{font-size:1.3em}}.note{{color:#888;font-size:.85em}}label{{display:block;margin:.5em 0}}\
button{{font-size:1em;padding:.5em 1.2em;margin:.5em .5em 0 0}}\
.allow{{background:#0082ef;color:#fff;border:0;border-radius:4px}}\
.qr{{width:10em;height:10em;border:4px solid #222;margin:1em 0;\
background:repeating-linear-gradient(-45deg,#222 0 6px,#fff 6px 12px)}}</style></head>\
<body>{body}<p class=\"note\">模拟企业微信 · Mock WeCom (wxgate)</p></body></html>",
        title = html_escape(title),
    );
    crate::pages::html_response(status, html)
}

fn refusal_page(r: WecomPageRefusal) -> Response<Body> {
    let (zh, en) = r.words();
    let code = match r.code() {
        0 => String::new(),
        n => format!("<p>错误码 · Error code {n}</p>"),
    };
    let mut resp = page(
        StatusCode::OK,
        "企业微信 · WeCom",
        &format!(
            "<h1>{}</h1><h2>{}</h2>{code}",
            html_escape(zh),
            html_escape(en)
        ),
    );
    resp.headers_mut()
        .insert("x-mock-wecom-error", HeaderValue::from_static(r.name()));
    resp
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(full(""));
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&location_value(location)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn is_wecom(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("wxwork/"))
}

/// Whether an `/connect/oauth2/authorize` request is a WeCom link (the CorpID as
/// appid, or an `agentid`) rather than an official account's.
pub(super) fn is_wecom_link(mock: &MockWechat, query: &str) -> bool {
    let pairs = parse_query(query);
    param(&pairs, "agentid").is_some()
        || param(&pairs, "appid") == Some(mock.wecom().corp_id.as_str())
}

/// `GET /connect/oauth2/authorize?appid=CORPID&...&agentid=` inside the WeCom app.
pub(super) async fn authorize(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    if let Some(Fault::Broken(b)) = mock.enter("wecom_authorize").await {
        return broken(b);
    }
    let link = match check_link(req.uri().query().unwrap_or(""), Page::InApp, mock.wecom()) {
        Ok(l) => l,
        Err(r) => return refusal_page(r),
    };
    if !is_wecom(&req) {
        return refusal_page(WecomPageRefusal::NotWecom);
    }
    let Some(who) = mock.wecom_current_user() else {
        return refusal_page(WecomPageRefusal::LinkInvalid);
    };
    // snsapi_base is silent; private details need the member's own consent.
    if link.scope == "snsapi_base" || mock.member(&who).is_none() {
        let code = mock.issue_wecom_code(&who, &link.scope);
        return redirect(&callback_location(
            &link.redirect_uri,
            Some(&code),
            &link.state,
        ));
    }
    consent_page(&mock, &link, &who)
}

fn consent_page(mock: &MockWechat, link: &Link, who: &str) -> Response<Body> {
    let name = mock.member(who).map_or(who, |m| m.name.as_str());
    let hidden = |n: &str, v: &str| {
        format!(
            "<input type=\"hidden\" name=\"{n}\" value=\"{}\">",
            html_escape(v)
        )
    };
    page(
        StatusCode::OK,
        "授权 · Authorize",
        &format!(
            "<h1>应用申请获取你的信息</h1><h2>The app asks for your details</h2>\
<p>头像、性别、手机、邮箱 · Avatar, gender, mobile, email</p>\
<p>当前账号 · Signed in as <b translate=\"no\">{}</b></p>\
<form method=\"post\" action=\"/connect/oauth2/wecom_consent\">{}{}{}\
<button class=\"allow\" name=\"action\" value=\"allow\">允许 Allow</button>\
<button name=\"action\" value=\"refuse\">拒绝 Refuse</button></form>",
            html_escape(name),
            hidden("redirect_uri", &link.redirect_uri),
            hidden("scope", &link.scope),
            hidden("state", &link.state),
        ),
    )
}

/// `POST /connect/oauth2/wecom_consent`: the member's answer on the consent page.
pub(super) async fn consent(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "405",
            "<h1>只接受 POST</h1><h2>POST only</h2>",
        );
    }
    let form = parse_query(&read_body(req).await.unwrap_or_default());
    let get = |n: &str| param(&form, n).unwrap_or_default().to_string();
    let link = Link {
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
    };
    // The form comes back from the browser: its target is checked again.
    let again = format!(
        "appid={}&redirect_uri={}&response_type=code&scope={}&state={}&agentid={}",
        crate::wechat::encode_component(&mock.wecom().corp_id),
        crate::wechat::encode_component(&link.redirect_uri),
        crate::wechat::encode_component(&link.scope),
        crate::wechat::encode_component(&link.state),
        crate::wechat::encode_component(&mock.wecom().agent_id),
    );
    if let Err(r) = check_link(&again, Page::InApp, mock.wecom()) {
        return refusal_page(r);
    }
    if get("action") != "allow" {
        return redirect(&callback_location(&link.redirect_uri, None, &link.state));
    }
    let Some(who) = mock.wecom_current_user() else {
        return refusal_page(WecomPageRefusal::LinkInvalid);
    };
    let code = mock.issue_wecom_code(&who, &link.scope);
    redirect(&callback_location(
        &link.redirect_uri,
        Some(&code),
        &link.state,
    ))
}

/// `GET /wwlogin/sso/login?login_type=CorpApp&...`: the QR code a computer shows.
pub(super) async fn sso(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    if let Some(Fault::Broken(b)) = mock.enter("wecom_sso").await {
        return broken(b);
    }
    let link = match check_link(req.uri().query().unwrap_or(""), Page::Sso, mock.wecom()) {
        Ok(l) => l,
        Err(r) => return refusal_page(r),
    };
    let key = random_token(24);
    mock.state().wecom.sso.insert(
        key.clone(),
        SsoLogin {
            redirect_uri: link.redirect_uri,
            state: link.state,
            expires_at: Instant::now() + SSO_TTL,
            confirmed: None,
        },
    );
    sso_page(&mock, &key)
}

fn sso_page(mock: &MockWechat, key: &str) -> Response<Body> {
    let c = mock.wecom();
    let mut options = String::new();
    for m in &c.members {
        options.push_str(&format!(
            "<option value=\"{}\" translate=\"no\">{} ({})</option>",
            html_escape(&m.userid),
            html_escape(&m.name),
            html_escape(&m.userid)
        ));
    }
    for o in &c.outsiders {
        options.push_str(&format!(
            "<option value=\"{}\" translate=\"no\">{} ({})</option>",
            html_escape(&o.key),
            html_escape(&o.name),
            html_escape(&o.key)
        ));
    }
    let key = html_escape(key);
    // The page waits for the phone as WeCom's does, by asking the server.
    let script = format!(
        "<script>(function(){{function poll(){{fetch('/wwlogin/sso/status?key={key}')\
.then(function(r){{return r.json();}}).then(function(s){{if(s.status==='confirmed'){{location.href=s.location;}}\
else if(s.status==='pending'){{setTimeout(poll,300);}}}}).catch(function(){{setTimeout(poll,1000);}});}}poll();}})();</script>"
    );
    page(
        StatusCode::OK,
        "企业微信登录 · WeCom sign-in",
        &format!(
            "<h1>企业微信登录</h1><h2>Sign in with WeCom</h2>\
<div class=\"qr\" id=\"wecom-qr\" data-key=\"{key}\"></div>\
<p>请使用企业微信扫描二维码登录 · Scan the QR code with WeCom to sign in</p>\
<form method=\"post\" action=\"/wwlogin/sso/scan\"><input type=\"hidden\" name=\"key\" value=\"{key}\">\
<label>模拟扫码的用户 · Scan as <select name=\"user\">{options}</select></label>\
<button class=\"allow\">模拟扫码 · Simulate a scan</button></form>{script}"
        ),
    )
}

/// `GET /wwlogin/sso/status?key=`: what the waiting page asks.
pub(super) fn sso_status(mock: &MockWechat, req: &Request<Incoming>) -> Response<Body> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let key = param(&query, "key").unwrap_or_default();
    let s = mock.state();
    let answer = match s.wecom.sso.get(key) {
        Some(SsoLogin {
            confirmed: Some(location),
            ..
        }) => json!({"status": "confirmed", "location": location}),
        Some(l) if Instant::now() < l.expires_at => json!({"status": "pending"}),
        _ => json!({"status": "expired"}),
    };
    wecom_json(&answer)
}

/// `POST /wwlogin/sso/scan` (the page's own button, for a demo without a phone): scan
/// as the chosen user and go straight on.
pub(super) async fn sso_scan(mock: MockWechat, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "405",
            "<h1>只接受 POST</h1><h2>POST only</h2>",
        );
    }
    let form = parse_query(&read_body(req).await.unwrap_or_default());
    let key = param(&form, "key").unwrap_or_default().to_string();
    let user = param(&form, "user").unwrap_or_default().to_string();
    if !mock.wecom_scan(&key, &user) {
        return refusal_page(WecomPageRefusal::Expired);
    }
    let location = mock
        .state()
        .wecom
        .sso
        .get(&key)
        .and_then(|l| l.confirmed.clone())
        .unwrap_or_default();
    redirect(&location)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `/mock/wecom/*`: the knobs (see the module's table).
pub(super) fn control(mock: &MockWechat, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_start_matches("/mock/wecom/");
    let query = parse_query(req.uri().query().unwrap_or(""));
    let q = |n: &str| param(&query, n).unwrap_or_default().to_string();
    let post = req.method() == Method::POST;
    match (path, post) {
        ("as", true) => {
            let user = q("user");
            if mock.member(&user).is_none() && mock.outsider(&user).is_none() {
                return text(StatusCode::BAD_REQUEST, "no such member or outsider\n");
            }
            mock.wecom_sign_in_as(&user);
            text(StatusCode::OK, "ok\n")
        }
        ("scan", true) => {
            if mock.wecom_scan(&q("key"), &q("user")) {
                text(StatusCode::OK, "ok\n")
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    "no such login waiting, or no such user\n",
                )
            }
        }
        ("expire_tokens", true) => {
            mock.expire_wecom_tokens();
            text(StatusCode::OK, "ok\n")
        }
        ("users", false) => {
            let c = mock.wecom();
            let departments: Vec<_> = c
                .departments
                .iter()
                .map(|d| json!({"id": d.id, "name": d.name, "parentid": d.parent}))
                .collect();
            let members: Vec<_> = c
                .members
                .iter()
                .map(|m| json!({"userid": m.userid, "name": m.name, "department": m.department, "in_range": m.in_range}))
                .collect();
            let outsiders: Vec<_> = c
                .outsiders
                .iter()
                .map(|o| json!({"key": o.key, "name": o.name, "openid": mock.wecom_openid(&o.key), "external_userid": mock.wecom_external_userid(&o.key)}))
                .collect();
            let mut resp = wecom_json(&json!({
                "corp_id": c.corp_id, "agent_id": c.agent_id,
                "departments": departments, "members": members, "outsiders": outsiders,
            }));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        ("as" | "scan" | "expire_tokens", false) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n")
        }
        _ => text(StatusCode::NOT_FOUND, "unknown knob\n"),
    }
}

/// Every page the mock's WeCom shows a browser, for the test that reads them all.
#[cfg(test)]
pub(crate) fn every_page(mock: &MockWechat) -> Vec<(String, Response<Body>)> {
    use WecomPageRefusal as R;
    let link = Link {
        redirect_uri: "http://127.0.0.1/_wxgate/callback".into(),
        scope: "snsapi_privateinfo".into(),
        state: "abc".into(),
    };
    let mut pages = vec![
        (
            "wecom consent".to_string(),
            consent_page(mock, &link, "zhangsan"),
        ),
        ("wecom sso".to_string(), sso_page(mock, "KEY")),
    ];
    for r in [
        R::LinkInvalid,
        R::CorpId,
        R::AgentId,
        R::Untrusted,
        R::Scope,
        R::State,
        R::NotWecom,
        R::Expired,
    ] {
        pages.push((format!("wecom refusal {}", r.name()), refusal_page(r)));
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WecomMockConfig {
        WecomMockConfig {
            trusted_domains: vec!["app.example.com".into()],
            ..WecomMockConfig::default()
        }
    }

    #[test]
    fn links_are_read_as_wecom_documents_them() {
        let c = config();
        let cb = "https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback";
        let corp = c.corp_id.clone();
        let in_app: Vec<(String, Result<(), WecomPageRefusal>)> = vec![
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=s&agentid=1000002"), Ok(())),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=s"), Ok(())),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_privateinfo&state=s"), Err(WecomPageRefusal::AgentId)),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_privateinfo&state=s&agentid=1000002"), Ok(())),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_base&agentid=1000002&state=s"), Err(WecomPageRefusal::LinkInvalid)),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=s&agentid=9"), Err(WecomPageRefusal::AgentId)),
            (format!("appid=wwother&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=s&agentid=1000002"), Err(WecomPageRefusal::CorpId)),
            (format!("appid={corp}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code&scope=snsapi_base&state=s&agentid=1000002"), Err(WecomPageRefusal::Untrusted)),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_userinfo&state=s&agentid=1000002"), Err(WecomPageRefusal::Scope)),
            (format!("appid={corp}&redirect_uri={cb}&response_type=code&scope=snsapi_base&state=a-b&agentid=1000002"), Err(WecomPageRefusal::State)),
        ];
        for (q, want) in in_app {
            assert_eq!(check_link(&q, Page::InApp, &c).map(|_| ()), want, "{q}");
        }
        let sso: Vec<(String, Result<(), WecomPageRefusal>)> = vec![
            (format!("login_type=CorpApp&appid={corp}&agentid=1000002&redirect_uri={cb}&state=s"), Ok(())),
            (format!("login_type=ServiceApp&appid={corp}&agentid=1000002&redirect_uri={cb}&state=s"), Err(WecomPageRefusal::LinkInvalid)),
            (format!("appid={corp}&login_type=CorpApp&agentid=1000002&redirect_uri={cb}&state=s"), Err(WecomPageRefusal::LinkInvalid)),
            (format!("login_type=CorpApp&appid={corp}&agentid=7&redirect_uri={cb}&state=s"), Err(WecomPageRefusal::AgentId)),
            (format!("login_type=CorpApp&appid={corp}&agentid=1000002&redirect_uri=https%3A%2F%2Fevil.example%2F&state=s"), Err(WecomPageRefusal::Untrusted)),
        ];
        for (q, want) in sso {
            assert_eq!(check_link(&q, Page::Sso, &c).map(|_| ()), want, "{q}");
        }
    }

    #[test]
    fn errors_carry_a_hint_that_the_client_reads() {
        let body = error_body(40029, Some(IpAddr::from([10, 0, 0, 1])));
        let msg = body["errmsg"].as_str().unwrap();
        assert!(msg.starts_with("invalid code, hint: ["), "{msg}");
        assert!(msg.contains("from ip: 10.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=40029"), "{msg}");
        assert!(crate::wecom::extract_hint(msg).is_some(), "{msg}");
    }

    #[test]
    fn a_code_is_good_once_and_names_a_member_or_an_outsider() {
        let mock = MockWechat::new(super::super::MockConfig::default());
        let c = mock.wecom().clone();
        let token = mock.wecom_gettoken(&c.corp_id, &c.secret).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let again = mock.wecom_gettoken(&c.corp_id, &c.secret).unwrap();
        assert_eq!(
            again["access_token"], token,
            "the same token within its lifetime"
        );
        assert_eq!(mock.wecom_gettoken(&c.corp_id, "wrong"), Err(40001));
        assert_eq!(mock.wecom_gettoken("wwother", &c.secret), Err(40013));

        let code = mock.issue_wecom_code("zhangsan", "snsapi_privateinfo");
        let member = mock.wecom_getuserinfo(&token, &code).unwrap();
        assert_eq!(member["userid"], "zhangsan");
        assert_eq!(mock.wecom_getuserinfo(&token, &code), Err(40029), "used");
        let ticket = member["user_ticket"].as_str().unwrap();
        let detail = mock
            .wecom_getuserdetail(&token, &json!({ "user_ticket": ticket }).to_string())
            .unwrap();
        assert_eq!(detail["mobile"], "13800000001");
        let got = mock.wecom_user_get(&token, "zhangsan").unwrap();
        assert_eq!(got["department"], json!([1, 2]));
        assert!(
            got.get("mobile").is_none(),
            "no private details from user/get"
        );
        assert_eq!(mock.wecom_user_get(&token, "wangwu"), Err(60011));
        assert_eq!(mock.wecom_user_get(&token, "nobody"), Err(60111));

        let code = mock.issue_wecom_code("guest", "snsapi_base");
        let outsider = mock.wecom_getuserinfo(&token, &code).unwrap();
        assert!(outsider.get("userid").is_none());
        assert_eq!(outsider["openid"], mock.wecom_openid("guest"));
        assert!(outsider["external_userid"]
            .as_str()
            .unwrap()
            .starts_with("wm"));

        mock.expire_wecom_tokens();
        assert_eq!(mock.wecom_user_get(&token, "zhangsan"), Err(42001));
        assert_eq!(mock.wecom_user_get("forged", "zhangsan"), Err(40014));
        let fresh = mock.wecom_gettoken(&c.corp_id, &c.secret).unwrap();
        assert_ne!(fresh["access_token"], token);
    }
}
