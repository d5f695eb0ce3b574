//! The one validator for every return path (`rd` on start and sign_out, the path kept
//! in the state cookie), and the removal of WeChat's `code`/`state` from it.
//!
//! Open redirects in auth proxies come from echoing a value a browser reads differently
//! from the validator (`/\evil`, `/%09/evil`, `//evil`, fullwidth solidus...). So the
//! accepted value is never echoed: it is taken apart, normalised, and rebuilt from parts
//! that can only form a same-origin path. `@` needs no rule of its own: userinfo exists
//! only after `//`, which is refused, so `/@alice` is a plain path.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::paths::normalize_path;

/// Longest return path kept: it travels in a cookie and a `Location` header.
pub const MAX_RETURN_PATH: usize = 2048;

/// Characters re-encoded in a rebuilt path segment: anything a browser might read as
/// structure (`?`, `#`, `\`), and `%` so a decoded escape cannot be decoded twice.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'/');

/// Unicode characters that some parser, normaliser (NFKC) or eye takes for `/`, `\`, or
/// an invisible separator; none belongs in a return path.
const LOOK_ALIKES: &[char] = &[
    '\u{2044}', // FRACTION SLASH
    '\u{2215}', // DIVISION SLASH
    '\u{2216}', // SET MINUS
    '\u{2571}', // BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
    '\u{2572}', // BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
    '\u{29F5}', // REVERSE SOLIDUS OPERATOR
    '\u{29F8}', // BIG SOLIDUS
    '\u{29F9}', // BIG REVERSE SOLIDUS
    '\u{FE68}', // SMALL REVERSE SOLIDUS
    '\u{FF0F}', // FULLWIDTH SOLIDUS
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS
    '\u{0338}', // COMBINING LONG SOLIDUS OVERLAY
    '\u{0337}', // COMBINING SHORT SOLIDUS OVERLAY
    '\u{FF0E}', // FULLWIDTH FULL STOP
    '\u{FF1A}', // FULLWIDTH COLON
    '\u{FF20}', // FULLWIDTH COMMERCIAL AT
    '\u{00A0}', // NO-BREAK SPACE
    '\u{1680}', // OGHAM SPACE MARK
    '\u{3000}', // IDEOGRAPHIC SPACE
    '\u{FEFF}', // ZERO WIDTH NO-BREAK SPACE
];

/// Schemes a browser would run or render inline if they ever reached a `Location`.
const SCRIPT_SCHEMES: &[&str] = &["javascript:", "vbscript:", "data:"];

/// Validates a return path and rebuilds it; `None` means "ignore it and use `/`".
///
/// Accepts only a same-origin path: `/` alone or `/` followed by anything but `/` or
/// `\`. The path is normalised (dots resolved, slashes collapsed) and re-encoded, the
/// query kept with its escapes tidied, the fragment dropped.
pub fn safe_return_path(rd: &str) -> Option<String> {
    if rd.is_empty() || rd.len() > MAX_RETURN_PATH || !has_only_safe_chars(rd) {
        return None;
    }
    let without_fragment = rd.split('#').next().unwrap_or_default();
    let (raw_path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    if !raw_path.starts_with('/') || raw_path.starts_with("//") {
        return None;
    }
    if !decodings_stay_safe(raw_path) {
        return None;
    }
    // Lossy decoding is fine for matching but would change where the user lands. (A
    // literal U+FFFD is a valid character: comparing the output for U+FFFD refused
    // the rebuilt form of such a path, which then no longer validated to itself.)
    if percent_decode_str(raw_path).decode_utf8().is_err() {
        return None;
    }
    let normalized = normalize_path(raw_path)?;
    let mut rebuilt = String::with_capacity(rd.len());
    for segment in normalized.split('/').skip(1) {
        rebuilt.push('/');
        rebuilt.extend(utf8_percent_encode(segment, PATH_SEGMENT));
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        rebuilt.push('?');
        rebuilt.push_str(&reencode_query(q));
    }
    // Belt and braces: whatever the steps above did, the result is a local path.
    let local = rebuilt.starts_with('/') && !rebuilt.starts_with("//") && !rebuilt.contains('\\');
    (local && rebuilt.len() <= MAX_RETURN_PATH).then_some(rebuilt)
}

/// Refuses raw controls (a browser strips tabs and newlines, turning `/\t/evil` into
/// `//evil`), backslashes, C1 controls, zero-width/bidi marks and look-alikes.
fn has_only_safe_chars(s: &str) -> bool {
    s.chars().all(|c| {
        !(c.is_control()
            || c == '\\'
            || LOOK_ALIKES.contains(&c)
            || ('\u{200B}'..='\u{200F}').contains(&c)
            || ('\u{2028}'..='\u{202E}').contains(&c)
            || ('\u{2060}'..='\u{206F}').contains(&c))
    })
}

/// Decodes the path repeatedly (an intermediary may decode it again) and refuses it if
/// any decoding holds `//`, a `\`, a control or a look-alike, or names a
/// script scheme. A path still changing after four decodings is refused outright.
fn decodings_stay_safe(raw_path: &str) -> bool {
    let mut current = raw_path.to_string();
    for _ in 0..4 {
        let lower = current.to_ascii_lowercase();
        if current.contains("//")
            || !has_only_safe_chars(&current)
            || SCRIPT_SCHEMES.iter().any(|s| lower.contains(s))
        {
            return false;
        }
        let decoded = percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            return true;
        }
        current = decoded;
    }
    false
}

