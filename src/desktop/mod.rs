//! Browsers outside WeChat (a PC's Chrome, a phone's Safari). WeChat's authorize URL
//! only says "open this in WeChat" there, so they are never sent to it.
//!
//! `desktop.mode = "qr"`: the browser shows a QR code of a one-time scan URL; the user
//! scans it with WeChat, signs the phone in through the normal web authorization,
//! confirms on the phone, and the waiting browser gets its own new session.
//!
//! A ticket lives in the session store (so every replica sees it) under `scan:<id>`,
//! expires after `desktop.ticket_ttl`, and is bound to the browser that showed it by a
//! sealed cookie holding a random per-browser nonce: the scan URL alone (leaked, shared,
//! photographed) cannot complete the sign-in anywhere else.
//!
//! URLs under `/_wxgate/scan/`:
//! - `s/<id>` (phone, GET): sign the phone in if needed, then the confirmation page;
//! - `confirm/<id>?csrf=`, `cancel/<id>?csrf=` (phone, POST): the answer;
//! - `status/<id>` (browser, GET): JSON for the waiting page's script;
//! - `done/<id>` (browser, GET): collect the confirmed sign-in, once;
//! - `c[?code=]` (phone, GET): the typed short code instead of scanning.

mod budget;
mod qr;

pub use budget::TicketBudget;

use http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::admin::metrics::metrics;
use crate::auth::{classify, Auth};
use crate::body::Body;
use crate::config::{DesktopMode, SameSite};
use crate::session::{now_unix, Session};

