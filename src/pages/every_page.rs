//! Every page wxgate and its mock show, rendered and read block by block: each sentence
//! must be there in Chinese and in English.
//!
//! A text block (heading, paragraph, button, table cell, list item, label, title) passes
//! when it holds both languages, or when it is a Chinese `<h1>` followed by its English
//! `<h2>` (the title pair every page opens with). Data is not prose: an element marked
//! `translate="no"` (nicknames, codes, addresses, claim values) is left out, as HTML
//! tells translators to. A block fails when it has Chinese but no English word, or
//! English prose (two words in a row) but no Chinese.

/// The blocks of `html` that are in one language only, as `tag: text`.
pub(crate) fn one_language_blocks(html: &str) -> Vec<String> {
    let blocks = blocks(html);
    let mut bad = Vec::new();
    for (i, (tag, text)) in blocks.iter().enumerate() {
        let zh = has_chinese(text);
        let paired = match tag.as_str() {
            "h1" => blocks
                .get(i + 1)
                .is_some_and(|(t, next)| t == "h2" && has_english(next)),
            "h2" => i > 0 && blocks[i - 1].0 == "h1" && has_chinese(&blocks[i - 1].1),
            _ => false,
        };
        let one_language = (zh && !has_english(text)) || (!zh && has_english_prose(text));
        if one_language && !paired {
            bad.push(format!("<{tag}>: {text}"));
        }
    }
    bad
}

const BLOCK_TAGS: &[&str] = &[
    "title", "h1", "h2", "h3", "p", "li", "td", "th", "button", "label", "a", "option",
];

/// `(tag, text)` of every block, inline markup removed, entities decoded.
fn blocks(html: &str) -> Vec<(String, String)> {
    let html = without_elements(html, &["script", "style", "svg", "noscript"]);
    let html = without_untranslated(&html);
    let mut out = Vec::new();
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut rest = html.as_str();
    while let Some(lt) = rest.find('<') {
        if let Some((_, text)) = stack.last_mut() {
            text.push_str(&rest[..lt]);
        }
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let closing = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !BLOCK_TAGS.contains(&name.as_str()) {
            if name == "br" {
                if let Some((_, text)) = stack.last_mut() {
                    text.push(' ');
                }
            }
            continue;
        }
        if closing {
            if let Some(pos) = stack.iter().rposition(|(t, _)| *t == name) {
                let (tag, text) = stack.remove(pos);
                let text = decode(text.split_whitespace().collect::<Vec<_>>().join(" "));
                if !text.is_empty() {
                    out.push((tag, text));
                }
            }
        } else {
            stack.push((name, String::new()));
        }
    }
    out
}

/// `html` without the named elements and what they hold.
fn without_elements(html: &str, names: &[&str]) -> String {
    let mut out = html.to_string();
    for name in names {
        let (open, close) = (format!("<{name}"), format!("</{name}>"));
        while let Some(start) = out.find(&open) {
            let end = out[start..]
                .find(&close)
                .map_or(out.len(), |e| start + e + close.len());
            out.replace_range(start..end, " ");
        }
    }
    out
}

