//! Reading the TOML text into [`Config`], and naming the key of whatever went wrong.
//!
//! The key always comes from a parser, never from the text around an error:
//! - a wrong type, value or unknown key: the path serde walked to reach it
//!   (`serde_path_to_error`), e.g. `identity.ttl`, `access.allowed_openids[0]`;
//! - a syntax error (no value can be read at all): the statement the error's offset
//!   falls in, from the events of toml's own parser (`toml_parser`).
//!
//! Both work for any key without a list of keys, so a new section or key is named
//! right with no change here.

use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use toml_parser::parser::{Event, EventKind};

use super::Problem;

/// Deserializes `text`, or the one problem that stopped it (with its key and line).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_problem(text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut key = render_path(e.path());
        let inner = e.inner();
        // serde reports a missing field at the table that lacks it: name the field.
        if let Some(field) = missing_field(inner.message()) {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(&render_segment(field));
        }
        Problem {
            key,
            message: located(text, inner.span().map(|s| s.start), inner.message()),
        }
    })
}

fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let at = e.span().map(|s| s.start);
    Problem {
        key: at.and_then(|at| key_at(text, at)).unwrap_or_default(),
        message: located(text, at, e.message()),
    }
}

/// "line N: message" (1-based), when the error has a place.
fn located(text: &str, at: Option<usize>, message: &str) -> String {
    let message = message.trim();
    match at {
        Some(at) => format!("line {}: {message}", line_of(text, at)),
        None => message.to_string(),
    }
}

pub(super) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// serde's own wording for a missing field: "missing field `name`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}

/// `server.listen`, `routes[2].upstream`, `wechat.verify_files."a.txt"`.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&render_segment(key));
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A key as TOML would write it: bare when it can be, quoted otherwise.
fn render_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The dotted key of the statement holding byte offset `at`: the key of a `key = value`
/// line (with its table), or the table of a `[table]` / `[[array]]` header. None when
/// `at` is outside every statement (say, in a comment before the first table).
pub(super) fn key_at(text: &str, at: usize) -> Option<String> {
    let source = toml_parser::Source::new(text);
    let tokens = source.lex().into_vec();
    let mut events: Vec<Event> = Vec::with_capacity(tokens.len());
    // The errors themselves are toml's to report; only the events' shape is used here.
    toml_parser::parser::parse_document(&tokens, &mut events, &mut ());

    let decode = |e: &Event| -> String {
        let mut key = String::new();
        if let Some(raw) = source.get(e) {
            raw.decode_key(&mut key, &mut ());
        }
        key
    };

    // The current table ("routes[1]"), and how many elements each array of tables has.
    let mut table = String::new();
    let mut array_lengths: Vec<(String, usize)> = Vec::new();
    // The statement being read: its start, its key path, and whether its key is done.
    let mut found: Option<String> = None;
    let mut i = 0;
    while i < events.len() {
        let e = &events[i];
        match e.kind() {
            EventKind::StdTableOpen | EventKind::ArrayTableOpen => {
                let array = e.kind() == EventKind::ArrayTableOpen;
                let start = e.span().start();
                let mut keys = Vec::new();
                let mut end = e.span().end();
                i += 1;
                while i < events.len() {
                    let k = &events[i];
                    end = k.span().end();
                    match k.kind() {
                        EventKind::SimpleKey => keys.push(decode(k)),
                        EventKind::StdTableClose
                        | EventKind::ArrayTableClose
                        | EventKind::Newline => break,
                        _ => {}
                    }
                    i += 1;
                }
                let path = keys
                    .iter()
                    .map(|k| render_segment(k))
                    .collect::<Vec<_>>()
                    .join(".");
                table = if array {
                    // A new element of this array; arrays nested in its previous element
                    // start over.
                    let prefix = format!("{path}[");
                    array_lengths.retain(|(p, _)| !p.starts_with(&prefix));
                    let n = match array_lengths.iter_mut().find(|(p, _)| *p == path) {
                        Some((_, n)) => {
                            *n += 1;
                            *n - 1
                        }
                        None => {
                            array_lengths.push((path.clone(), 1));
                            0
                        }
                    };
                    format!("{path}[{n}]")
                } else {
                    path
                };
                if (start..=end).contains(&at) {
                    return Some(table);
                }
            }
            EventKind::SimpleKey => {
                // A `key = value` statement: its keys up to `=`, then everything up to the
                // end of the line (nested arrays and inline tables included).
                let start = e.span().start();
                let mut keys = vec![decode(e)];
                let mut end = e.span().end();
                let mut in_key = true;
                let mut depth = 0usize;
                i += 1;
                while i < events.len() {
                    let k = &events[i];
                    match k.kind() {
                        EventKind::SimpleKey if in_key => keys.push(decode(k)),
                        EventKind::KeyValSep if in_key => in_key = false,
                        EventKind::ArrayOpen | EventKind::InlineTableOpen => depth += 1,
                        EventKind::ArrayClose | EventKind::InlineTableClose => {
                            depth = depth.saturating_sub(1)
                        }
                        EventKind::Newline if depth == 0 => break,
                        _ => {}
                    }
                    end = k.span().end();
                    i += 1;
                }
                if (start..=end).contains(&at) {
                    let key = keys
                        .iter()
                        .map(|k| render_segment(k))
                        .collect::<Vec<_>>()
                        .join(".");
                    found = Some(if table.is_empty() {
                        key
                    } else {
                        format!("{table}.{key}")
                    });
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_named_by_the_statement_it_is_in() {
        let text = "\
# top comment
[server]
listen = 127.0.0.1:8180
[[routes]]
upstream = \"a\"
[[routes]]
upstream = \"b\"
path = /x
[wechat]
verify_files = { \"MP_verify_a.txt\" = abc }
[bad
";
        let at = |needle: &str| text.find(needle).unwrap();
        let table: &[(usize, Option<&str>)] = &[
            (0, None),
            (at("127.0.0.1"), Some("server.listen")),
            (at("[server]") + 2, Some("server")),
            (at("/x"), Some("routes[1].path")),
            (at("abc"), Some("wechat.verify_files")),
            (at("[bad") + 1, Some("bad")),
        ];
        for (offset, want) in table {
            assert_eq!(key_at(text, *offset).as_deref(), *want, "at {offset}");
        }
    }

    /// A config shape with an array of tables, as `[[routes]]` will be.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct WithRoutes {
        #[serde(default)]
        routes: Vec<Route>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Route {
        upstream: String,
        #[serde(default)]
        strip_prefix: bool,
    }

    #[test]
    fn an_element_of_an_array_of_tables_is_named_by_its_index() {
        let routes = "[[routes]]\nupstream = \"a\"\n[[routes]]\nupstream = \"b\"\n[[routes]]\n";
        let table: &[(&str, &str)] = &[
            ("upstream = 1\n", "routes[2].upstream"),
            (
                "upstream = \"c\"\nstrip_prefix = \"yes\"\n",
                "routes[2].strip_prefix",
            ),
            ("upstream = \"c\"\nstrip = true\n", "routes[2].strip"),
            ("strip_prefix = true\n", "routes[2].upstream"),
            ("upstream = c\n", "routes[2].upstream"),
        ];
        for (last, key) in table {
            let text = format!("{routes}{last}");
            let p = from_str::<WithRoutes>(&text).expect_err("refused");
            assert_eq!(p.key, *key, "{text}: {p}");
        }
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted_as_toml_would() {
        assert_eq!(render_segment("listen"), "listen");
        assert_eq!(render_segment("MP_verify_a.txt"), "\"MP_verify_a.txt\"");
        assert_eq!(render_segment(""), "\"\"");
    }
}