/// Where a ticket stands. `Used` is kept until the ticket's expiry so a replayed
/// completion or a late scan gets "already used" rather than "expired".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "s", rename_all = "snake_case")]
enum Status {
    Pending,
    /// Opened on a phone signed in with this session id (only that phone may answer).
    Scanned {
        sid: String,
    },
    Confirmed {
        session: Box<Session>,
    },
    Cancelled,
    Used,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ticket {
    /// The browser nonce from the waiting browser's sealed cookie.
    b: String,
    /// Where the browser lands once signed in (validated same-origin path).
    rd: String,
    /// The waiting browser, described from fixed names (never raw UA text).
    browser: String,
    os: String,
    /// The waiting browser's address, shown on the phone so a stranger's request stands out.
    #[serde(default)]
    ip: String,
    /// Unix seconds: created, expires.
    t: u64,
    exp: u64,
    /// The short code typed instead of scanning.
    code: String,
    st: Status,
}

pub const NONCE_COOKIE: &str = "_qr";
const CSRF_PURPOSE: &str = "wxgate-scan-csrf";
/// Unambiguous characters for the typed code (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A navigation from a non-WeChat browser that needs a sign-in.
pub async fn begin(
    auth: &Auth,
    headers: &HeaderMap,
    rd: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    match auth.cfg.desktop.mode {
        DesktopMode::Qrconnect => {
            metrics().desktop_signins.inc(&["qrconnect", "started"]);
            auth.authorize_redirect(headers, rd, 0, true)
        }
        DesktopMode::Off => {
            metrics().desktop_signins.inc(&["off", "shown"]);
            open_in_wechat(auth, headers, rd)
        }
        DesktopMode::Qr => qr_page(auth, headers, rd, client).await,
    }
}

/// `/_wxgate/scan/...`.
pub async fn handle(
    auth: &Auth,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response<Body> {
    let rest = uri.path().trim_start_matches("/_wxgate/scan/");
    let query = uri.query().unwrap_or("");
    let get_like = method == Method::GET || method == Method::HEAD;
    let (action, id) = rest.split_once('/').unwrap_or((rest, ""));
    if auth.cfg.desktop.mode != DesktopMode::Qr {
        return not_found(headers);
    }
    if action != "c" && !valid_id(id) {
        return not_found(headers);
    }
    match action {
        "s" if get_like => phone_scan(auth, headers, id).await,
        "confirm" if method == Method::POST => phone_answer(auth, headers, id, query, true).await,
        "cancel" if method == Method::POST => phone_answer(auth, headers, id, query, false).await,
        "status" if get_like => status(auth, headers, id).await,
        "done" if get_like => done(auth, headers, id).await,
        "c" if get_like && id.is_empty() => typed_code(auth, query).await,
        _ => not_found(headers),
    }
}

fn valid_id(id: &str) -> bool {
    crate::auth::state::is_valid_state(id)
}

fn key(id: &str) -> String {
    format!("scan:{id}")
}

fn code_key(code: &str) -> String {
    format!("scancode:{code}")
}

fn nonce_cookie_name(auth: &Auth) -> String {
    format!("{}{NONCE_COOKIE}", auth.cfg.session.cookie_name)
}

/// This browser's nonce, if it carries a valid sealed one.
fn browser_nonce(auth: &Auth, headers: &HeaderMap) -> Option<String> {
    let name = nonce_cookie_name(auth);
    let found = crate::session::cookie_values(headers, &name)
        .find_map(|v| auth.codec.open(&name, v))
        .filter(|n| valid_id(n));
    found
}

async fn load(auth: &Auth, id: &str) -> Result<Option<Ticket>, ()> {
    match auth.store.get_ephemeral(&key(id)).await {
        Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
        Ok(None) => Ok(None),
        Err(e) => {
            warn!(error = %e, "session store unavailable while reading a scan ticket");
            Err(())
        }
    }
}

async fn save(auth: &Auth, id: &str, t: &Ticket) -> Result<(), ()> {
    let left = t.exp.saturating_sub(now_unix()).max(1);
    let bytes = serde_json::to_vec(t).map_err(|_| ())?;
    auth.store
        .put_ephemeral(&key(id), &bytes, std::time::Duration::from_secs(left))
        .await
        .map_err(|e| warn!(error = %e, "session store unavailable while saving a scan ticket"))
}

/// One warning per minute at most: a flood of QR page views must not become a flood
/// of log lines.
fn warn_busy_once() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_unix();
    let last = LAST.load(Relaxed);
    if now >= last + 60 && LAST.compare_exchange(last, now, Relaxed, Relaxed).is_ok() {
        warn!("too many QR pages shown within desktop.ticket_ttl: new ones are refused for now");
    }
}

fn random_code() -> String {
    let bytes = crate::config::random_bytes(8);
    let mut s: String = bytes
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect();
    s.insert(4, '-');
    s
}

// ---------------------------------------------------------------- the waiting browser

async fn qr_page(
    auth: &Auth,
    headers: &HeaderMap,
    rd: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    let json = classify::wants_json(headers);
    let now = now_unix();
    let ttl = auth.cfg.desktop.ticket_ttl.get().as_secs().max(1);
    if !auth.qr_budget.try_take(
        std::time::Instant::now(),
        auth.cfg.desktop.ticket_ttl.get(),
        auth.cfg.desktop.max_tickets,
    ) {
        metrics().desktop_signins.inc(&["qr", "busy"]);
        warn_busy_once();
        let retry = auth.start_url(&crate::auth::redirect::strip_code_and_state(rd));
        return crate::auth::AuthError::SigninsBusy.response(json, Some(retry));
    }
    let existing = browser_nonce(auth, headers);
    let nonce = existing
        .clone()
        .unwrap_or_else(crate::auth::state::new_state);
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (browser, os) = classify::describe_user_agent(ua);
    let id = crate::auth::state::new_state();
    let code = random_code();
    let ticket = Ticket {
        b: nonce.clone(),
        rd: crate::auth::redirect::strip_code_and_state(rd),
        browser,
        os,
        ip: client.to_string(),
        t: now,
        exp: now + ttl,
        code: code.clone(),
        st: Status::Pending,
    };
    let stored = save(auth, &id, &ticket).await.is_ok()
        && auth
            .store
            .put_ephemeral(
                &code_key(&code),
                id.as_bytes(),
                std::time::Duration::from_secs(ttl),
            )
            .await
            .is_ok();
    if !stored {
        return crate::auth::AuthError::StoreUnavailable.response(json, None);
    }
    metrics().desktop_signins.inc(&["qr", "shown"]);

    let origin = &auth.cfg.public().origin;
    let scan_url = format!("{origin}/_wxgate/scan/s/{id}");
    let e = crate::pages::escape;
    let simulate = simulate_link(auth, &scan_url)
        .map(|href| {
            format!(
                "<p><a id=\"wxgate-simulate\" class=\"btn secondary\" target=\"_blank\" rel=\"noopener\" \
href=\"{}\">模拟手机扫码 · Simulate the phone</a></p>",
                e(&href)
            )
        })
        .unwrap_or_default();
    let renew = auth.start_url(&ticket.rd);
    let typed = format!(
        "<p id=\"wxgate-code\" data-scan-url=\"{scan}\" style=\"font-size:1.6rem;letter-spacing:.2rem;font-family:monospace\">{code}</p>",
        scan = e(&scan_url),
        code = e(&code),
    );
    let waiting = format!(
        "<p id=\"wxgate-status\" role=\"status\" data-state=\"pending\">等待确认… · Waiting for your confirmation…</p>\
<p id=\"wxgate-renew\" hidden><a class=\"btn\" href=\"{renew}\">刷新代码 · New code</a></p>\
<noscript><p><a class=\"btn secondary\" href=\"/_wxgate/scan/done/{id}\">我已在手机上确认 · I confirmed on my phone</a></p></noscript>\
{simulate}<script>{script}</script>",
        renew = e(&renew),
        script = poll_script(&id, ttl),
    );
    let (title, inner) = if classify::is_mobile_browser(ua) {
        // A phone cannot scan its own screen: it is asked to open the page in WeChat
        // (which signs it in there), or to confirm this browser by the typed code.
        let page_url = format!("{origin}{}", ticket.rd);
        (
            "请在微信中打开 · Open this in WeChat",
            format!(
                "<h1>请在微信中打开</h1><h2>Open this page in WeChat</h2>\
<p>微信登录只能在微信里完成：复制链接，在微信中打开（例如发给\u{201c}文件传输助手\u{201d}再点开）。<br>\
Signing in with WeChat works only inside WeChat: copy the link and open it there (for example, send it to File Transfer and tap it).</p>\
<p><input id=\"wxgate-link\" readonly value=\"{link}\" style=\"width:100%;font-size:1rem\"></p>\
<p><button class=\"btn\" id=\"wxgate-copy\" type=\"button\">复制链接 · Copy link</button></p>\
<p>或者留在这个浏览器：在微信中打开 <b>{origin_e}/_wxgate/scan/c</b>，输入下面的代码并确认。<br>\
Or stay in this browser: open that address in WeChat, enter this code and confirm.</p>\
{typed}{waiting}<script>{copy}</script>",
                link = e(&page_url),
                origin_e = e(origin),
                copy = COPY_SCRIPT,
            ),
        )
    } else {
        let svg = qr_svg(&scan_url).unwrap_or_default();
        (
            "微信扫码登录 · Sign in with WeChat",
            format!(
                "<h1>微信扫码登录</h1><h2>Sign in with WeChat</h2>\
<p>用微信扫一扫下面的二维码，并在手机上确认。<br>Scan this code with WeChat, then confirm on your phone.</p>\
<div class=\"qr\" id=\"wxgate-qr\" data-scan-url=\"{scan}\">{svg}</div>\
<p>无法扫码？在微信中打开 <b>{origin_e}/_wxgate/scan/c</b> 并输入下面的代码。<br>Cannot scan? Open that address in WeChat and enter this code.</p>\
{typed}{waiting}",
                scan = e(&scan_url),
                origin_e = e(origin),
            ),
        )
    };
    let mut resp = html(StatusCode::OK, title, &inner);
    if existing.is_none() {
        let name = nonce_cookie_name(auth);
        let sealed = auth.codec.seal(&name, &nonce);
        // The nonce outlives one ticket so several tabs share it; a day is plenty.
        let cookie = crate::session::session_cookie(
            &name,
            &sealed,
            auth.cookie_secure,
            SameSite::Lax,
            Some(std::time::Duration::from_secs(86400)),
        );
        auth.push_cookie(&mut resp, &cookie);
    }
    resp
}

/// The copy-link button: the Clipboard API where the page is a secure context, else
/// selecting the text field and the older copy command (plain-http pages, old WebViews).
const COPY_SCRIPT: &str = r#"(function(){var b=document.getElementById("wxgate-copy"),i=document.getElementById("wxgate-link");
function done(){b.textContent="已复制 · Copied";}
function legacy(){i.focus();i.select();try{if(document.execCommand("copy"))done();}catch(e){}}
b.addEventListener("click",function(){if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(i.value).then(done,legacy);}else{legacy();}});})();"#;

