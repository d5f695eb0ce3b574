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

use std::sync::Arc;

use http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::body::Body;
use crate::config::DesktopMode;
use crate::metrics::metrics;
use crate::pages::Reply;
use crate::session::{now_unix, Session};
use crate::signin::{
    classify, Begin, Callback, Core, Method as SignInMethod, OwnRequest, SignInError, Verified,
};

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

/// The desktop sign-in method: every browser outside WeChat.
pub struct Desktop {
    /// QR pages shown lately; carried over by a reload (or a reload would reset it).
    budget: Arc<TicketBudget>,
}

impl SignInMethod for Desktop {
    const NAME: &'static str = "desktop";
    const COOKIES: &'static [&'static str] = &[NONCE_COOKIE];

    fn new(_core: &Core) -> Self {
        Desktop {
            budget: Arc::default(),
        }
    }

    fn keep_from(&mut self, previous: &Self) {
        self.budget = previous.budget.clone();
    }

    /// A navigation from a non-WeChat browser that needs a sign-in.
    async fn start(&self, core: &Core, begin: &Begin<'_>) -> Response<Body> {
        let (headers, rd) = (begin.browser.headers, begin.rd);
        match core.cfg.desktop.mode {
            DesktopMode::Qrconnect => {
                metrics()
                    .desktop_signins
                    .inc(crate::metrics::labels::DesktopSignin(
                        crate::config::DesktopMode::Qrconnect,
                        crate::metrics::labels::DesktopOutcome::Started,
                    ));
                qrconnect(core, headers, rd, begin.tries)
            }
            DesktopMode::Off => {
                metrics()
                    .desktop_signins
                    .inc(crate::metrics::labels::DesktopSignin(
                        crate::config::DesktopMode::Off,
                        crate::metrics::labels::DesktopOutcome::Shown,
                    ));
                open_in_wechat(core, headers, rd)
            }
            DesktopMode::Qr => qr_page(core, &self.budget, headers, rd, begin.browser.client).await,
        }
    }

    /// The qrconnect callback: a code of the website app.
    async fn finish(&self, core: &Core, callback: &Callback<'_>) -> Result<Verified, SignInError> {
        let app = core.website.as_ref().unwrap_or(&core.app);
        super::wechat_inapp::redeem(core, app, callback.code).await
    }

    fn serves(&self, path: &str) -> bool {
        path.starts_with("/_wxgate/scan/")
    }

    async fn serve(&self, core: &Core, req: &OwnRequest<'_>) -> Response<Body> {
        handle(core, req.method, req.uri, req.browser.headers).await
    }
}

/// A 302 to WeChat's qrconnect page for the website app, finished by this method.
fn qrconnect(core: &Core, headers: &HeaderMap, rd: &str, tries: u8) -> Response<Body> {
    let appid = core
        .website
        .as_ref()
        .map(|w| w.appid.as_str())
        .unwrap_or_default();
    core.redirect_with_flow(headers, rd, tries, Desktop::NAME, |state| {
        crate::wechat::qrconnect_url(
            &core.cfg.wechat.qrconnect_url,
            appid,
            &core.redirect_uri,
            state,
        )
    })
}

