//! The compiled route table: which route a (host, path) selects, in time that does not
//! grow with the number of routes.
//!
//! The rule is a list's: the first route (in file order) whose host and path both
//! match wins. The index keeps that answer while looking at only the routes that could
//! match: routes are grouped by host (an exact-name map, a wildcard map keyed by the
//! domain, and the routes naming no host), each group indexing its paths in an exact
//! map and a trie of prefix segments. A lookup collects, per group that applies, the
//! smallest route number whose path matches, and keeps the smallest of those.
//! [`RouteTable::scan`] is the list itself, the reference the index is tested against.

use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::host::{normalize_request_host, parent_domains, HostPattern};
use super::path::PathPattern;
use super::Route;

/// The index's maps hash with a multiply-rotate hash (the Firefox one): their keys come
/// from the config, never from requests, so no client can make them collide on
/// purpose, and SipHash's cost per lookup was most of a lookup's time.
type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Routes in file order, and the index over them.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    exact: HashMap<Box<str>, PathIndex>,
    under: HashMap<Box<str>, PathIndex>,
    any: PathIndex,
}

/// The paths of the routes of one host group, each mapped to its smallest route number.
#[derive(Debug, Default)]
struct PathIndex {
    exact: HashMap<Box<str>, u32>,
    prefixes: Node,
}

/// A segment of a prefix; `here` is the first route whose prefix ends at this node.
#[derive(Debug, Default)]
struct Node {
    here: Option<u32>,
    children: HashMap<Box<str>, Node>,
}

impl PathIndex {
    /// Routes arrive in file order: a slot already taken keeps the earlier route.
    fn insert(&mut self, path: Option<&PathPattern>, n: u32) {
        match path {
            Some(PathPattern::Exact(p)) => {
                self.exact.entry(p.as_str().into()).or_insert(n);
            }
            Some(PathPattern::Prefix(p)) => {
                let mut node = &mut self.prefixes;
                if !p.is_empty() {
                    for seg in p[1..].split('/') {
                        node = node.children.entry(seg.into()).or_default();
                    }
                }
                node.here.get_or_insert(n);
            }
            None => {
                self.prefixes.here.get_or_insert(n);
            }
        }
    }

    /// The smaller of `best` and the first route here matching `path`.
    fn first_match(&self, path: &str, mut best: u32) -> u32 {
        let mut node = &self.prefixes;
        if let Some(n) = node.here {
            best = best.min(n);
        }
        if !node.children.is_empty() {
            for seg in path.get(1..).unwrap_or_default().split('/') {
                match node.children.get(seg) {
                    Some(next) => node = next,
                    None => break,
                }
                if let Some(n) = node.here {
                    best = best.min(n);
                }
                if node.children.is_empty() {
                    break;
                }
            }
        }
        if !self.exact.is_empty() {
            if let Some(&n) = self.exact.get(path) {
                best = best.min(n);
            }
        }
        best
    }
}

