//! The escape syntax of the hostile-input corpora under `tests/data/`.

/// Decodes the corpus escape syntax documented at the top of `tests/data/hostile_rd.txt`.
pub fn unescape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&hex, 16).expect("\\xNN takes two hex digits");
                out.push(char::from_u32(code).expect("valid \\xNN"));
            }
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "\\u needs {{");
                let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let code = u32::from_str_radix(&hex, 16).expect("\\u{NNNN} takes hex");
                out.push(char::from_u32(code).expect("valid \\u{NNNN}"));
            }
            Some('L') => {
                // \L{N}: N repetitions of the character that follows the closing brace.
                assert_eq!(chars.next(), Some('{'), "\\L needs {{");
                let n: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let n: usize = n.parse().expect("\\L{N} takes a count");
                let c = chars.next().expect("\\L{N} needs a character");
                out.extend(std::iter::repeat_n(c, n));
            }
            other => panic!("unknown escape \\{other:?} in {line:?}"),
        }
    }
    out
}

/// The non-comment, non-empty lines of `tests/data/NAME`, with their line numbers.
pub fn lines(name: &str) -> Vec<(usize, String)> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("corpus file is committed");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

/// When `tests/data/hostile_header_names.txt` says a client's header is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Always,
    Untrusted,
    Never,
}

/// The header names of `tests/data/hostile_header_names.txt`.
pub fn header_names() -> Vec<(Removed, String)> {
    lines("hostile_header_names.txt")
        .into_iter()
        .map(|(n, line)| {
            let (when, name) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("line {n}: `always|untrusted|kept NAME`"));
            let when = match when {
                "always" => Removed::Always,
                "untrusted" => Removed::Untrusted,
                "kept" => Removed::Never,
                other => panic!("line {n}: unknown word {other:?}"),
            };
            (when, name.to_string())
        })
        .collect()
}