/// Polls the ticket's status every two seconds until it is decided or expired (bounded
/// by the ticket's lifetime), then follows the outcome without reloading the page.
fn poll_script(id: &str, ttl: u64) -> String {
    // `id` is [A-Za-z0-9] only (checked by construction), so it is safe inside a JS string.
    let max_polls = ttl / 2 + 3;
    format!(
        r#"(function(){{var n=0,st=document.getElementById("wxgate-status"),rn=document.getElementById("wxgate-renew");
function show(s,t){{st.setAttribute("data-state",s);st.textContent=t;}}
function end(s,t){{show(s,t);rn.hidden=false;var q=document.getElementById("wxgate-qr");if(q)q.style.opacity=".2";}}
function poll(){{if(++n>{max_polls}){{end("expired","二维码已过期 · This code has expired");return;}}
fetch("/_wxgate/scan/status/{id}",{{headers:{{"Accept":"application/json"}},credentials:"same-origin",cache:"no-store"}})
.then(function(r){{return r.json();}}).then(function(j){{
if(j.status==="confirmed"){{show("confirmed","已确认，正在登录… · Confirmed, signing in…");location.replace(j.next);return;}}
if(j.status==="scanned"){{show("scanned","已扫码，请在手机上确认 · Scanned: confirm on your phone");}}
if(j.status==="cancelled"){{end("cancelled","已在手机上取消 · Cancelled on the phone");return;}}
if(j.status==="expired"||j.status==="used"||j.status==="wrong_browser"){{end(j.status,"二维码已失效 · This code is no longer valid");return;}}
setTimeout(poll,2000);}},function(){{setTimeout(poll,2000);}});}}
setTimeout(poll,1000);}})();"#
    )
}

