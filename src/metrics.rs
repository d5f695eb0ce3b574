//! Process-wide Prometheus metrics, rendered in the text exposition format.
//!
//! Hand-rolled on atomics: the hot path (every request) touches only fixed arrays, and
//! the labelled families (sign-ins, WeChat calls, store operations) are small enough
//! for a mutex-guarded map. One global registry keeps every module free of plumbing;
//! tests that read a metric compare before/after values.
//!
//! Every value is kept per thread in a shard of its own cache line and summed when
//! read: with one shared counter, the worker threads (one per core) passed its line
//! back and forth on each of the dozen updates a request makes, as nginx's workers
//! never do. A shard is still atomic or locked, so a value is right whichever thread
//! updates it; the shard only decides whose cache it lives in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Shards per value: one per worker thread up to `SHARDS - 1`, the last for every
/// other thread (the main runtime, the CLI, tests).
const SHARDS: usize = 8;

/// A value alone on its cache line (two lines: adjacent-line prefetch pairs them).
#[repr(align(128))]
struct Padded<T>(T);

/// The values one per shard.
struct Sharded<T>([Padded<T>; SHARDS]);

impl<T> Sharded<T> {
    /// The calling thread's shard.
    fn local(&self) -> &T {
        let i = crate::workers::current().map_or(SHARDS - 1, |w| w % (SHARDS - 1));
        &self.0[i].0
    }
    fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

pub mod labels;
use labels::*;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Gauge {
    name: &'static str,
    help: &'static str,
    /// Each shard holds what its thread added minus what it took away; a value taken
    /// on another thread than it was added leaves one shard negative, and the sum right.
    value: Sharded<AtomicI64>,
}

impl Gauge {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: Sharded([const { Padded(AtomicI64::new(0)) }; SHARDS]),
        }
    }
    pub fn inc(&self) {
        self.value.local().fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.value.local().fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.value.all().map(|v| v.load(Ordering::Relaxed)).sum()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} gauge",
            self.name, self.help, self.name
        );
        let _ = writeln!(out, "{} {}", self.name, self.get());
    }
}

/// A counter family keyed by its label type `L`: a family takes only its own labels,
/// and always all of them.
pub struct CounterVec<L> {
    name: &'static str,
    help: &'static str,
    values: Sharded<Mutex<BTreeMap<Vec<String>, u64>>>,
    labels: PhantomData<fn(L)>,
}

impl<L: Labels> CounterVec<L> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            values: Sharded([const { Padded(Mutex::new(BTreeMap::new())) }; SHARDS]),
            labels: PhantomData,
        }
    }
    pub fn inc(&self, labels: L) {
        self.add(labels, 1);
    }
    pub fn add(&self, labels: L, n: u64) {
        labels.with_values(|values| self.add_values(values, n));
    }
    fn add_values(&self, labels: &[&str], n: u64) {
        let mut map = lock(self.values.local());
        // Families hold a handful of label sets: a scan finds one without allocating
        // a key, which matters for the per-request session store counters.
        if let Some((_, v)) = map.iter_mut().find(|(k, _)| same_labels(k, labels)) {
            *v += n;
            return;
        }
        map.insert(owned(labels), n);
    }
    /// Current value for these label values as `/metrics` shows them (0 when never
    /// counted).
    pub fn get(&self, labels: &[&str]) -> u64 {
        let key = owned(labels);
        self.merged().get(&key).copied().unwrap_or(0)
    }
    /// Sum over every label combination.
    pub fn total(&self) -> u64 {
        self.merged().values().sum()
    }
    /// Every shard's counts added up.
    fn merged(&self) -> BTreeMap<Vec<String>, u64> {
        let mut all = BTreeMap::new();
        for shard in self.values.all() {
            for (k, n) in lock(shard).iter() {
                *all.entry(k.clone()).or_insert(0) += n;
            }
        }
        all
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter",
            self.name, self.help, self.name
        );
        for (values, n) in self.merged().iter() {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                self.name,
                label_pairs(L::NAMES, values),
                n
            );
        }
    }
}

/// A latency histogram in seconds, keyed by its label type `L`.
pub struct HistogramVec<L> {
    name: &'static str,
    help: &'static str,
    values: Sharded<Mutex<BTreeMap<Vec<String>, HistogramData>>>,
    labels: PhantomData<fn(L)>,
}

