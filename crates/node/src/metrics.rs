//! Counters and histograms for `/metrics` (Prometheus text format) that are not already kept
//! elsewhere: API requests by route, and notification deliveries. The rest (media, driver,
//! RTP, SIP, calls) is read from where it lives when the page is rendered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds in seconds, for request and delivery latencies.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Distinct (route, method) labels kept; more fall under `other`.
const MAX_ROUTES: usize = 400;

/// A Prometheus histogram with fixed bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` without braces (may be empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let le = match self.bounds.get(i) {
                Some(b) => b.to_string(),
                None => "+Inf".into(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// What `/metrics` reports that no other part keeps.
pub struct Metrics {
    /// API requests by (route, method): latency; and by (route, method, status): count.
    api: Mutex<BTreeMap<(String, String), Histogram>>,
    api_status: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Each delivery attempt's duration, and from the notification's commit to its delivery.
    pub attempt: Histogram,
    pub delivered_after: Histogram,
    pub attempts_ok: AtomicU64,
    pub attempts_failed: AtomicU64,
    pub dead_letters: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            api: Default::default(),
            api_status: Default::default(),
            attempt: Histogram::new(&LATENCY_BOUNDS),
            delivered_after: Histogram::new(&LATENCY_BOUNDS),
            attempts_ok: AtomicU64::new(0),
            attempts_failed: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn api_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut api = self.api.lock().expect("metrics");
        // Routes are bounded by the API; nonsense paths past this many share one label.
        let key = (route.to_string(), method.to_string());
        let route = if api.len() >= MAX_ROUTES && !api.contains_key(&key) {
            "other"
        } else {
            route
        };
        api.entry((route.to_string(), method.to_string()))
            .or_insert_with(|| Histogram::new(&LATENCY_BOUNDS))
            .observe(took);
        drop(api);
        *self
            .api_status
            .lock()
            .expect("metrics")
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
    }

    /// The API and delivery families, in text format.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "ringside_api_request_duration_seconds",
            "histogram",
            "API requests by route and method",
        );
        for ((route, method), h) in self.api.lock().expect("metrics").iter() {
            h.render(
                out,
                "ringside_api_request_duration_seconds",
                &format!("route=\"{route}\",method=\"{method}\""),
            );
        }
        family(
            out,
            "ringside_api_requests_total",
            "counter",
            "API requests by route, method and status",
        );
        for ((route, method, status), n) in self.api_status.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "ringside_api_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        family(
            out,
            "ringside_notification_attempt_duration_seconds",
            "histogram",
            "each POST of a notification to a bot",
        );
        self.attempt
            .render(out, "ringside_notification_attempt_duration_seconds", "");
        family(
            out,
            "ringside_notification_delivery_seconds",
            "histogram",
            "from a notification's commit to its delivery",
        );
        self.delivered_after
            .render(out, "ringside_notification_delivery_seconds", "");
        family(
            out,
            "ringside_notification_attempts_total",
            "counter",
            "delivery attempts by result",
        );
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ringside_notification_attempts_total{{result=\"delivered\"}} {}\nringside_notification_attempts_total{{result=\"failed\"}} {}",
            get(&self.attempts_ok),
            get(&self.attempts_failed)
        );
        family(
            out,
            "ringside_notification_dead_letters_total",
            "counter",
            "notifications dead-lettered after their last attempt",
        );
        let _ = writeln!(
            out,
            "ringside_notification_dead_letters_total {}",
            get(&self.dead_letters)
        );
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A request path as a route template with a bounded set of values: the version dropped,
/// ids replaced by `{id}`, actions kept. Anything unexpected is `other`.
pub fn route_of(segs: &[&str]) -> String {
    const COLLECTIONS: [&str; 12] = [
        "calls",
        "participants",
        "operations",
        "audioroutinggroups",
        "contentsharingsessions",
        "onlinemeetings",
        "users",
        "transcripts",
        "recordings",
        "tenants",
        "apps",
        "legs",
    ];
    let mut out: Vec<String> = vec![];
    let mut after_collection = false;
    for (i, s) in segs.iter().enumerate() {
        let lower = s.to_ascii_lowercase();
        if i == 0 && (lower == "v1.0" || lower == "beta") {
            continue;
        }
        if after_collection {
            out.push("{id}".into());
            after_collection = false;
            continue;
        }
        after_collection = COLLECTIONS.contains(&lower.as_str());
        let word = lower.trim_start_matches("microsoft.graph.");
        let id_like = word.len() > 12 && word.chars().any(|c| c.is_ascii_digit());
        if id_like
            || word.len() > 40
            || !word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            out.push("{id}".into());
        } else {
            out.push(word.to_string());
        }
    }
    if out.len() > 8 {
        return "other".into();
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_actions_and_drop_ids() {
        let r = |p: &str| route_of(&p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>());
        assert_eq!(r("/v1.0/communications/calls"), "/communications/calls");
        assert_eq!(
            r("/beta/communications/calls/8f2a/participants/x1/microsoft.graph.mute"),
            "/communications/calls/{id}/participants/{id}/mute"
        );
        assert_eq!(
            r("/v1.0/communications/calls/abc/PlayPrompt"),
            "/communications/calls/{id}/playprompt"
        );
        assert_eq!(
            r("/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"),
            "/{id}/oauth2/v2.0/token"
        );
        assert_eq!(r("/a/b/c/d/e/f/g/h/i"), "other");
    }

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let h = Histogram::new(&LATENCY_BOUNDS);
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(9));
        let mut out = String::new();
        h.render(&mut out, "x", "route=\"/a\"");
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.01\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{route=\"/a\"} 3\n"), "{out}");
    }
}