/// The demo's "simulate the phone" link: only when WeChat's authorize URL is the mock
/// platform's, on a loopback host or on this very site (`wxgate demo` serves it there),
/// never in front of the real WeChat.
fn simulate_link(auth: &Auth, scan_url: &str) -> Option<String> {
    let u: Uri = auth.cfg.wechat.authorize_url.parse().ok()?;
    let host = u.host()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let origin = format!("{}://{}", u.scheme_str()?, u.authority()?);
    if !loopback && !origin.eq_ignore_ascii_case(&auth.cfg.public().origin) {
        return None;
    }
    Some(format!(
        "{origin}/mock/phone?url={}",
        percent_encoding::utf8_percent_encode(scan_url, crate::auth::COMPONENT)
    ))
}

async fn status(auth: &Auth, headers: &HeaderMap, id: &str) -> Response<Body> {
    let ticket = match load(auth, id).await {
        Ok(t) => t,
        Err(()) => return crate::auth::AuthError::StoreUnavailable.response(true, None),
    };
    let Some(t) = ticket else {
        return json(StatusCode::OK, serde_json::json!({ "status": "expired" }));
    };
    if browser_nonce(auth, headers).as_deref() != Some(t.b.as_str()) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({ "status": "wrong_browser" }),
        );
    }
    let body = match &t.st {
        Status::Pending => serde_json::json!({ "status": "pending", "expires_at": t.exp }),
        Status::Scanned { .. } => serde_json::json!({ "status": "scanned", "expires_at": t.exp }),
        Status::Confirmed { .. } => serde_json::json!({
            "status": "confirmed",
            "next": format!("/_wxgate/scan/done/{id}"),
        }),
        Status::Cancelled => serde_json::json!({ "status": "cancelled" }),
        Status::Used => serde_json::json!({ "status": "used" }),
    };
    json(StatusCode::OK, body)
}

