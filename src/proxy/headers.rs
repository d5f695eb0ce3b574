//! Header editing for the forwarded request and the returned response: hop-by-hop
//! removal, forwarded-for headers, identity-header scrubbing and wxgate's own cookies.
//!
//! Every function here is pure over a `HeaderMap`, so each rule has a table test beside
//! it and the forwarder only decides *when* to apply them.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::Version;
use ipnet::IpNet;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// proxy credentials meant for us rather than the upstream, and `HTTP2-Settings`, which
/// only travels with an h2c upgrade (RFC 9113 §3.2.1) and is never forwarded.
/// Parsed once: removing by `&str` would parse each name again on every request. A
/// static, not a const: a const array is built (and dropped) again at every use.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Whether `name` is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including every header named by any `Connection`
/// header. `TE: trailers` survives (it asks for trailers end to end, gRPC needs it).
///
/// On a request this must run before wxgate adds a header of its own: a client's
/// `Connection` header may only remove what the client sent.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Runs on every request and response. One pass over the names present finds the
    // fixed ones to remove: most messages carry none of them, or only `Connection`,
    // and a removal per fixed name hashed each of the nine names every time.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let wants_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    // `Connection: keep-alive` / `close` / `upgrade` are the usual values: they name
    // nothing beyond the fixed list, so no name is parsed (or allocated) for them.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Upgrade protocols never forwarded whatever `upstream.upgrades` says: an HTTP/2
/// connection opened through wxgate would carry requests past every check it makes.
const NEVER_UPGRADE: [&str; 3] = ["h2c", "h2", "http"];

/// The `Upgrade` value to forward for a request: its protocols that `allowed`
/// (`upstream.upgrades`) names, when it is a real HTTP/1.1 upgrade (`Connection:
/// upgrade` plus an `Upgrade` header). None: the request goes on as a plain request
/// without `Upgrade`, as nginx and Envoy forward it.
pub fn upgrade_protocol(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !asks {
        return None;
    }
    let mut values = headers.get_all(header::UPGRADE).iter();
    let first = values.next()?;
    // The usual case, one protocol that is allowed: passed on as it came.
    if values.next().is_none() {
        let one = first.to_str().ok()?.trim();
        if !one.contains(',') {
            return upgrade_allowed(one, allowed).then(|| first.clone());
        }
    }
    let kept: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|p| upgrade_allowed(p, allowed))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether an `Upgrade` protocol (`name` or `name/version`) is one of `allowed`: an
/// entry without a version allows every version of its protocol. Case is ignored.
pub fn upgrade_allowed(proto: &str, allowed: &[String]) -> bool {
    let name = proto.split('/').next().unwrap_or_default().trim();
    if name.is_empty() || NEVER_UPGRADE.iter().any(|n| name.eq_ignore_ascii_case(n)) {
        return false;
    }
    allowed.iter().any(|a| {
        if a.contains('/') {
            a.eq_ignore_ascii_case(proto)
        } else {
            a.eq_ignore_ascii_case(name)
        }
    })
}

/// Why a request's host cannot be known (RFC 9112 §3.2, RFC 9113 §8.3.1): each is a
/// 400, so that wxgate and the app behind it can never read a different host from
/// the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("more than one Host header")]
    Duplicate,
    #[error("an HTTP/1.1 request without a Host header")]
    Missing,
    #[error("a Host header that differs from the request's :authority")]
    Conflicting,
    #[error("an invalid Host")]
    Invalid,
}