/// Keeps valid `%XX` escapes, encodes everything else a URL may not carry raw.
fn reencode_query(q: &str) -> String {
    let bytes = q.as_bytes();
    let mut out = String::with_capacity(q.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let is_escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if is_escape {
            out.push_str(&q[i..i + 3]);
            i += 3;
            continue;
        }
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

/// Removes `code` and `state` (WeChat's callback parameters, also when percent-encoded)
/// from a path-and-query, keeping every other parameter in order.
pub fn strip_code_and_state(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            if pair.is_empty() {
                return false;
            }
            let name = pair.split('=').next().unwrap_or_default();
            let name = percent_decode_str(&name.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            name != "code" && name != "state"
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths_are_rebuilt_from_their_parts() {
        let table: &[(&str, &str)] = &[
            ("/", "/"),
            ("/orders", "/orders"),
            ("/orders/", "/orders/"),
            ("/orders?id=7&tab=a", "/orders?id=7&tab=a"),
            ("/orders#top", "/orders"),
            ("/a/./b/../c", "/a/c"),
            ("/a b", "/a%20b"),
            ("/文章/1", "/%E6%96%87%E7%AB%A0/1"),
            ("/%E6%96%87", "/%E6%96%87"),
            ("/100%25", "/100%25"),
            ("/a%3Fb", "/a%3Fb"),
            ("/@alice", "/@alice"),
            ("/p?next=http://x.example/", "/p?next=http://x.example/"),
            ("/p?q=a b", "/p?q=a%20b"),
            ("/p?q=100%", "/p?q=100%25"),
            ("/p?", "/p"),
            ("/wiki/Help:Contents", "/wiki/Help:Contents"),
            // A literal U+FFFD is a character like any other (found by fuzzing: its
            // rebuilt form used to be refused).
            ("/\u{FFFD}/x", "/%EF%BF%BD/x"),
            ("/%EF%BF%BD/x", "/%EF%BF%BD/x"),
        ];
        for (rd, want) in table {
            assert_eq!(safe_return_path(rd).as_deref(), Some(*want), "rd={rd:?}");
            assert_eq!(
                safe_return_path(want).as_deref(),
                Some(*want),
                "fixed point"
            );
        }
    }

    #[test]
    fn anything_that_could_leave_the_origin_is_refused() {
        let table: &[&str] = &[
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            "/\r/evil.com",
            "/\0/evil.com",
            "/%09/evil.com",
            "/%2f/evil.com",
            "/%2F%2Fevil.com",
            "/%5cevil.com",
            "/%252f%252fevil.com",
            "/%25252f%25252fevil.com",
            "/a//b",
            "https://evil.com",
            "http:/evil.com",
            "evil.com",
            "javascript:alert(1)",
            "/javascript:alert(1)",
            "/x/%6Aavascript:alert(1)",
            "/data:text/html,x",
            "/\u{FF0F}evil.com",
            "/\u{2215}evil.com",
            "/\u{2044}evil.com",
            "/\u{FE68}evil.com",
            "/%EF%BC%8Fevil.com",
            "/\u{200B}/evil.com",
            "/%C2%85/evil.com",
            "/%FF",
            "/static/..;/admin",
        ];
        for rd in table {
            assert_eq!(safe_return_path(rd), None, "rd={rd:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(2048))), None);
        assert!(safe_return_path(&format!("/{}", "a".repeat(2047))).is_some());
    }

    #[test]
    fn code_and_state_are_removed_and_the_rest_kept_in_order() {
        let table: &[(&str, &str)] = &[
            ("/p", "/p"),
            ("/p?code=1&state=2", "/p"),
            ("/p?a=1&code=x&b=2&state=y&c=3", "/p?a=1&b=2&c=3"),
            ("/p?co%64e=x&st%61te=y&z=1", "/p?z=1"),
            ("/p?code", "/p"),
            ("/p?codex=1&mystate=2", "/p?codex=1&mystate=2"),
            ("/p?a=1&&b=2", "/p?a=1&b=2"),
            ("/p?", "/p"),
        ];
        for (input, want) in table {
            assert_eq!(strip_code_and_state(input), *want, "input={input:?}");
        }
    }
}