/// `html` without the content of elements marked `translate="no"` (not nested in
/// their own kind, as wxgate's are).
fn without_untranslated(html: &str) -> String {
    let mut out = html.to_string();
    let marker = "translate=\"no\"";
    while let Some(at) = out.find(marker) {
        let Some(open_start) = out[..at].rfind('<') else {
            break;
        };
        let name: String = out[open_start + 1..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let Some(open_end) = out[at..].find('>').map(|e| at + e + 1) else {
            break;
        };
        let close = format!("</{name}>");
        let content_end = out[open_end..]
            .find(&close)
            .map_or(out.len(), |e| open_end + e);
        // Keep the element (its tag may be a block) but not its words.
        out.replace_range(open_start..content_end, &format!("<{name}>"));
    }
    out
}

fn decode(s: String) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn has_chinese(s: &str) -> bool {
    s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

fn is_word(w: &str) -> bool {
    let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    w.len() >= 2
        && w.chars()
            .all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '-')
}

/// Two English words in a row.
fn has_english_prose(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    words.windows(2).any(|w| is_word(w[0]) && is_word(w[1]))
}

/// At least one English word (a one-word heading or button half is English too).
fn has_english(s: &str) -> bool {
    s.split_whitespace().any(is_word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use http::Response;
    use http_body_util::BodyExt as _;

    use crate::body::Body;
    use crate::pages::Reply;
    use crate::proxy::ProxyError;
    use crate::signin::{endpoints, SignInError};

    async fn text(resp: Response<Body>) -> String {
        let bytes = resp.into_body().collect().await.map(|c| c.to_bytes());
        String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
    }

    /// A sign-in in front of the mock (on loopback, so the demo's links show too).
    fn sign_in(same_site: &str) -> crate::signin::Core {
        let toml = format!(
            "[server]\npublic_url = \"http://127.0.0.1:8080\"\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n\
[wechat]\nappid = \"wx0000000000000000\"\nsecret = \"s\"\n\
authorize_url = \"http://127.0.0.1:8081/connect/oauth2/authorize\"\n\
[session]\nsame_site = \"{same_site}\"\n"
        );
        let cfg = crate::config::from_toml(
            &toml,
            std::path::Path::new("."),
            &std::collections::BTreeMap::<String, String>::new(),
        )
        .unwrap();
        let store = crate::session::Store::Memory(crate::session::MemoryStore::new(100));
        crate::signin::Core::new(Arc::new(cfg), Arc::new(store)).unwrap()
    }

    /// Every page wxgate shows a browser and every page of its mock, by name.
    async fn every_page() -> Vec<(String, String)> {
        let auth = sign_in("lax");
        let strict = sign_in("strict");
        let mut pages: Vec<(String, Response<Body>)> = vec![
            ("not found".into(), crate::pages::not_found(Reply::Page)),
            ("bad path".into(), crate::app::bad_path(Reply::Page)),
            (
                "bad host".into(),
                crate::app::bad_host("two Host headers", Reply::Page),
            ),
            (
                "signed out".into(),
                endpoints::signed_out_page(true, Reply::Page),
            ),
            (
                "nothing to sign out".into(),
                endpoints::signed_out_page(false, Reply::Page),
            ),
            (
                "sign-in required".into(),
                endpoints::sign_in_page("/_wxgate/start?rd=/"),
            ),
            ("landing (strict)".into(), strict.land("/")),
        ];
        let errors = [
            SignInError::StateMismatch,
            SignInError::BadRequest(
                "回调中没有有效的 state 参数。",
                "The callback has no valid state.",
            ),
            SignInError::ConsentRefused,
            SignInError::SnapshotUser,
            SignInError::NotAllowed,
            SignInError::CodeRejected,
            SignInError::WechatBusy,
            SignInError::WechatQuota,
            SignInError::WechatUnavailable,
            SignInError::Misconfigured,
            SignInError::WechatOther,
            SignInError::StoreUnavailable,
            SignInError::SigninsBusy,
            SignInError::Internal("x".into()),
        ];
        for e in errors {
            pages.push((
                format!("sign-in {}", e.code()),
                e.response(Reply::Page, Some("/x".into())),
            ));
        }
        for e in [
            ProxyError::BodyTooLarge { limit: 10 },
            ProxyError::ClientBody("x".into()),
            ProxyError::ClientBodyTimeout(std::time::Duration::from_secs(60)),
            ProxyError::Timeout(std::time::Duration::from_secs(1)),
            ProxyError::Connect("x".into()),
            ProxyError::Upstream("x".into()),
            ProxyError::Config("x".into()),
            ProxyError::Request("x".into()),
        ] {
            pages.push((format!("proxy {}", e.kind()), e.to_response(Reply::Page)));
        }
        for r in [
            crate::server::head::Refusal::LineTooLong,
            crate::server::head::Refusal::HeadTooLarge,
            crate::server::head::Refusal::TooManyHeaders,
        ] {
            pages.push((
                format!("request head {}", r.code()),
                crate::server::refusal_page(r, 65536),
            ));
        }
        pages.extend(crate::signin::methods::desktop::every_page(&auth).await);
        for r in crate::wecom::WecomRefusal::ALL {
            pages.push((
                format!("wecom sign-in {}", r.code()),
                r.response(Reply::Page, Some("/x".into())),
            ));
        }
        let mock = crate::mock::MockWechat::new(crate::mock::MockConfig::default());
        pages.extend(crate::mock::every_mock_page(&mock));
        pages.extend(crate::mock::every_wecom_page(&mock));
        pages.extend(
            crate::mock::every_phone_page("<li><a translate=\"no\">Alice</a></li>")
                .into_iter()
                .map(|(n, r)| (n.to_string(), r)),
        );
        let mut out = Vec::new();
        for (name, resp) in pages {
            let html = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            assert!(html, "{name}: not a page");
            out.push((name, text(resp).await));
        }
        let claims = serde_json::json!({
            "sub": "o-test", "nickname": "Alice Smith", "scope": "snsapi_userinfo",
        });
        out.push(("demo app".into(), crate::demo::demo_html(Ok(claims))));
        out.push((
            "demo app without identity".into(),
            crate::demo::demo_html(Err("no identity header".into())),
        ));
        out
    }

    #[tokio::test]
    async fn every_page_says_every_sentence_in_chinese_and_in_english() {
        let pages = every_page().await;
        assert!(pages.len() > 60, "{} pages", pages.len());
        let mut bad = Vec::new();
        for (name, html) in &pages {
            for block in one_language_blocks(html) {
                bad.push(format!("{name}: {block}"));
            }
        }
        assert!(bad.is_empty(), "one language only:\n{}", bad.join("\n"));
    }

    #[test]
    fn the_check_tells_a_bilingual_page_from_a_half_bilingual_one() {
        let table: &[(&str, usize)] = &[
            ("<h1>已确认</h1><h2>Confirmed</h2><p>电脑正在登录。<br>The computer is now signing in.</p>", 0),
            ("<h1>已确认</h1><h2>Confirmed</h2><p>The computer is now signing in.</p>", 1),
            ("<h1>已确认</h1><p>好的</p>", 2),
            ("<p><button>重试 · Try again</button></p>", 0),
            ("<h1>404 Not Found</h1>", 1),
            ("<td translate=\"no\">王小明 🐼</td><td>Chrome 120 · Windows 10</td>", 0),
            ("<p class=\"code\" translate=\"no\">502 · upstream_unreachable</p>", 0),
            ("<script>var a = \"no words here\";</script><p>Mock phone here</p>", 1),
        ];
        for (html, want) in table {
            let bad = one_language_blocks(html);
            assert_eq!(bad.len(), *want, "{html}: {bad:?}");
        }
    }
}