/// The host a request is for. An absolute-form target's authority (HTTP/1) or
/// `:authority` (HTTP/2) wins over `Host`, which is then replaced by it; on HTTP/2 a
/// `host` header that differs from `:authority` is refused.
pub fn request_host(
    version: Version,
    authority: Option<&Authority>,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, HostError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(h) = host {
        if !is_valid_host(h.as_bytes()) {
            return Err(HostError::Invalid);
        }
    }
    match authority {
        Some(a) => {
            let a = a.as_str();
            if !is_valid_host(a.as_bytes()) || a.is_empty() {
                return Err(HostError::Invalid);
            }
            if version == Version::HTTP_2
                && host.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()))
            {
                return Err(HostError::Conflicting);
            }
            if host.is_some_and(|h| h.as_bytes() == a.as_bytes()) {
                return Ok(host.cloned());
            }
            HeaderValue::from_str(a)
                .map(Some)
                .map_err(|_| HostError::Invalid)
        }
        None if host.is_none() && version != Version::HTTP_10 && version != Version::HTTP_09 => {
            Err(HostError::Missing)
        }
        None => Ok(host.cloned()),
    }
}

/// `uri-host [":" port]` (RFC 9110 §7.2), or empty: a registered name, an IPv4 address
/// or a bracketed IP literal, without user info, path or spaces.
fn is_valid_host(h: &[u8]) -> bool {
    if h.is_empty() {
        return true;
    }
    let (host, port) = match h.iter().rposition(|b| *b == b':') {
        // A colon inside brackets is part of an IPv6 literal, not a port.
        Some(i) if !h[i..].contains(&b']') => (&h[..i], Some(&h[i + 1..])),
        _ => (h, None),
    };
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    let host_ok = match host {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
        }
        _ => {
            !host.is_empty()
                && host
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b))
        }
    };
    port_ok && host_ok
}

/// Passes one `Content-Length` value on for a message that carries several equal ones
/// (`2, 2`, or the header twice), which a recipient may read as one (RFC 9110 §8.6)
/// while the next one may not. Different or invalid values are an error.
pub fn single_content_length(headers: &mut HeaderMap) -> Result<(), &'static str> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let mut length: Option<&[u8]> = None;
    for part in headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
    {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err("invalid Content-Length");
        }
        let part = match part.iter().position(|b| *b != b'0') {
            Some(i) => &part[i..],
            None => &b"0"[..],
        };
        if length.is_some_and(|l| l != part) {
            return Err("conflicting Content-Length values");
        }
        length = Some(part);
    }
    let one = length
        .and_then(|l| HeaderValue::from_bytes(l).ok())
        .ok_or("invalid Content-Length")?;
    headers.insert(header::CONTENT_LENGTH, one);
    Ok(())
}