/// The waiting browser collects a confirmed sign-in: its own new session, once.
async fn done(auth: &Auth, headers: &HeaderMap, id: &str) -> Response<Body> {
    let jsonp = classify::wants_json(headers);
    let t = match load(auth, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return outcome_page(auth, "expired", "/", jsonp),
        Err(()) => return crate::auth::AuthError::StoreUnavailable.response(jsonp, None),
    };
    if browser_nonce(auth, headers).as_deref() != Some(t.b.as_str()) {
        warn!("a scan sign-in was collected from a browser that did not show the code");
        metrics().desktop_signins.inc(&["qr", "wrong_browser"]);
        return outcome_page(auth, "wrong_browser", "/", jsonp);
    }
    match &t.st {
        Status::Confirmed { .. } => {}
        Status::Cancelled => return outcome_page(auth, "cancelled", &t.rd, jsonp),
        Status::Used => return outcome_page(auth, "used", &t.rd, jsonp),
        Status::Pending | Status::Scanned { .. } => {
            return outcome_page(auth, "not_yet", &t.rd, jsonp)
        }
    }
    // Single use: whoever takes the ticket completes it; a racing second request
    // finds it gone (or the `Used` marker written below).
    let taken = match auth.store.take_ephemeral(&key(id)).await {
        Ok(Some(bytes)) => serde_json::from_slice::<Ticket>(&bytes).ok(),
        Ok(None) => None,
        Err(_) => return crate::auth::AuthError::StoreUnavailable.response(jsonp, None),
    };
    let Some(Ticket {
        st: Status::Confirmed { session },
        ..
    }) = taken
    else {
        metrics().desktop_signins.inc(&["qr", "reused"]);
        return outcome_page(auth, "used", &t.rd, jsonp);
    };
    let _ = save(
        auth,
        id,
        &Ticket {
            st: Status::Used,
            ..t.clone()
        },
    )
    .await;
    if !auth.is_allowed(&session.openid) {
        return crate::auth::AuthError::NotAllowed.response(jsonp, None);
    }
    // Whatever session this browser had ends; the new one has a new id.
    if let Ok(Some((old, ticket))) = auth.session_of(headers).await {
        let _ = auth.store.delete(&ticket, &old).await;
    }
    match auth.create_session(*session).await {
        Ok((s, cookie)) => {
            info!(openid = %s.openid, "signed in a browser by QR scan");
            metrics().desktop_signins.inc(&["qr", "success"]);
            let mut resp = crate::auth::redirect(&t.rd);
            auth.push_cookie(&mut resp, &cookie);
            resp
        }
        Err(e) => {
            warn!(error = %e, "could not store a new session");
            crate::auth::AuthError::StoreUnavailable.response(jsonp, None)
        }
    }
}

// ---------------------------------------------------------------- the phone

async fn phone_scan(auth: &Auth, headers: &HeaderMap, id: &str) -> Response<Body> {
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !classify::is_wechat_browser(ua) {
        return phone_page(
            StatusCode::OK,
            "请用微信扫码",
            "Scan with WeChat",
            "这个二维码用来登录电脑：请用微信的\u{201c}扫一扫\u{201d}扫描它。",
            "This code signs a computer in: scan it with WeChat's Scan.",
        );
    }
    let t = match load(auth, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return phone_outcome("expired"),
        Err(()) => return crate::auth::AuthError::StoreUnavailable.response(false, None),
    };
    let session = match auth.session_of(headers).await {
        Ok(Some((s, _))) => s,
        Ok(None) => {
            // Sign the phone in through the normal WeChat authorization, then come back.
            return auth.authorize_redirect(headers, &format!("/_wxgate/scan/s/{id}"), 0, false);
        }
        Err(e) => return e.response(false, None),
    };
    match &t.st {
        Status::Pending => {
            let scanned = Ticket {
                st: Status::Scanned {
                    sid: session.id.clone(),
                },
                ..t.clone()
            };
            if save(auth, id, &scanned).await.is_err() {
                return crate::auth::AuthError::StoreUnavailable.response(false, None);
            }
        }
        Status::Scanned { sid } if *sid == session.id => {}
        Status::Scanned { .. } => return phone_outcome("scanned_elsewhere"),
        Status::Confirmed { .. } | Status::Used => return phone_outcome("used"),
        Status::Cancelled => return phone_outcome("cancelled"),
    }
    confirm_page(auth, &t, id, &session)
}

fn confirm_page(auth: &Auth, t: &Ticket, id: &str, session: &Session) -> Response<Body> {
    let e = crate::pages::escape;
    let csrf = auth
        .codec
        .seal(CSRF_PURPOSE, &format!("{}|{id}", session.id));
    let csrf = percent_encoding::utf8_percent_encode(&csrf, crate::auth::COMPONENT).to_string();
    let app = auth
        .cfg
        .public()
        .origin
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let who = session
        .nickname
        .clone()
        .unwrap_or_else(|| session.openid.clone());
    let inner = format!(
        "<h1>在电脑上登录？</h1><h2>Sign in on a computer?</h2>\
<table id=\"wxgate-request\">\
<tr><td>网站 · Site</td><td id=\"wxgate-app\" translate=\"no\">{app}</td></tr>\
<tr><td>浏览器 · Browser</td><td id=\"wxgate-browser\" translate=\"no\">{browser} · {os}</td></tr>\
<tr><td>地址 · From</td><td id=\"wxgate-ip\" translate=\"no\">{ip}</td></tr>\
<tr><td>时间 · Time</td><td translate=\"no\">{time}</td></tr>\
<tr><td>账号 · Account</td><td translate=\"no\">{who}</td></tr></table>\
<p>只有当这是你本人刚刚在电脑上发起的登录时才确认。<br>Confirm only if you just asked to sign in on that computer yourself.</p>\
<form method=\"post\" action=\"/_wxgate/scan/confirm/{id}?csrf={csrf}\" style=\"display:inline\">\
<button class=\"btn\" id=\"wxgate-confirm\" type=\"submit\">确认登录 · Confirm</button></form> \
<form method=\"post\" action=\"/_wxgate/scan/cancel/{id}?csrf={csrf}\" style=\"display:inline\">\
<button class=\"btn secondary\" id=\"wxgate-cancel\" type=\"submit\">取消 · Cancel</button></form>",
        app = e(&app),
        browser = e(&t.browser),
        os = e(&t.os),
        ip = e(if t.ip.is_empty() { "?" } else { &t.ip }),
        time = e(&format_utc(t.t)),
        who = e(&who),
    );
    html(StatusCode::OK, "确认登录 · Confirm sign-in", &inner)
}