/// `/_wxgate/scan/...`.
async fn handle(core: &Core, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response<Body> {
    let rest = uri.path().trim_start_matches("/_wxgate/scan/");
    let query = uri.query().unwrap_or("");
    let get_like = method == Method::GET || method == Method::HEAD;
    let (action, id) = rest.split_once('/').unwrap_or((rest, ""));
    if core.cfg.desktop.mode != DesktopMode::Qr {
        return not_found(headers);
    }
    if action != "c" && !valid_id(id) {
        return not_found(headers);
    }
    match action {
        "s" if get_like => phone_scan(core, headers, id).await,
        "confirm" if method == Method::POST => phone_answer(core, headers, id, query, true).await,
        "cancel" if method == Method::POST => phone_answer(core, headers, id, query, false).await,
        "status" if get_like => status(core, headers, id).await,
        "done" if get_like => done(core, headers, id).await,
        "c" if get_like && id.is_empty() => typed_code(core, query).await,
        _ => not_found(headers),
    }
}

fn valid_id(id: &str) -> bool {
    crate::signin::state::is_valid_state(id)
}

fn key(id: &str) -> String {
    format!("scan:{id}")
}

fn code_key(code: &str) -> String {
    format!("scancode:{code}")
}

/// This browser's nonce, if it carries a valid sealed one.
fn browser_nonce(core: &Core, headers: &HeaderMap) -> Option<String> {
    core.browser_cookie_of(headers, NONCE_COOKIE)
        .filter(|n| valid_id(n))
}

async fn load(core: &Core, id: &str) -> Result<Option<Ticket>, ()> {
    match core.store.get_ephemeral(&key(id)).await {
        Ok(Some(bytes)) => Ok(serde_json::from_slice(&bytes).ok()),
        Ok(None) => Ok(None),
        Err(e) => {
            warn!(error = %e, "session store unavailable while reading a scan ticket");
            Err(())
        }
    }
}

async fn save(core: &Core, id: &str, t: &Ticket) -> Result<(), ()> {
    let left = t.exp.saturating_sub(now_unix()).max(1);
    let bytes = serde_json::to_vec(t).map_err(|_| ())?;
    core.store
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
    let bytes = crate::random::bytes(8);
    let mut s: String = bytes
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect();
    s.insert(4, '-');
    s
}

// ---------------------------------------------------------------- the waiting browser

async fn qr_page(
    core: &Core,
    budget: &TicketBudget,
    headers: &HeaderMap,
    rd: &str,
    client: std::net::IpAddr,
) -> Response<Body> {
    let reply = Reply::of(headers);
    let now = now_unix();
    let ttl = core.cfg.desktop.ticket_ttl.get().as_secs().max(1);
    if !budget.try_take(
        std::time::Instant::now(),
        core.cfg.desktop.ticket_ttl.get(),
        core.cfg.desktop.max_tickets,
    ) {
        metrics()
            .desktop_signins
            .inc(crate::metrics::labels::DesktopSignin(
                crate::config::DesktopMode::Qr,
                crate::metrics::labels::DesktopOutcome::Busy,
            ));
        warn_busy_once();
        let retry = core.start_url(&crate::signin::redirect::strip_code_and_state(rd));
        return SignInError::SigninsBusy.response(reply, Some(retry));
    }
    let existing = browser_nonce(core, headers);
    let nonce = existing
        .clone()
        .unwrap_or_else(crate::signin::state::new_state);
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (browser, os) = classify::describe_user_agent(ua);
    let id = crate::signin::state::new_state();
    let code = random_code();
    let ticket = Ticket {
        b: nonce.clone(),
        rd: crate::signin::redirect::strip_code_and_state(rd),
        browser,
        os,
        ip: client.to_string(),
        t: now,
        exp: now + ttl,
        code: code.clone(),
        st: Status::Pending,
    };
    let stored = save(core, &id, &ticket).await.is_ok()
        && core
            .store
            .put_ephemeral(
                &code_key(&code),
                id.as_bytes(),
                std::time::Duration::from_secs(ttl),
            )
            .await
            .is_ok();
    if !stored {
        return SignInError::StoreUnavailable.response(reply, None);
    }
    metrics()
        .desktop_signins
        .inc(crate::metrics::labels::DesktopSignin(
            crate::config::DesktopMode::Qr,
            crate::metrics::labels::DesktopOutcome::Shown,
        ));

    let origin = &core.cfg.public().origin;
    let scan_url = format!("{origin}/_wxgate/scan/s/{id}");
    let e = crate::pages::escape;
    let simulate = simulate_link(core, &scan_url)
        .map(|href| {
            format!(
                "<p><a id=\"wxgate-simulate\" class=\"btn secondary\" target=\"_blank\" rel=\"noopener\" \
href=\"{}\">模拟手机扫码 · Simulate the phone</a></p>",
                e(&href)
            )
        })
        .unwrap_or_default();
    let renew = core.start_url(&ticket.rd);
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
        // The nonce outlives one ticket so several tabs share it; a day is plenty.
        let cookie =
            core.browser_cookie(NONCE_COOKIE, &nonce, std::time::Duration::from_secs(86400));
        core.push_cookie(&mut resp, &cookie);
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
fn simulate_link(core: &Core, scan_url: &str) -> Option<String> {
    let u: Uri = core.cfg.wechat.authorize_url.parse().ok()?;
    let host = u.host()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let origin = format!("{}://{}", u.scheme_str()?, u.authority()?);
    if !loopback && !origin.eq_ignore_ascii_case(&core.cfg.public().origin) {
        return None;
    }
    Some(format!(
        "{origin}/mock/phone?url={}",
        percent_encoding::utf8_percent_encode(scan_url, crate::signin::COMPONENT)
    ))
}

async fn status(core: &Core, headers: &HeaderMap, id: &str) -> Response<Body> {
    let ticket = match load(core, id).await {
        Ok(t) => t,
        Err(()) => return SignInError::StoreUnavailable.response(Reply::Json, None),
    };
    let Some(t) = ticket else {
        return json(StatusCode::OK, serde_json::json!({ "status": "expired" }));
    };
    if browser_nonce(core, headers).as_deref() != Some(t.b.as_str()) {
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
async fn done(core: &Core, headers: &HeaderMap, id: &str) -> Response<Body> {
    let reply = Reply::of(headers);
    let t = match load(core, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return outcome_page(core, Waiting::Expired, "/", reply),
        Err(()) => return SignInError::StoreUnavailable.response(reply, None),
    };
    if browser_nonce(core, headers).as_deref() != Some(t.b.as_str()) {
        warn!("a scan sign-in was collected from a browser that did not show the code");
        metrics()
            .desktop_signins
            .inc(crate::metrics::labels::DesktopSignin(
                crate::config::DesktopMode::Qr,
                crate::metrics::labels::DesktopOutcome::WrongBrowser,
            ));
        return outcome_page(core, Waiting::WrongBrowser, "/", reply);
    }
    match &t.st {
        Status::Confirmed { .. } => {}
        Status::Cancelled => return outcome_page(core, Waiting::Cancelled, &t.rd, reply),
        Status::Used => return outcome_page(core, Waiting::Used, &t.rd, reply),
        Status::Pending | Status::Scanned { .. } => {
            return outcome_page(core, Waiting::NotYet, &t.rd, reply)
        }
    }
    // Single use: whoever takes the ticket completes it; a racing second request
    // finds it gone (or the `Used` marker written below).
    let taken = match core.store.take_ephemeral(&key(id)).await {
        Ok(Some(bytes)) => serde_json::from_slice::<Ticket>(&bytes).ok(),
        Ok(None) => None,
        Err(_) => return SignInError::StoreUnavailable.response(reply, None),
    };
    let Some(Ticket {
        st: Status::Confirmed { session },
        ..
    }) = taken
    else {
        metrics()
            .desktop_signins
            .inc(crate::metrics::labels::DesktopSignin(
                crate::config::DesktopMode::Qr,
                crate::metrics::labels::DesktopOutcome::Reused,
            ));
        return outcome_page(core, Waiting::Used, &t.rd, reply);
    };
    let _ = save(
        core,
        id,
        &Ticket {
            st: Status::Used,
            ..t.clone()
        },
    )
    .await;
    // The browser's own new session (allowed_openids checked, whatever session it
    // had ended).
    match core
        .establish(headers, Verified::from_session(*session))
        .await
    {
        Ok((s, cookie)) => {
            info!(openid = %s.openid, "signed in a browser by QR scan");
            metrics()
                .desktop_signins
                .inc(crate::metrics::labels::DesktopSignin(
                    crate::config::DesktopMode::Qr,
                    crate::metrics::labels::DesktopOutcome::Success,
                ));
            let mut resp = crate::signin::redirect(&t.rd);
            core.push_cookie(&mut resp, &cookie);
            resp
        }
        Err(e) => e.response(reply, None),
    }
}

// ---------------------------------------------------------------- the phone

async fn phone_scan(core: &Core, headers: &HeaderMap, id: &str) -> Response<Body> {
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
    let t = match load(core, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return phone_outcome(Phone::Expired),
        Err(()) => return SignInError::StoreUnavailable.response(Reply::Page, None),
    };
    let session = match core.session_of(headers).await {
        Ok(Some((s, _))) => s,
        Ok(None) => {
            // Sign the phone in through the normal WeChat authorization, then come back.
            return super::wechat_inapp::authorize(
                core,
                headers,
                &format!("/_wxgate/scan/s/{id}"),
                0,
            );
        }
        Err(e) => return e.response(Reply::Page, None),
    };
    match &t.st {
        Status::Pending => {
            let scanned = Ticket {
                st: Status::Scanned {
                    sid: session.id.clone(),
                },
                ..t.clone()
            };
            if save(core, id, &scanned).await.is_err() {
                return SignInError::StoreUnavailable.response(Reply::Page, None);
            }
        }
        Status::Scanned { sid } if *sid == session.id => {}
        Status::Scanned { .. } => return phone_outcome(Phone::ScannedElsewhere),
        Status::Confirmed { .. } | Status::Used => return phone_outcome(Phone::Used),
        Status::Cancelled => return phone_outcome(Phone::Cancelled),
    }
    confirm_page(core, &t, id, &session)
}

fn confirm_page(core: &Core, t: &Ticket, id: &str, session: &Session) -> Response<Body> {
    let e = crate::pages::escape;
    let csrf = core
        .codec
        .seal(CSRF_PURPOSE, &format!("{}|{id}", session.id));
    let csrf = percent_encoding::utf8_percent_encode(&csrf, crate::signin::COMPONENT).to_string();
    let app = core
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
    core: &Core,
    headers: &HeaderMap,
    id: &str,
    query: &str,
    confirm: bool,
) -> Response<Body> {
    let session = match core.session_of(headers).await {
        Ok(Some((s, _))) => s,
        Ok(None) => return phone_outcome(Phone::Forbidden),
        Err(e) => return e.response(Reply::Page, None),
    };
    let token_ok = crate::query::param(query, "csrf")
        .and_then(|c| core.codec.open(CSRF_PURPOSE, &c))
        .is_some_and(|v| v == format!("{}|{id}", session.id));
    if !token_ok {
        warn!("a scan confirmation without a valid token");
        return phone_outcome(Phone::Forbidden);
    }
    let t = match load(core, id).await {
        Ok(Some(t)) => t,
        Ok(None) => return phone_outcome(Phone::Expired),
        Err(()) => return SignInError::StoreUnavailable.response(Reply::Page, None),
    };
    match &t.st {
        Status::Scanned { sid } if *sid == session.id => {}
        Status::Pending | Status::Scanned { .. } => return phone_outcome(Phone::ScannedElsewhere),
        Status::Confirmed { .. } | Status::Used => return phone_outcome(Phone::Used),
        Status::Cancelled => return phone_outcome(Phone::Cancelled),
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
        metrics()
            .desktop_signins
            .inc(crate::metrics::labels::DesktopSignin(
                crate::config::DesktopMode::Qr,
                crate::metrics::labels::DesktopOutcome::Cancelled,
            ));
        Status::Cancelled
    };
    if save(core, id, &Ticket { st, ..t }).await.is_err() {
        return SignInError::StoreUnavailable.response(Reply::Page, None);
    }
    if confirm {
        info!(openid = %session.openid, "a QR sign-in was confirmed on the phone");
        phone_outcome(Phone::Confirmed)
    } else {
        phone_outcome(Phone::CancelledNow)
    }
}

/// `/_wxgate/scan/c?code=ABCD-2345`: the typed short code, for people who cannot scan.
async fn typed_code(core: &Core, query: &str) -> Response<Body> {
    let typed = crate::query::param(query, "code").unwrap_or_default();
    let norm: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if norm.len() == 8 {
        let code = format!("{}-{}", &norm[..4], &norm[4..]);
        if let Ok(Some(id)) = core.store.get_ephemeral(&code_key(&code)).await {
            if let Ok(id) = String::from_utf8(id) {
                if valid_id(&id) {
                    return crate::signin::redirect(&format!("/_wxgate/scan/s/{id}"));
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

/// What the phone is told after scanning or answering. The name is also sent in the
/// `x-wxgate-scan` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phone {
    Confirmed,
    CancelledNow,
    Cancelled,
    Used,
    ScannedElsewhere,
    Forbidden,
    Expired,
}

impl Phone {
    #[cfg(test)]
    const ALL: [Phone; 7] = [
        Phone::Confirmed,
        Phone::CancelledNow,
        Phone::Cancelled,
        Phone::Used,
        Phone::ScannedElsewhere,
        Phone::Forbidden,
        Phone::Expired,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Phone::Confirmed => "confirmed",
            Phone::CancelledNow => "cancelled_now",
            Phone::Cancelled => "cancelled",
            Phone::Used => "used",
            Phone::ScannedElsewhere => "scanned_elsewhere",
            Phone::Forbidden => "forbidden",
            Phone::Expired => "expired",
        }
    }
}

/// Why the waiting browser's sign-in cannot complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    WrongBrowser,
    Cancelled,
    Used,
    NotYet,
    Expired,
}

impl Waiting {
    #[cfg(test)]
    const ALL: [Waiting; 5] = [
        Waiting::WrongBrowser,
        Waiting::Cancelled,
        Waiting::Used,
        Waiting::NotYet,
        Waiting::Expired,
    ];
}

fn phone_outcome(what: Phone) -> Response<Body> {
    let (status, zh, en, detail_zh, detail) = match what {
        Phone::Confirmed => (
            StatusCode::OK,
            "已确认",
            "Confirmed",
            "电脑正在登录。可以关闭此页面了。",
            "The computer is now signing in. You can close this page.",
        ),
        Phone::CancelledNow => (
            StatusCode::OK,
            "已取消",
            "Cancelled",
            "没有登录任何人。可以关闭此页面了。",
            "Nobody was signed in. You can close this page.",
        ),
        Phone::Cancelled => (
            StatusCode::GONE,
            "已取消",
            "This sign-in was cancelled",
            "请在电脑上重新开始，获取新的二维码。",
            "Start again on the computer to get a new code.",
        ),
        Phone::Used => (
            StatusCode::GONE,
            "二维码已使用",
            "This code has already been used",
            "每个二维码只能登录一次。请在电脑上重新开始，获取新的二维码。",
            "Each code signs in once. Start again on the computer to get a new code.",
        ),
        Phone::ScannedElsewhere => (
            StatusCode::CONFLICT,
            "二维码已被扫描",
            "This code was scanned on another phone",
            "只有最先扫码的手机可以确认。",
            "Only the phone that scanned it first can answer.",
        ),
        Phone::Forbidden => (
            StatusCode::FORBIDDEN,
            "无法确认",
            "This confirmation is not valid",
            "请重新打开扫码后的页面，在那里确认。",
            "Open the scanned page again and answer there.",
        ),
        Phone::Expired => (
            StatusCode::GONE,
            "二维码已过期",
            "This code has expired",
            "请在电脑上刷新页面，获取新的二维码。",
            "Refresh the page on the computer to get a new code.",
        ),
    };
    let mut resp = phone_page(status, zh, en, detail_zh, detail);
    resp.headers_mut().insert(
        "x-wxgate-scan",
        http::HeaderValue::from_static(what.as_str()),
    );
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
fn outcome_page(core: &Core, what: Waiting, rd: &str, reply: Reply) -> Response<Body> {
    let (status, code, zh, en, detail_zh, detail) = match what {
        Waiting::WrongBrowser => (
            StatusCode::FORBIDDEN,
            "scan_wrong_browser",
            "请在显示二维码的浏览器中完成登录",
            "Finish in the browser that showed the code",
            "这次登录是在另一个浏览器中开始的。",
            "This sign-in was started in another browser.",
        ),
        Waiting::Cancelled => (
            StatusCode::GONE,
            "scan_cancelled",
            "已在手机上取消",
            "Cancelled on the phone",
            "没有登录任何人。",
            "Nobody was signed in.",
        ),
        Waiting::Used => (
            StatusCode::GONE,
            "scan_used",
            "二维码已使用",
            "This code has already been used",
            "每个二维码只能登录一次。",
            "Each code signs in once.",
        ),
        Waiting::NotYet => (
            StatusCode::CONFLICT,
            "scan_pending",
            "尚未在手机上确认",
            "Not confirmed on the phone yet",
            "请先用微信扫码，并在手机上确认。",
            "Scan the code with WeChat and confirm on the phone first.",
        ),
        Waiting::Expired => (
            StatusCode::GONE,
            "scan_expired",
            "二维码已过期",
            "This code has expired",
            "请获取新的二维码再扫一次。",
            "Get a new code and scan it again.",
        ),
    };
    if what == Waiting::Expired {
        metrics()
            .desktop_signins
            .inc(crate::metrics::labels::DesktopSignin(
                crate::config::DesktopMode::Qr,
                crate::metrics::labels::DesktopOutcome::Expired,
            ));
    }
    crate::pages::respond(
        &crate::pages::Notice {
            status,
            code,
            title_zh: zh,
            title_en: en,
            detail_zh: detail_zh.into(),
            detail: detail.into(),
            retry: Some(core.start_url(rd)),
        },
        reply,
    )
}

fn not_found(headers: &HeaderMap) -> Response<Body> {
    crate::pages::not_found(Reply::of(headers))
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
pub fn open_in_wechat(core: &Core, headers: &HeaderMap, rd: &str) -> Response<Body> {
    let url = format!("{}{}", core.cfg.public().origin, rd);
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
pub(crate) async fn every_page(core: &Core) -> Vec<(String, Response<Body>)> {
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
    let budget = TicketBudget::default();
    let mut pages = vec![
        (
            "qr".to_string(),
            qr_page(core, &budget, &computer, "/x", ip).await,
        ),
        (
            "qr on a phone".into(),
            qr_page(core, &budget, &phone, "/x", ip).await,
        ),
        (
            "open in wechat".into(),
            open_in_wechat(core, &computer, "/x"),
        ),
        (
            "open in wechat on a phone".into(),
            open_in_wechat(core, &phone, "/x"),
        ),
        (
            "scanned outside wechat".into(),
            phone_scan(core, &phone, "abc").await,
        ),
        ("typed code".into(), typed_code(core, "").await),
        (
            "typed code unknown".into(),
            typed_code(core, "code=ZZZZZZZZ").await,
        ),
        (
            "confirm".into(),
            confirm_page(core, &ticket, "abc", &session),
        ),
    ];
    for what in Phone::ALL {
        pages.push((format!("phone {}", what.as_str()), phone_outcome(what)));
    }
    for what in Waiting::ALL {
        pages.push((
            format!("computer {what:?}"),
            outcome_page(core, what, "/x", Reply::Page),
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