/// What the proxy knows about the hop it received the request on.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedInfo<'a> {
    pub peer: IpAddr,
    /// "http" or "https": how the client reached us.
    pub proto: &'static str,
    /// The Host the client asked for.
    pub host: Option<&'a str>,
    /// Whether the peer is one of `server.trusted_proxies`.
    pub trusted: bool,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For/-Proto/-Host` and RFC 7239 `Forwarded`.
///
/// From a trusted proxy the chain it sent is kept and our hop appended (its `-Proto`
/// and `-Host` describe the original client, so they stay); from anyone else every
/// such header is replaced, so a client cannot claim another address.
pub fn set_forwarded(headers: &mut HeaderMap, info: ForwardedInfo<'_>) {
    let peer = info.peer.to_canonical();
    let host = info.host.filter(|h| is_safe(h) && !h.is_empty());
    // Runs on every proxied request: each header is written into one buffer, sized so
    // the common case (a client, not a trusted proxy) never grows it, and each value
    // is one exact copy of it.
    let mut buf = String::with_capacity(128);

    push_prior(&mut buf, headers, &X_FORWARDED_FOR, info.trusted);
    separate(&mut buf);
    let _ = write!(buf, "{peer}");
    set_built(headers, X_FORWARDED_FOR, &mut buf);

    let proto = first_prior(headers, &X_FORWARDED_PROTO, info.trusted)
        .unwrap_or_else(|| HeaderValue::from_static(info.proto));
    headers.insert(X_FORWARDED_PROTO, proto);

    let xfh = first_prior(headers, &X_FORWARDED_HOST, info.trusted)
        .or_else(|| host.and_then(|h| HeaderValue::from_str(h).ok()));
    match xfh {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }

    push_prior(&mut buf, headers, &header::FORWARDED, info.trusted);
    separate(&mut buf);
    buf.push_str("for=");
    match peer {
        IpAddr::V4(v4) => {
            let _ = write!(buf, "{v4}");
        }
        // RFC 7239 node: IPv6 is bracketed and therefore quoted.
        IpAddr::V6(v6) => {
            let _ = write!(buf, "\"[{v6}]\"");
        }
    }
    if let Some(h) = host {
        buf.push_str(";host=");
        push_forwarded_value(&mut buf, h);
    }
    buf.push_str(";proto=");
    push_forwarded_value(&mut buf, info.proto);
    set_built(headers, header::FORWARDED, &mut buf);
}

/// The values of `name` already on the request that may be passed on.
fn prior_values<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty() && is_safe(s))
}

/// Appends the values of `name` already on the request, comma-joined, when the peer
/// is trusted.
fn push_prior(buf: &mut String, headers: &HeaderMap, name: &HeaderName, trusted: bool) {
    if !trusted {
        return;
    }
    for v in prior_values(headers, name) {
        separate(buf);
        buf.push_str(v);
    }
}

/// The first value of `name` already on the request, when the peer is trusted.
fn first_prior(headers: &HeaderMap, name: &HeaderName, trusted: bool) -> Option<HeaderValue> {
    if !trusted {
        return None;
    }
    let first = prior_values(headers, name).next()?;
    HeaderValue::from_str(first).ok()
}

/// A list separator, unless `buf` is still empty.
fn separate(buf: &mut String) {
    if !buf.is_empty() {
        buf.push_str(", ");
    }
}

/// Replaces `name` with the value built in `buf`, which is left empty for the next one.
fn set_built(headers: &mut HeaderMap, name: HeaderName, buf: &mut String) {
    let value = HeaderValue::from_str(buf);
    buf.clear();
    headers.remove(&name);
    if let Ok(v) = value {
        headers.insert(name, v);
    }
}

/// No byte that could end a header line or a C string, whatever a later hop does.
fn is_safe(s: &str) -> bool {
    !s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// A token as is, anything else (e.g. `host:port`) as a quoted-string.
fn push_forwarded_value(buf: &mut String, s: &str) {
    let token = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        buf.push_str(s);
        return;
    }
    buf.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"') {
            buf.push('\\');
        }
        buf.push(c);
    }
    buf.push('"');
}

/// Whether `peer` is in one of the trusted networks. An IPv4-mapped IPv6 peer (a dual
/// stack listener) matches IPv4 networks.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let canonical = peer.to_canonical();
    trusted
        .iter()
        .any(|net| net.contains(&peer) || net.contains(&canonical))
}

/// Whether two header names are the same as CGI, PHP and WSGI would see them: case
/// ignored, every character that is not a letter or digit alike (PHP turns both `-`
/// and `.` into `_`, so `X.Wxgate.Openid` reaches it as `HTTP_X_WXGATE_OPENID`).
/// Compared in place: this runs for every header of every forwarded request.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            b'_'
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

/// Headers frameworks trust for routing (`X-Original-URL` turns a public path into a
/// protected one inside old Symfony and Zend apps) or for the client's address: a
/// client may not send them; a trusted proxy's are passed as received.
pub const ROUTING_HEADERS: [&str; 8] = [
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-forwarded-port",
    "x-forwarded-server",
];

/// The forwarded headers wxgate writes itself; from a client, any other spelling of
/// them would reach a CGI app under the same name as wxgate's.
const OWN_FORWARDED: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

/// Removes what a client may not tell the upstream: every copy of the identity header
/// and of any `X-Wxgate-*` header, whoever sent it, and, unless the peer is a trusted
/// proxy, the routing and address headers ([`ROUTING_HEADERS`]) and every spelling of
/// the forwarded headers wxgate writes. Names are compared as CGI maps them.
pub fn strip_identity_headers(headers: &mut HeaderMap, configured: &HeaderName, trusted: bool) {
    let target = configured.as_str().as_bytes();
    let prefix = b"x-wxgate-";
    let doomed = |k: &HeaderName| {
        let n = k.as_str().as_bytes();
        same_name(n, target)
            || (n.len() >= prefix.len() && same_name(&n[..prefix.len()], prefix))
            || (!trusted
                && ROUTING_HEADERS
                    .iter()
                    .chain(&OWN_FORWARDED)
                    .any(|r| same_name(n, r.as_bytes())))
    };
    // Most requests carry none: nothing is collected (or allocated) for them.
    if !headers.keys().any(doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Removes wxgate's own cookies from the `Cookie` header(s) and joins what is left into
/// one header (HTTP/2 clients send one per cookie; HTTP/1.1 allows only one).
pub fn remove_cookies(headers: &mut HeaderMap, is_ours: impl Fn(&str) -> bool) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            let ours = std::str::from_utf8(name.trim_ascii()).is_ok_and(&is_ours);
            if !ours {
                kept.push(pair.to_vec());
            }
        }
    }
    headers.remove(header::COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Headers = &'static [(&'static str, &'static str)];

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        let mut v: Vec<_> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = p
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let table: &[(Headers, Headers)] = &[
            (
                &[
                    ("connection", "keep-alive"),
                    ("keep-alive", "timeout=5"),
                    ("accept", "*/*"),
                ],
                &[("accept", "*/*")],
            ),
            (
                &[
                    ("connection", "x-a, X-B"),
                    ("connection", "x-c"),
                    ("x-a", "1"),
                    ("x-b", "2"),
                    ("x-c", "3"),
                    ("x-d", "4"),
                ],
                &[("x-d", "4")],
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("upgrade", "websocket"),
                    ("proxy-connection", "keep-alive"),
                    ("proxy-authorization", "Basic x"),
                    ("trailer", "x-sum"),
                ],
                &[],
            ),
            (&[("te", "gzip, trailers")], &[("te", "trailers")]),
            (&[("te", "gzip")], &[]),
            (
                &[("connection", "te"), ("te", "trailers")],
                &[("te", "trailers")],
            ),
            (
                &[
                    ("connection", "bad header name!, x-ok"),
                    ("x-ok", "1"),
                    ("host", "a"),
                ],
                &[("host", "a")],
            ),
            // Nothing hop-by-hop: left as it is.
            (
                &[("accept", "*/*"), ("x-keep", "1"), ("x-keep", "2")],
                &[("accept", "*/*"), ("x-keep", "1"), ("x-keep", "2")],
            ),
            // A fixed one without any Connection header.
            (
                &[("keep-alive", "timeout=5"), ("x-a", "1")],
                &[("x-a", "1")],
            ),
        ];
        for (input, want) in table {
            let mut h = map(input);
            strip_hop_by_hop(&mut h);
            assert_eq!(pairs(&h), owned(want), "input {input:?}");
        }
    }

    #[test]
    fn only_upgrades_to_allowed_protocols_are_forwarded_and_never_h2c() {
        let websocket = vec!["websocket".to_string()];
        let table: &[(Headers, &[String], Option<&str>)] = &[
            (
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                &websocket,
                Some("websocket"),
            ),
            (
                &[
                    ("connection", "keep-alive, upgrade"),
                    ("upgrade", "WebSocket"),
                ],
                &websocket,
                Some("WebSocket"),
            ),
            // h2c is never forwarded: the request goes on without Upgrade.
            (
                &[
                    ("connection", "Upgrade, HTTP2-Settings"),
                    ("upgrade", "h2c"),
                ],
                &websocket,
                None,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "h2c")],
                &["h2c".to_string(), "websocket".to_string()],
                None,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "HTTP/2.0")],
                &["http".to_string()],
                None,
            ),
            // Of several protocols, only the allowed ones go on.
            (
                &[("connection", "upgrade"), ("upgrade", "h2c, websocket")],
                &websocket,
                Some("websocket"),
            ),
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "foo/2"),
                    ("upgrade", "websocket"),
                ],
                &websocket,
                Some("websocket"),
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "foo/2")],
                &["foo".to_string()],
                Some("foo/2"),
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "foo/3")],
                &["foo/2".to_string()],
                None,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket")],
                &[],
                None,
            ),
            (&[("upgrade", "websocket")], &websocket, None),
            (&[("connection", "upgrade")], &websocket, None),
        ];
        for (input, allowed, want) in table {
            let got = upgrade_protocol(&map(input), allowed);
            assert_eq!(
                got.as_ref().map(|v| v.to_str().unwrap()),
                *want,
                "{input:?} with {allowed:?}"
            );
        }
    }

    #[test]
    fn http2_settings_never_outlives_the_hop() {
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(pairs(&h), owned(&[("accept", "*/*")]));
        // Even when no Connection header names it.
        let mut h = map(&[("http2-settings", "AAMA")]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn a_request_has_one_host_or_is_refused() {
        use HostError::*;
        let v11 = Version::HTTP_11;
        let auth = |a: &str| a.parse::<Authority>().unwrap();
        type Case = (
            Version,
            Option<Authority>,
            Headers,
            Result<Option<&'static str>, HostError>,
        );
        let table: Vec<Case> = vec![
            (
                v11,
                None,
                &[("host", "app.example.com")],
                Ok(Some("app.example.com")),
            ),
            (
                v11,
                None,
                &[("host", "127.0.0.1:8080")],
                Ok(Some("127.0.0.1:8080")),
            ),
            (v11, None, &[("host", "[::1]:8080")], Ok(Some("[::1]:8080"))),
            (v11, None, &[("host", "")], Ok(Some(""))),
            (v11, None, &[], Err(Missing)),
            (Version::HTTP_10, None, &[], Ok(None)),
            (v11, None, &[("host", "a"), ("host", "a")], Err(Duplicate)),
            (v11, None, &[("host", "a"), ("host", "b")], Err(Duplicate)),
            (
                Version::HTTP_10,
                None,
                &[("host", "a"), ("host", "b")],
                Err(Duplicate),
            ),
            (v11, None, &[("host", "a b")], Err(Invalid)),
            (v11, None, &[("host", "a/b")], Err(Invalid)),
            (v11, None, &[("host", "user@a")], Err(Invalid)),
            (v11, None, &[("host", "a:80x")], Err(Invalid)),
            // Absolute form: the target's authority wins over Host (RFC 9112 §3.2.2).
            (
                v11,
                Some(auth("a.example")),
                &[("host", "b.example")],
                Ok(Some("a.example")),
            ),
            (
                v11,
                Some(auth("a.example:81")),
                &[],
                Ok(Some("a.example:81")),
            ),
            (
                v11,
                Some(auth("user@a.example")),
                &[("host", "a.example")],
                Err(Invalid),
            ),
            // HTTP/2: :authority and a different host are refused.
            (
                Version::HTTP_2,
                Some(auth("a.example")),
                &[],
                Ok(Some("a.example")),
            ),
            (
                Version::HTTP_2,
                Some(auth("a.example")),
                &[("host", "A.example")],
                Ok(Some("a.example")),
            ),
            (
                Version::HTTP_2,
                Some(auth("a.example")),
                &[("host", "b.example")],
                Err(Conflicting),
            ),
            (
                Version::HTTP_2,
                None,
                &[("host", "b.example")],
                Ok(Some("b.example")),
            ),
            (Version::HTTP_2, None, &[], Err(Missing)),
        ];
        for (version, authority, headers, want) in table {
            let got = request_host(version, authority.as_ref(), &map(headers));
            let got = got
                .as_ref()
                .map(|h| h.as_ref().map(|v| v.to_str().unwrap()));
            assert_eq!(
                got,
                want.as_ref().map(|h| *h),
                "{version:?} {authority:?} {headers:?}"
            );
        }
    }

    #[test]
    fn equal_content_lengths_are_passed_on_as_one_and_different_ones_refused() {
        let table: &[(Headers, Result<Option<&str>, ()>)] = &[
            (&[("content-length", "2")], Ok(Some("2"))),
            (&[("content-length", "2, 2")], Ok(Some("2"))),
            (
                &[("content-length", "2"), ("content-length", "2")],
                Ok(Some("2")),
            ),
            (&[("content-length", "02, 2")], Ok(Some("2"))),
            (&[("content-length", "0, 00")], Ok(Some("0"))),
            (&[("content-length", "2, 3")], Err(())),
            (&[("content-length", "2"), ("content-length", "3")], Err(())),
            (&[("content-length", "2,")], Err(())),
            (&[("content-length", "2, x")], Err(())),
            (&[], Ok(None)),
        ];
        for (input, want) in table {
            let mut h = map(input);
            let got = single_content_length(&mut h).map(|()| {
                let all: Vec<&str> = h
                    .get_all(header::CONTENT_LENGTH)
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                assert!(all.len() <= 1, "{input:?}: {all:?}");
                all.first().copied()
            });
            assert_eq!(got.map_err(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn forwarded_headers_are_replaced_for_strangers_and_appended_for_trusted_proxies() {
        struct Case {
            sent: &'static [(&'static str, &'static str)],
            peer: &'static str,
            trusted: bool,
            host: Option<&'static str>,
            want: &'static [(&'static str, &'static str)],
        }
        let table = [
            Case {
                sent: &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("forwarded", "for=6.6.6.6"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil"),
                ],
                peer: "10.0.0.1",
                trusted: false,
                host: Some("app.example.com"),
                want: &[
                    ("x-forwarded-for", "10.0.0.1"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-host", "app.example.com"),
                    ("forwarded", "for=10.0.0.1;host=app.example.com;proto=http"),
                ],
            },
            Case {
                sent: &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "5.6.7.8"),
                    ("forwarded", "for=1.2.3.4"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.example.com"),
                ],
                peer: "10.0.0.1",
                trusted: true,
                host: Some("internal:8080"),
                want: &[
                    ("x-forwarded-for", "1.2.3.4, 5.6.7.8, 10.0.0.1"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "app.example.com"),
                    (
                        "forwarded",
                        "for=1.2.3.4, for=10.0.0.1;host=\"internal:8080\";proto=http",
                    ),
                ],
            },
            Case {
                sent: &[],
                peer: "::1",
                trusted: false,
                host: None,
                want: &[
                    ("x-forwarded-for", "::1"),
                    ("x-forwarded-proto", "http"),
                    ("forwarded", "for=\"[::1]\";proto=http"),
                ],
            },
            Case {
                sent: &[],
                peer: "::ffff:192.0.2.7",
                trusted: false,
                host: Some("a\r\nx-injected: 1"),
                want: &[
                    ("x-forwarded-for", "192.0.2.7"),
                    ("x-forwarded-proto", "http"),
                    ("forwarded", "for=192.0.2.7;proto=http"),
                ],
            },
            Case {
                sent: &[("x-forwarded-for", "6.6.6.6")],
                peer: "10.0.0.2",
                trusted: true,
                host: Some(r#"odd"host\"#),
                want: &[
                    ("x-forwarded-for", "6.6.6.6, 10.0.0.2"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-host", r#"odd"host\"#),
                    ("forwarded", r#"for=10.0.0.2;host="odd\"host\\";proto=http"#),
                ],
            },
        ];
        for c in table {
            let mut h = map(c.sent);
            set_forwarded(
                &mut h,
                ForwardedInfo {
                    peer: c.peer.parse().unwrap(),
                    proto: "http",
                    host: c.host,
                    trusted: c.trusted,
                },
            );
            assert_eq!(
                pairs(&h),
                owned(c.want),
                "peer {} sent {:?}",
                c.peer,
                c.sent
            );
        }
    }

    #[test]
    fn trusted_peers_match_their_networks_including_ipv4_mapped_addresses() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let table = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("::ffff:10.9.9.9", true),
            ("::ffff:11.0.0.1", false),
            ("fd12::1", true),
            ("::1", false),
        ];
        for (peer, want) in table {
            assert_eq!(is_trusted(peer.parse().unwrap(), &nets), want, "{peer}");
        }
        assert!(!is_trusted("10.0.0.1".parse().unwrap(), &[]));
    }

    #[test]
    fn identity_headers_go_in_every_spelling_cgi_would_read_alike() {
        let configured = HeaderName::from_static("x-app-user");
        let table: &[(Headers, Headers)] = &[
            (
                &[("x-app-user", "forged"), ("accept", "*/*")],
                &[("accept", "*/*")],
            ),
            (&[("x_app_user", "forged")], &[]),
            (&[("x.app.user", "forged"), ("X~App~User", "forged")], &[]),
            (
                &[
                    ("X_Wxgate_Jwt_Assertion", "forged"),
                    ("x-wxgate-openid", "o"),
                    ("X-WXGATE-NICKNAME", "n"),
                    ("X.Wxgate.Openid", "victim"),
                    ("X~Wxgate~Jwt~Assertion", "forged"),
                    ("x!wxgate#unionid", "u"),
                ],
                &[],
            ),
            (
                &[
                    ("x-wxgateway", "kept"),
                    ("x-app-username", "kept"),
                    // PHP reads two dashes as two underscores: another name.
                    ("x--app-user", "kept"),
                ],
                &[
                    ("x-wxgateway", "kept"),
                    ("x-app-username", "kept"),
                    ("x--app-user", "kept"),
                ],
            ),
        ];
        for trusted in [false, true] {
            for (input, want) in table {
                let mut h = map(input);
                strip_identity_headers(&mut h, &configured, trusted);
                assert_eq!(pairs(&h), owned(want), "{input:?}, trusted {trusted}");
            }
        }
    }

    #[test]
    fn routing_and_address_headers_pass_only_from_trusted_proxies() {
        let configured = HeaderName::from_static("x-wxgate-jwt-assertion");
        let sent: Headers = &[
            ("x-original-url", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("x-forwarded-prefix", "/p"),
            ("x-real-ip", "6.6.6.6"),
            ("x.client.ip", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-server", "evil"),
            ("x_forwarded_for", "6.6.6.6"),
            ("X.Forwarded.Host", "evil"),
            ("accept", "*/*"),
        ];
        let mut h = map(sent);
        strip_identity_headers(&mut h, &configured, false);
        assert_eq!(pairs(&h), owned(&[("accept", "*/*")]));
        let mut h = map(sent);
        strip_identity_headers(&mut h, &configured, true);
        assert_eq!(
            pairs(&h),
            pairs(&map(sent)),
            "a trusted proxy's pass as received"
        );
    }

    #[test]
    fn wxgate_cookies_are_removed_and_the_rest_joined_into_one_header() {
        let ours = |n: &str| n.starts_with("_wxgate");
        let table: &[(&[&str], Option<&str>)] = &[
            (&["a=1; _wxgate=s; b=2"], Some("a=1; b=2")),
            (&["a=1", "_wxgate_state=x", "b=2"], Some("a=1; b=2")),
            (&["_wxgate=s", " _wxgate_state=x ;"], None),
            (&["flag; a=1=2"], Some("flag; a=1=2")),
            (&["wxgate=kept;  _wxgate = s"], Some("wxgate=kept")),
        ];
        for (input, want) in table {
            let mut h = HeaderMap::new();
            for v in *input {
                h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
            }
            remove_cookies(&mut h, ours);
            let got: Vec<&str> = h
                .get_all(header::COOKIE)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{input:?}");
        }
    }
}