async fn phone_answer(
    auth: &Auth,
    headers: &HeaderMap,
    id: &str,
    query: &str,
    confirm: bool,
) -> Response<Body> {
    let session = match auth.session_of(headers).await {
        Ok(Some((s, _))) => s,
        Ok(None) => return phone_outcome("forbidden"),
        Err(e) => return e.response(false, None),
    };
    let token_ok = crate::auth::endpoints::query_param(query, "csrf")
        .and_then(|c| auth.codec.open(CSRF_PURPOSE, &c))
        .is_some_and(|v| v == format!("{}|{id}", session.id));
    if !token_ok {
        warn!("a scan confirmation without a valid token");
        return phone_outcome("forbidden");
    }
    let t = match load(auth, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return phone_outcome("expired"),
        Err(()) => return crate::auth::AuthError::StoreUnavailable.response(false, None),
    };
    match &t.st {
        Status::Scanned { sid } if *sid == session.id => {}
        Status::Pending | Status::Scanned { .. } => return phone_outcome("scanned_elsewhere"),
        Status::Confirmed { .. } | Status::Used => return phone_outcome("used"),
        Status::Cancelled => return phone_outcome("cancelled"),
    }
    let st = if confirm {
        // The browser's session is its own: same WeChat user, new id, no WeChat tokens
        // (the phone's session keeps refreshing the profile; two holders would race).
        let mut s = session.clone();
        s.id = String::new();
        s.access_token = None;
        s.refresh_token = None;
        Status::Confirmed {
            session: Box::new(s),
        }
    } else {
        metrics().desktop_signins.inc(&["qr", "cancelled"]);
        Status::Cancelled
    };
    if save(auth, id, &Ticket { st, ..t }).await.is_err() {
        return crate::auth::AuthError::StoreUnavailable.response(false, None);
    }
    if confirm {
        info!(openid = %session.openid, "a QR sign-in was confirmed on the phone");
        phone_outcome("confirmed")
    } else {
        phone_outcome("cancelled_now")
    }
}

/// `/_wxgate/scan/c?code=ABCD-2345`: the typed short code, for people who cannot scan.
async fn typed_code(auth: &Auth, query: &str) -> Response<Body> {
    let typed = crate::auth::endpoints::query_param(query, "code").unwrap_or_default();
    let norm: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if norm.len() == 8 {
        let code = format!("{}-{}", &norm[..4], &norm[4..]);
        if let Ok(Some(id)) = auth.store.get_ephemeral(&code_key(&code)).await {
            if let Ok(id) = String::from_utf8(id) {
                if valid_id(&id) {
                    return crate::auth::redirect(&format!("/_wxgate/scan/s/{id}"));
                }
            }
        }
    }
    let wrong = if typed.is_empty() {
        ""
    } else {
        "<p>代码无效或已过期 · That code is unknown or has expired.</p>"
    };
    let inner = format!(
        "<h1>输入登录代码</h1><h2>Enter the sign-in code</h2>{wrong}\
<form method=\"get\" action=\"/_wxgate/scan/c\"><p><input name=\"code\" autocomplete=\"off\" \
placeholder=\"ABCD-2345\" style=\"font-size:1.4rem;font-family:monospace;width:10rem\"></p>\
<p><button class=\"btn\" type=\"submit\">继续 · Continue</button></p></form>"
    );
    html(StatusCode::OK, "输入登录代码 · Enter the code", &inner)
}

// ---------------------------------------------------------------- pages

