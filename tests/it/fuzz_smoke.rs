//! The fuzz targets (`fuzz/targets.rs`) on stable Rust: each runs over a fixed number
//! of deterministic pseudo-random mutations of a seed corpus (tests/data and a few
//! built-in seeds). Not a substitute for `cargo fuzz` runs (see fuzz/README.md), but
//! every CI run explores the same few thousand inputs per target and any crash found
//! there is kept below as a regression input.

#[path = "../../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::support::corpus::unescape;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Fragments that mean something to one of the parsers under test.
const TOKENS: &[&[u8]] = &[
    b"/",
    b"//",
    b"\\",
    b".",
    b"..",
    b"/../",
    b"/./",
    b"%",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%5c",
    b"%25",
    b"%00",
    b"%0d%0a",
    b"\r\n",
    b"\n",
    b"\t",
    b"\0",
    b";",
    b"..;",
    b"?",
    b"#",
    b"@",
    b":",
    b"=",
    b"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"'",
    b"\xef\xbc\x8f",
    b"\xe2\x81\x84",
    b"\xff",
    b"\xc0\xaf",
    b"javascript:",
    b"_wxgate=",
    b"_wxgate_st_",
    b"errcode",
    b"\"errcode\":",
    b"-1",
    b"0",
    b"1e400",
    b"18446744073709551616",
    b"true",
    b"null",
    b"[server]\n",
    b"[session]\n",
    b"= \"",
    b"\"\"\"",
    b"'''",
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"\r\n\r\n",
    b"content-length: ",
    b"Content-Length: 5, 5",
    b"transfer-encoding: ",
    b"chunked",
    b"gzip, chunked",
    b"connection: close",
    b"trailer: x-sum",
    b"0\r\n\r\n",
    b"0\r\nx-sum: 1\r\n\r\n",
    b"5;ext=1\r\nhello\r\n",
    b"100 Continue\r\n\r\n",
    b" 204 No Content",
    b" 304 Not Modified",
    b"fffffffffffffffff",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if !v.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 | 4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            5 => {
                // Splice in a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(32)).min(other.len());
                v.splice(at..at, other[from..to].iter().copied());
            }
            _ if !v.is_empty() => {
                // Repeat a slice: long inputs and repeated structure.
                let from = rng.below(v.len());
                let to = (from + 1 + rng.below(16)).min(v.len());
                let piece = v[from..to].repeat(1 + rng.below(8));
                v.splice(at..at, piece);
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

/// Runs `target` on every seed, then on `rounds` mutations; a panic names the input.
fn run(name: &str, seeds: &[Vec<u8>], rounds: usize, target: fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let inputs = seeds
        .iter()
        .cloned()
        .chain((0..rounds).map(|_| mutate(&mut rng, seeds)));
    for (i, input) in inputs.enumerate() {
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!(
                "{name}: input #{i} panicked; add it to the regressions: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

fn corpus_file(file: &str) -> Vec<Vec<u8>> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .expect("corpus file is committed")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let value = l.split(" => ").next().unwrap_or(l);
            unescape(value).into_bytes()
        })
        .collect()
}

fn rd_seeds() -> Vec<Vec<u8>> {
    let mut seeds = corpus_file("hostile_rd.txt");
    seeds.extend(corpus_file("safe_rd.txt"));
    seeds
}

fn texts(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn return_path_validation_survives_mutated_input() {
    run("rd", &rd_seeds(), 20_000, targets::rd);
}

#[test]
fn path_normalisation_survives_mutated_input() {
    let mut seeds = rd_seeds();
    seeds.extend(texts(&[
        "/static/..;/admin",
        "/a/%2e%2e/b",
        "/a/%252e%252e/b",
        "/api//v1/./x/",
        "/%E6%96%87%E7%AB%A0/1",
    ]));
    run("path", &seeds, 20_000, targets::path);
}

#[test]
fn session_cookie_decoding_survives_mutated_input() {
    let seeds = texts(&[
        r#"{"i":"abc","a":"wx0000000000000000","o":"oUser","s":0,"c":1,"p":1,"e":99999999999}"#,
        r#"{"i":"abc","a":"wx","o":"o","u":"un","s":1,"n":"Eve 🌸","h":"https://x/y","t":"tok","r":"ref","c":1,"p":1,"e":99999999999}"#,
        "_wxgate=AAAA; other=1; _wxgate=",
        "_wxgate=\"quoted\"; _wxgate=%20",
        "",
    ]);
    run("session_cookie", &seeds, 4_000, targets::session_cookie);
}

#[test]
fn state_cookie_decoding_survives_mutated_input() {
    let seeds = texts(&[
        "abc123\n{\"rd\":\"/orders/42\",\"t\":1700000000,\"r\":0,\"d\":false,\"w\":false}",
        "Zz9\n{\"rd\":\"//evil\",\"t\":99999999999999999999,\"r\":255,\"d\":true}",
        "_wxgate_st_abc\nAAAA",
        "a\n{\"rd\":\"/\",\"t\":0}",
    ]);
    run("state_cookie", &seeds, 4_000, targets::state_cookie);
}

#[test]
fn config_parsing_survives_mutated_input() {
    let example =
        std::fs::read_to_string(format!("{}/proxy.example.toml", env!("CARGO_MANIFEST_DIR")))
            .expect("proxy.example.toml");
    let mut seeds = vec![example.into_bytes()];
    seeds.extend(texts(&[
        "[server]\npublic_url = \"https://a.example\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[wechat]\nappid = \"wx0000000000000000\"\nsecret = \"s\"\n",
        "[server]\nmax_body_size = \"10MB\"\nheader_read_timeout = \"1s\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        "[session]\nttl = \"7d\"\nstore = \"redis\"\nredis_url = \"redis://:pw@127.0.0.1:1/0\"\n",
        "[access]\npublic_paths = [\"/static/*\", \"/a/**\"]\n",
    ]));
    run("config", &seeds, 1_500, targets::config);
}

#[test]
fn wechat_response_parsing_survives_mutated_input() {
    let seeds = texts(&[
        "\x00{\"access_token\":\"t\",\"expires_in\":7200,\"refresh_token\":\"r\",\"openid\":\"o\",\"scope\":\"snsapi_base\"}",
        "\x00{\"errcode\":40029,\"errmsg\":\"invalid code, rid: 6543a1b2-1d2e3f4a-5b6c7d8e\"}",
        "\x00{\"openid\":\"o\",\"nickname\":\"n\",\"sex\":1,\"headimgurl\":\"\",\"privilege\":[],\"unionid\":\"u\"}",
        "\x00<html><body>502 Bad Gateway</body></html>",
        "\u{7f}{\"errcode\":-1,\"errmsg\":\"system error hints: [ req_id: AbC123 ]\"}",
        "\x00[1,2,3]",
    ]);
    run("wechat_response", &seeds, 10_000, targets::wechat_response);
}

/// Upstream responses of every framing; the first byte picks GET (even) or HEAD (odd).
fn h1_response_seeds() -> Vec<Vec<u8>> {
    texts(&[
        "\0HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
        "\x01HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        "\0HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 7\r\n\r\n",
        "\0HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "\0HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "\0HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
        "\0HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "\0HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        "\0HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "\0HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        "\0HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\ncontent-length: 10\r\n\r\n",
        "\0HTTP/1.1 204 No Content\r\n\r\n",
        "\0HTTP/1.1 500 Oops\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 3\r\n\r\nbad",
        "\0HTTP/1.1 200 \r\ncontent-length: 0\r\n\r\n",
        "\0HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok",
    ])
}

#[test]
fn upstream_responses_are_read_as_hypers_client_reads_them_or_refused() {
    run(
        "h1_response",
        &h1_response_seeds(),
        5_000,
        targets::h1_response,
    );
}

// ---------------------------------------------------------------- regressions

/// Inputs a fuzz run once crashed or flagged; each must stay harmless.
#[test]
fn inputs_found_by_fuzzing_stay_harmless() {
    type Case = (&'static str, fn(&[u8]), &'static [u8]);
    let cases: &[Case] = &[
        // The rebuilt form of a path holding a literal U+FFFD did not re-validate.
        ("rd", targets::rd, "/\u{FFFD}/[::1]:8080".as_bytes()),
        ("rd", targets::rd, b"/\xff/x"),
        // The inline exchange read these as chunked where hyper's client reads to the
        // close, or read a trailer section hyper's client refuses: it now refuses them.
        (
            "h1_response",
            targets::h1_response,
            b"\0HTTP/1.1 200 OK\r\ntransfer-encoding: \xd3gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "h1_response",
            targets::h1_response,
            b"\0HTTP/1.1 200 OK\r\ntransfer-encoding: chunked,\r\n\r\n0\r\n\r\n",
        ),
        (
            "h1_response",
            targets::h1_response,
            b"\0HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-sum: 7\r\n\n\r\nok\r\n",
        ),
    ];
    for (name, target, input) in cases {
        if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
            panic!("{name}: regression input panicked: {input:?}");
        }
    }
}