#[derive(Default, Clone)]
struct HistogramData {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl<L: Labels> HistogramVec<L> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            values: Sharded([const { Padded(Mutex::new(BTreeMap::new())) }; SHARDS]),
            labels: PhantomData,
        }
    }
    pub fn observe(&self, labels: L, d: Duration) {
        labels.with_values(|values| self.observe_values(values, d));
    }
    fn observe_values(&self, labels: &[&str], d: Duration) {
        let secs = d.as_secs_f64();
        let mut map = lock(self.values.local());
        if !map.keys().any(|k| same_labels(k, labels)) {
            map.insert(
                owned(labels),
                HistogramData {
                    buckets: vec![0; LATENCY_BUCKETS.len()],
                    ..Default::default()
                },
            );
        }
        let Some((_, h)) = map.iter_mut().find(|(k, _)| same_labels(k, labels)) else {
            return;
        };
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }
    /// Observations for these label values as `/metrics` shows them.
    pub fn count(&self, labels: &[&str]) -> u64 {
        let key = owned(labels);
        self.merged().get(&key).map(|h| h.count).unwrap_or(0)
    }
    /// Every shard's observations added up.
    fn merged(&self) -> BTreeMap<Vec<String>, HistogramData> {
        let mut all: BTreeMap<Vec<String>, HistogramData> = BTreeMap::new();
        for shard in self.values.all() {
            for (k, h) in lock(shard).iter() {
                let sum = all.entry(k.clone()).or_insert_with(|| HistogramData {
                    buckets: vec![0; LATENCY_BUCKETS.len()],
                    ..Default::default()
                });
                for (a, b) in sum.buckets.iter_mut().zip(&h.buckets) {
                    *a += b;
                }
                sum.sum += h.sum;
                sum.count += h.count;
            }
        }
        all
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        for (values, h) in self.merged().iter() {
            render_histogram(
                out,
                self.name,
                &label_pairs(L::NAMES, values),
                &h.buckets,
                h.sum,
                h.count,
            );
        }
    }
}

/// The per-request histogram: lock-free, no labels.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    shards: Sharded<HistogramShard>,
}

struct HistogramShard {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            shards: Sharded(
                [const {
                    Padded(HistogramShard {
                        buckets: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len()],
                        sum_nanos: AtomicU64::new(0),
                        count: AtomicU64::new(0),
                    })
                }; SHARDS],
            ),
        }
    }
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let h = self.shards.local();
        // Buckets are cumulative; find the first that holds it and count it there only,
        // summing at render time keeps observe to one atomic add per call.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.shards
            .all()
            .map(|h| h.count.load(Ordering::Relaxed))
            .sum()
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS.len());
        let mut acc = 0;
        for i in 0..LATENCY_BUCKETS.len() {
            acc += self
                .shards
                .all()
                .map(|h| h.buckets[i].load(Ordering::Relaxed))
                .sum::<u64>();
            cumulative.push(acc);
        }
        let nanos: u64 = self
            .shards
            .all()
            .map(|h| h.sum_nanos.load(Ordering::Relaxed))
            .sum();
        let sum = nanos as f64 / 1e9;
        render_histogram(out, self.name, "", &cumulative, sum, self.count());
    }
}

fn render_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: &[u64],
    sum: f64,
    count: u64,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (b, n) in LATENCY_BUCKETS.iter().zip(buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    if labels.is_empty() {
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    } else {
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn same_labels(key: &[String], labels: &[&str]) -> bool {
    key.len() == labels.len() && key.iter().zip(labels).all(|(k, l)| k == l)
}

fn owned(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|s| s.to_string()).collect()
}

fn label_pairs(names: &[&str], values: &[String]) -> String {
    let mut s = String::new();
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{n}=\"{v}\"");
    }
    s
}