fn phone_outcome(what: &str) -> Response<Body> {
    let (status, zh, en, detail_zh, detail) = match what {
        "confirmed" => (
            StatusCode::OK,
            "已确认",
            "Confirmed",
            "电脑正在登录。可以关闭此页面了。",
            "The computer is now signing in. You can close this page.",
        ),
        "cancelled_now" => (
            StatusCode::OK,
            "已取消",
            "Cancelled",
            "没有登录任何人。可以关闭此页面了。",
            "Nobody was signed in. You can close this page.",
        ),
        "cancelled" => (
            StatusCode::GONE,
            "已取消",
            "This sign-in was cancelled",
            "请在电脑上重新开始，获取新的二维码。",
            "Start again on the computer to get a new code.",
        ),
        "used" => (
            StatusCode::GONE,
            "二维码已使用",
            "This code has already been used",
            "每个二维码只能登录一次。请在电脑上重新开始，获取新的二维码。",
            "Each code signs in once. Start again on the computer to get a new code.",
        ),
        "scanned_elsewhere" => (
            StatusCode::CONFLICT,
            "二维码已被扫描",
            "This code was scanned on another phone",
            "只有最先扫码的手机可以确认。",
            "Only the phone that scanned it first can answer.",
        ),
        "forbidden" => (
            StatusCode::FORBIDDEN,
            "无法确认",
            "This confirmation is not valid",
            "请重新打开扫码后的页面，在那里确认。",
            "Open the scanned page again and answer there.",
        ),
        _ => (
            StatusCode::GONE,
            "二维码已过期",
            "This code has expired",
            "请在电脑上刷新页面，获取新的二维码。",
            "Refresh the page on the computer to get a new code.",
        ),
    };
    let mut resp = phone_page(status, zh, en, detail_zh, detail);
    if let Ok(v) = http::HeaderValue::from_str(what) {
        resp.headers_mut().insert("x-wxgate-scan", v);
    }
    resp
}

fn phone_page(
    status: StatusCode,
    zh: &str,
    en: &str,
    detail_zh: &str,
    detail: &str,
) -> Response<Body> {
    let e = crate::pages::escape;
    let inner = format!(
        "<h1>{}</h1><h2>{}</h2><p>{}<br>{}</p>",
        e(zh),
        e(en),
        e(detail_zh),
        e(detail)
    );
    html(status, &format!("{zh} · {en}"), &inner)
}

/// The waiting browser's answer when the sign-in cannot complete: what happened and a
/// one-click way to start over.
fn outcome_page(auth: &Auth, what: &str, rd: &str, json: bool) -> Response<Body> {
    let (status, code, zh, en, detail_zh, detail) = match what {
        "wrong_browser" => (
            StatusCode::FORBIDDEN,
            "scan_wrong_browser",
            "请在显示二维码的浏览器中完成登录",
            "Finish in the browser that showed the code",
            "这次登录是在另一个浏览器中开始的。",
            "This sign-in was started in another browser.",
        ),
        "cancelled" => (
            StatusCode::GONE,
            "scan_cancelled",
            "已在手机上取消",
            "Cancelled on the phone",
            "没有登录任何人。",
            "Nobody was signed in.",
        ),
        "used" => (
            StatusCode::GONE,
            "scan_used",
            "二维码已使用",
            "This code has already been used",
            "每个二维码只能登录一次。",
            "Each code signs in once.",
        ),
        "not_yet" => (
            StatusCode::CONFLICT,
            "scan_pending",
            "尚未在手机上确认",
            "Not confirmed on the phone yet",
            "请先用微信扫码，并在手机上确认。",
            "Scan the code with WeChat and confirm on the phone first.",
        ),
        _ => (
            StatusCode::GONE,
            "scan_expired",
            "二维码已过期",
            "This code has expired",
            "请获取新的二维码再扫一次。",
            "Get a new code and scan it again.",
        ),
    };
    if code == "scan_expired" {
        metrics().desktop_signins.inc(&["qr", "expired"]);
    }
    crate::pages::respond(
        &crate::pages::Notice {
            status,
            code,
            title_zh: zh,
            title_en: en,
            detail_zh: detail_zh.into(),
            detail: detail.into(),
            retry: Some(auth.start_url(rd)),
        },
        json,
    )
}

fn not_found(headers: &HeaderMap) -> Response<Body> {
    crate::pages::not_found(classify::wants_json(headers))
}