impl RouteTable {
    /// Indexes routes given in file order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut t = RouteTable::default();
        for (n, r) in routes.iter().enumerate() {
            let n = n as u32;
            let group = match &r.host {
                None => &mut t.any,
                Some(HostPattern::Exact(h)) => t.exact.entry(h.as_str().into()).or_default(),
                Some(HostPattern::Under(d)) => t.under.entry(d.as_str().into()).or_default(),
            };
            group.insert(r.path.as_ref(), n);
        }
        t.routes = routes;
        t
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route for a request: `host` as the request gave it (port, case and a
    /// trailing dot allowed), `path` normalised. `None`: the default `[upstream]`.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        if self.routes.is_empty() {
            return None;
        }
        let mut best = self.any.first_match(path, u32::MAX);
        if !self.exact.is_empty() || !self.under.is_empty() {
            if let Some(h) = host.and_then(normalize_request_host) {
                if let Some(group) = self.exact.get(&*h) {
                    best = group.first_match(path, best);
                }
                if !self.under.is_empty() {
                    for domain in parent_domains(&h) {
                        if let Some(group) = self.under.get(domain) {
                            best = group.first_match(path, best);
                        }
                    }
                }
            }
        }
        self.routes.get(best as usize)
    }

    /// The same answer as [`select`](Self::select), by trying every route in order.
    pub fn scan(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let host = host.and_then(normalize_request_host);
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host, &host) {
                (None, _) => true,
                (Some(p), Some(h)) => p.matches(h),
                (Some(_), None) => false,
            };
            host_ok && r.path.as_ref().is_none_or(|p| p.matches(path))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: Option<&str>) -> Route {
        Route::for_test(
            host.map(|h| HostPattern::parse(h).unwrap()),
            path.map(|p| PathPattern::parse(p).unwrap()),
        )
    }

    fn table(spec: &[(Option<&str>, Option<&str>)]) -> RouteTable {
        let routes = spec.iter().enumerate().map(|(i, (h, p))| Route {
            index: i,
            ..route(*h, *p)
        });
        RouteTable::new(routes.collect())
    }

    fn pick(t: &RouteTable, host: &str, path: &str) -> Option<usize> {
        t.select(Some(host), path).map(|r| r.index)
    }

    #[test]
    fn three_apps_by_host_and_path() {
        let t = table(&[
            (Some("crm.example.com"), None),
            (None, Some("/blog/*")),
            (Some("*.shop.example.com"), Some("/api/*")),
        ]);
        assert_eq!(pick(&t, "crm.example.com", "/blog/x"), Some(0));
        assert_eq!(pick(&t, "app.example.com", "/blog"), Some(1));
        assert_eq!(pick(&t, "a.shop.example.com", "/api/v1"), Some(2));
        assert_eq!(pick(&t, "A.B.Shop.Example.COM.:443", "/api"), Some(2));
        assert_eq!(pick(&t, "shop.example.com", "/api/v1"), None);
        assert_eq!(pick(&t, "a.shop.example.com", "/apix"), None);
        assert_eq!(pick(&t, "app.example.com", "/"), None);
        assert_eq!(t.select(None, "/blog/1").map(|r| r.index), Some(1));
    }

    #[test]
    fn the_first_route_in_the_file_wins_whatever_group_it_is_in() {
        let t = table(&[
            (None, Some("/a/b/*")),
            (Some("x.example.com"), Some("/a/*")),
            (Some("*.example.com"), None),
            (None, Some("/a/*")),
        ]);
        assert_eq!(pick(&t, "x.example.com", "/a/b/c"), Some(0));
        assert_eq!(pick(&t, "x.example.com", "/a/c"), Some(1));
        assert_eq!(pick(&t, "y.example.com", "/a/c"), Some(2));
        assert_eq!(pick(&t, "other.net", "/a/c"), Some(3));
    }

    /// A small deterministic generator, so the corpus is the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    #[test]
    fn the_index_gives_the_list_scans_answer_on_a_generated_corpus() {
        let hosts = [
            "example.com",
            "a.example.com",
            "b.example.com",
            "a.b.example.com",
            "evilexample.com",
            "example.net",
            "*.example.com",
            "*.b.example.com",
            "*.example.net",
        ];
        let patterns = [
            "/", "/*", "/a", "/a/*", "/a/b", "/a/b/*", "/b/*", "/a/", "/ab/*", "/a/b/c",
        ];
        let req_hosts = [
            "example.com",
            "a.example.com",
            "A.EXAMPLE.COM.",
            "b.example.com:8080",
            "a.b.example.com",
            "x.a.b.example.com",
            "evilexample.com",
            "a.evilexample.com",
            "example.net",
            "z.example.net",
            "other.org",
            "a..example.com",
            "[::1]:80",
        ];
        let req_paths = [
            "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/bc", "/ab", "/ab/c", "/b", "/c/d",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut checked = 0;
        for _ in 0..300 {
            let n = 1 + (rng.next() % 12) as usize;
            let spec: Vec<(Option<&str>, Option<&str>)> = (0..n)
                .map(|_| {
                    let h = (rng.next() % 3 != 0).then(|| rng.pick(&hosts));
                    let p = (rng.next() % 4 != 0).then(|| rng.pick(&patterns));
                    (h, p)
                })
                .collect();
            let t = table(&spec);
            for h in req_hosts {
                for p in req_paths {
                    let fast = t.select(Some(h), p).map(|r| r.index);
                    let slow = t.scan(Some(h), p).map(|r| r.index);
                    assert_eq!(fast, slow, "routes {spec:?}, request {h} {p}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 40_000);
    }
}