/// Every metric wxgate exports. Names are part of the operator contract.
pub struct Metrics {
    requests: Sharded<[AtomicU64; 5]>,
    pub request_duration: Histogram,
    pub in_flight: Gauge,
    pub connections_open: Gauge,
    pub connections_limited: CounterVec<Listener>,
    pub upstream_duration: Histogram,
    pub upstream_errors: CounterVec<UpstreamError>,
    pub signins: CounterVec<Signin>,
    pub wechat_calls: CounterVec<WechatCall>,
    pub wechat_duration: HistogramVec<WechatEndpoint>,
    pub sessions_created: CounterVec<SessionStore>,
    pub sessions_ended: CounterVec<SessionEnded>,
    pub identity_tokens: CounterVec<TokenSource>,
    pub store_ops: CounterVec<StoreOp>,
    pub store_errors: CounterVec<StoreOp>,
    pub store_duration: HistogramVec<StoreOp>,
    pub desktop_signins: CounterVec<DesktopSignin>,
    pub hub: CounterVec<HubRequest>,
    pub config_reloads: CounterVec<Reload>,
    pub denied: CounterVec<Denied>,
    pub body_timeouts: CounterVec<BodySide>,
}

impl Metrics {
    const fn new() -> Self {
        Self {
            requests: Sharded([const { Padded([const { AtomicU64::new(0) }; 5]) }; SHARDS]),
            request_duration: Histogram::new(
                "wxgate_http_request_duration_seconds",
                "Time from request head to response head on the public listener.",
            ),
            in_flight: Gauge::new("wxgate_http_requests_in_flight", "Requests being served now."),
            connections_open: Gauge::new("wxgate_connections_open", "Client connections open now."),
            connections_limited: CounterVec::new(
                "wxgate_connections_limited_total",
                "Connections that had to wait because server.max_connections was reached.",
            ),
            upstream_duration: Histogram::new(
                "wxgate_upstream_duration_seconds",
                "Time from forwarding a request to the upstream's response head.",
            ),
            upstream_errors: CounterVec::new(
                "wxgate_upstream_errors_total",
                "Requests the upstream could not answer, by kind.",
            ),
            signins: CounterVec::new(
                "wxgate_signins_total",
                "WeChat sign-in attempts by outcome.",
            ),
            wechat_calls: CounterVec::new(
                "wxgate_wechat_api_calls_total",
                "Calls to the WeChat API by endpoint and errcode (0 = success, \"transport\" = no answer).",
            ),
            wechat_duration: HistogramVec::new(
                "wxgate_wechat_api_duration_seconds",
                "Latency of calls to the WeChat API.",
            ),
            sessions_created: CounterVec::new(
                "wxgate_sessions_created_total",
                "Sessions created, by store.",
            ),
            sessions_ended: CounterVec::new(
                "wxgate_sessions_ended_total",
                "Sessions ended, by reason.",
            ),
            identity_tokens: CounterVec::new(
                "wxgate_identity_tokens_total",
                "Identity headers attached, by source (signed = new signature, cached = reused).",
            ),
            store_ops: CounterVec::new(
                "wxgate_session_store_operations_total",
                "Session store operations by store and operation.",
            ),
            store_errors: CounterVec::new(
                "wxgate_session_store_errors_total",
                "Session store operations that failed or timed out.",
            ),
            store_duration: HistogramVec::new(
                "wxgate_session_store_duration_seconds",
                "Latency of session store operations.",
            ),
            desktop_signins: CounterVec::new(
                "wxgate_desktop_signins_total",
                "Sign-ins from browsers outside WeChat, by mode and outcome.",
            ),
            hub: CounterVec::new(
                "wxgate_hub_requests_total",
                "Requests to the hub's OpenID Connect endpoints, by endpoint and outcome.",
            ),
            config_reloads: CounterVec::new(
                "wxgate_config_reloads_total",
                "Configuration reloads by result.",
            ),
            denied: CounterVec::new(
                "wxgate_requests_denied_total",
                "Requests refused before reaching the upstream, by reason.",
            ),
            body_timeouts: CounterVec::new(
                "wxgate_body_timeouts_total",
                "Exchanges ended because a body sent nothing for longer than server.body_timeout (side=\"client\") or upstream.body_timeout (side=\"upstream\").",
            ),
        }
    }