fn html(status: StatusCode, title: &str, inner: &str) -> Response<Body> {
    let mut resp = crate::pages::html_response(status, crate::pages::page(title, inner));
    // The confirmation page must not be framed (clickjacking the Confirm button).
    resp.headers_mut()
        .insert("x-frame-options", http::HeaderValue::from_static("DENY"));
    resp
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    crate::pages::json_response(status, &v)
}

/// `2024-05-01 12:34:56 UTC` from Unix seconds (days-to-civil, Howard Hinnant).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// "Open this page in WeChat": a computer gets a QR code of the page to scan, a phone
/// (which cannot scan its own screen) a button copying the link to paste into WeChat.
pub fn open_in_wechat(auth: &Auth, headers: &HeaderMap, rd: &str) -> Response<Body> {
    let url = format!("{}{}", auth.cfg.public().origin, rd);
    let u = crate::pages::escape(&url);
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let how = if classify::is_mobile_browser(ua) {
        format!(
            "<p>复制链接，在微信中打开（例如发给\u{201c}文件传输助手\u{201d}再点开）。<br>\
Copy the link and open it in WeChat (for example, send it to File Transfer and tap it).</p>\
<p><input id=\"wxgate-link\" readonly value=\"{u}\" style=\"width:100%;font-size:1rem\"></p>\
<p><button class=\"btn\" id=\"wxgate-copy\" type=\"button\">复制链接 · Copy link</button></p>\
<script>{COPY_SCRIPT}</script>"
        )
    } else {
        let svg = qr_svg(&url).unwrap_or_default();
        format!(
            "<p>用微信扫一扫下面的二维码，在微信中继续。<br>Scan this code with WeChat to continue there.</p>\
<div class=\"qr\" id=\"wxgate-qr\" data-scan-url=\"{u}\">{svg}</div><p class=\"code\">{u}</p>"
        )
    };
    let inner = format!("<h1>请在微信中打开</h1><h2>Please open this page in WeChat</h2>{how}");
    html(StatusCode::OK, "请在微信中打开 · Open in WeChat", &inner)
}

/// An inline SVG QR code (no external assets).
pub fn qr_svg(data: &str) -> Option<String> {
    qr::svg(data)
}

/// Every page of the desktop sign-in, for the test that reads them all.
#[cfg(test)]
pub(crate) async fn every_page(auth: &Auth) -> Vec<(String, Response<Body>)> {
    let with_ua = |ua: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(http::header::USER_AGENT, http::HeaderValue::from_static(ua));
        h
    };
    let computer = with_ua("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36");
    let phone = with_ua("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1");
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut session = Session::new(
        "wx0000000000000000",
        "o-test",
        crate::config::Scope::UserInfo,
    );
    session.nickname = Some("王小明 🐼".into());
    let ticket = Ticket {
        b: String::new(),
        rd: "/x".into(),
        browser: "Chrome 120".into(),
        os: "Windows 10".into(),
        ip: ip.to_string(),
        t: 0,
        exp: 120,
        code: "ABCD-2345".into(),
        st: Status::Pending,
    };
    let mut pages = vec![
        ("qr".to_string(), qr_page(auth, &computer, "/x", ip).await),
        (
            "qr on a phone".into(),
            qr_page(auth, &phone, "/x", ip).await,
        ),
        (
            "open in wechat".into(),
            open_in_wechat(auth, &computer, "/x"),
        ),
        (
            "open in wechat on a phone".into(),
            open_in_wechat(auth, &phone, "/x"),
        ),
        (
            "scanned outside wechat".into(),
            phone_scan(auth, &phone, "abc").await,
        ),
        ("typed code".into(), typed_code(auth, "").await),
        (
            "typed code unknown".into(),
            typed_code(auth, "code=ZZZZZZZZ").await,
        ),
        (
            "confirm".into(),
            confirm_page(auth, &ticket, "abc", &session),
        ),
    ];
    for what in [
        "confirmed",
        "cancelled_now",
        "cancelled",
        "used",
        "scanned_elsewhere",
        "forbidden",
        "expired",
    ] {
        pages.push((format!("phone {what}"), phone_outcome(what)));
    }
    for what in ["wrong_browser", "cancelled", "used", "not_yet", "expired"] {
        pages.push((
            format!("computer {what}"),
            outcome_page(auth, what, "/x", false),
        ));
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn typed_codes_avoid_lookalike_characters() {
        for _ in 0..50 {
            let c = random_code();
            assert_eq!(c.len(), 9);
            assert!(!c.contains(['0', 'O', '1', 'I', 'L']), "{c}");
        }
    }
}