    pub fn count_response(&self, status: u16, took: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests.local()[class].fetch_add(1, Ordering::Relaxed);
        self.request_duration.observe(took);
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP wxgate_http_requests_total Responses on the public listener by status class.\n# TYPE wxgate_http_requests_total counter\n");
        for class in 0..5 {
            let n: u64 = self
                .requests
                .all()
                .map(|r| r[class].load(Ordering::Relaxed))
                .sum();
            let _ = writeln!(
                out,
                "wxgate_http_requests_total{{class=\"{}xx\"}} {n}",
                class + 1
            );
        }
        self.request_duration.render(&mut out);
        self.in_flight.render(&mut out);
        self.connections_open.render(&mut out);
        self.connections_limited.render(&mut out);
        self.upstream_duration.render(&mut out);
        self.upstream_errors.render(&mut out);
        self.signins.render(&mut out);
        self.wechat_calls.render(&mut out);
        self.wechat_duration.render(&mut out);
        self.sessions_created.render(&mut out);
        self.sessions_ended.render(&mut out);
        self.identity_tokens.render(&mut out);
        self.store_ops.render(&mut out);
        self.store_errors.render(&mut out);
        self.store_duration.render(&mut out);
        self.desktop_signins.render(&mut out);
        self.hub.render(&mut out);
        self.config_reloads.render(&mut out);
        self.denied.render(&mut out);
        self.body_timeouts.render(&mut out);
        out
    }
}

static METRICS: Metrics = Metrics::new();

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_histograms_in_prometheus_text() {
        let m = Metrics::new();
        m.signins.inc(Signin::Success);
        m.signins.inc(Signin::Success);
        m.wechat_duration
            .observe(WechatEndpoint("access_token"), Duration::from_millis(3));
        m.count_response(302, Duration::from_micros(700));
        let text = m.render();
        assert!(
            text.contains("wxgate_signins_total{outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("wxgate_http_requests_total{class=\"3xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("wxgate_wechat_api_duration_seconds_bucket{endpoint=\"access_token\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("wxgate_wechat_api_duration_seconds_bucket{endpoint=\"access_token\",le=\"0.0025\"} 0"), "{text}");
        assert!(
            text.contains("wxgate_http_request_duration_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wxgate_http_request_duration_seconds_bucket{le=\"0.0005\"} 0"),
            "{text}"
        );
    }

    /// Each worker counts in its own shard: what the page shows is the sum over all
    /// threads, and a gauge raised on one thread and lowered on another comes back to 0.
    #[test]
    fn counts_made_on_different_threads_add_up() {
        static M: Metrics = Metrics::new();
        let workers = crate::workers::Workers::start(3, "metrics-test").unwrap();
        let mut done = Vec::new();
        for (i, h) in workers.handles().enumerate() {
            done.push(h.spawn(async move {
                for _ in 0..=i {
                    M.signins.inc(Signin::Success);
                    M.count_response(200, Duration::from_millis(2));
                    M.upstream_duration.observe(Duration::from_millis(2));
                    M.store_duration.observe(
                        StoreOp(crate::config::StoreKind::Memory, Op::Load),
                        Duration::from_micros(100),
                    );
                }
                M.in_flight.inc();
                M.connections_open.inc();
            }));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for d in done {
                d.await.unwrap();
            }
        });
        // Lowered here, on a thread that is not a worker: another shard.
        for _ in 0..3 {
            M.in_flight.dec();
        }
        let text = M.render();
        for line in [
            "wxgate_signins_total{outcome=\"success\"} 6",
            "wxgate_http_requests_total{class=\"2xx\"} 6",
            "wxgate_http_request_duration_seconds_bucket{le=\"0.001\"} 0",
            "wxgate_http_request_duration_seconds_bucket{le=\"0.0025\"} 6",
            "wxgate_http_request_duration_seconds_count 6",
            "wxgate_http_request_duration_seconds_sum 0.012",
            "wxgate_upstream_duration_seconds_count 6",
            "wxgate_session_store_duration_seconds_count{store=\"memory\",op=\"load\"} 6",
            "wxgate_http_requests_in_flight 0",
            "wxgate_connections_open 3",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert_eq!(M.signins.get(&["success"]), 6);
        assert_eq!(M.signins.total(), 6);
        assert_eq!(M.store_duration.count(&["memory", "load"]), 6);
        assert_eq!(M.request_duration.count(), 6);
        // ...and each worker's counts sit in its own shard.
        let per_shard: Vec<u64> = M
            .signins
            .values
            .all()
            .map(|m| lock(m).values().sum())
            .collect();
        assert_eq!(per_shard, [1, 2, 3, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_pairs(&["a"], &["x\"y\\z\n".into()]),
            "a=\"x\\\"y\\\\z\\n\""
        );
    }
}
