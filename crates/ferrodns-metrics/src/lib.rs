//! ferrodns's Prometheus metrics.
//!
//! Two kinds:
//!
//! - **Events** (queries, API requests, transfers, NOTIFY, lease renewals)
//!   are counted where they happen, into the process's [`global`] set. The
//!   answer path counts into per-worker [`dns::WorkerStats`]; the rest use
//!   the `prometheus` crate's counters and histograms.
//! - **State** (zones and their serials, the leader and its term, the
//!   database pool, the cache) is read by the node when it is scraped and
//!   handed to [`render`] as metric families built with [`Family`].
//!
//! The exposition is Prometheus's text format 0.0.4, which `promtool check
//! metrics` checks (the `prometheus` crate writes it; the OpenMetrics
//! writer of `prometheus-client` names counter families without `_total`,
//! which promtool reads as help-less samples).

pub mod dns;

use std::sync::{Arc, LazyLock};

pub use prometheus;
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Latency buckets for work that takes milliseconds to seconds (API
/// requests, database transactions, transfers, lease renewals), in seconds.
pub const SLOW_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's event metrics.
pub struct Metrics {
    registry: Registry,
    pub dns: Arc<dns::DnsStats>,
    /// API requests by route template, method and status.
    pub api_requests: IntCounterVec,
    pub api_duration: HistogramVec,
    /// Control-plane database transactions (zone writes), by operation.
    pub db_transaction_duration: HistogramVec,
    /// Zone transfers served, by type (AXFR, IXFR) and result.
    pub transfers_out: IntCounterVec,
    /// Zone transfers taken by the secondary role, by type and result.
    pub transfers_in: IntCounterVec,
    pub notify_sent: IntCounter,
    pub notify_acknowledged: IntCounter,
    /// Time from a commit to every tracked secondary serving its serial.
    pub propagation: Histogram,
    /// How long a lease renewal (or a bid for the lease) took.
    pub lease_renewal: Histogram,
    pub upstream_rtt: Histogram,
    /// Sampled exchanges written to the query log, and dropped.
    pub query_log_written: IntCounter,
    pub query_log_dropped: IntCounter,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let dns = Arc::new(dns::DnsStats::default());
        registry.register(Box::new(dns::DnsCollector::new(dns.clone()))).expect("the DNS metrics register once");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("a valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let metric =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(SLOW_BUCKETS.to_vec());
            let metric = HistogramVec::new(opts, labels).expect("a valid metric");
            registry.register(Box::new(metric.clone())).expect("registered once");
            metric
        };
        Metrics {
            api_requests: counter_vec(
                "ferrodns_api_requests_total",
                "API requests, by route template, method and status.",
                &["route", "method", "status"],
            ),
            api_duration: histogram_vec(
                "ferrodns_api_request_duration_seconds",
                "Time to answer an API request, by route template and method.",
                &["route", "method"],
            ),
            db_transaction_duration: histogram_vec(
                "ferrodns_db_transaction_duration_seconds",
                "Time of control-plane database transactions, from begin to commit, by operation.",
                &["operation"],
            ),
            transfers_out: counter_vec(
                "ferrodns_transfers_out_total",
                "Zone transfers served to secondaries, by type and result.",
                &["type", "result"],
            ),
            transfers_in: counter_vec(
                "ferrodns_transfers_in_total",
                "Zone transfers taken from primaries, by type and result.",
                &["type", "result"],
            ),
            notify_sent: counter(
                "ferrodns_notify_sent_total",
                "NOTIFY messages sent to secondaries, retries included.",
            ),
            notify_acknowledged: counter(
                "ferrodns_notify_acknowledged_total",
                "NOTIFY messages a secondary acknowledged.",
            ),
            propagation: histogram(
                "ferrodns_propagation_seconds",
                "Time from a zone change's commit until every tracked secondary serves its serial.",
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            lease_renewal: histogram(
                "ferrodns_lease_renewal_duration_seconds",
                "Time of one lease renewal or bid for the lease, in the database.",
                &SLOW_BUCKETS,
            ),
            upstream_rtt: histogram(
                "ferrodns_forward_upstream_rtt_seconds",
                "Round-trip time of answered queries to forwarders.",
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            ),
            query_log_written: counter(
                "ferrodns_query_log_written_total",
                "Sampled queries written to the query log (dnstap), each as a query and a response message.",
            ),
            query_log_dropped: counter(
                "ferrodns_query_log_dropped_total",
                "Sampled queries the query log dropped: its queue was full or its reader away.",
            ),
            dns,
            registry,
        }
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's event metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// The text exposition of the event metrics and the node's `state`.
pub fn render(state: Vec<MetricFamily>) -> String {
    let mut families = GLOBAL.registry.gather();
    families.extend(state.into_iter().filter(|family| !family.get_metric().is_empty()));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut out = Vec::with_capacity(16 * 1024);
    if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
        // Only a family built wrongly can fail; say so in the scrape.
        return format!("# ferrodns cannot encode its metrics: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family of node state, built at scrape time.
pub struct Family {
    inner: MetricFamily,
}

impl Family {
    pub fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::GAUGE)
    }

    /// A counter whose value the node keeps itself (the cache's hits).
    pub fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::COUNTER)
    }

    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut inner = MetricFamily::default();
        inner.set_name(name.to_string());
        inner.set_help(help.to_string());
        inner.set_field_type(kind);
        Family { inner }
    }

    /// Adds a sample with these labels.
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }

    /// Adds a sample with these labels.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        let mut metric = proto::Metric::default();
        metric.set_label(
            labels
                .iter()
                .map(|(name, value)| {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name(name.to_string());
                    pair.set_value(value.to_string());
                    pair
                })
                .collect(),
        );
        if self.inner.get_field_type() == MetricType::COUNTER {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.inner.mut_metric().push(metric);
    }

    pub fn build(self) -> MetricFamily {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_families_join_the_events_in_name_order() {
        global().dns.owned().query(dns::Transport::Udp, 28);
        global().api_requests.with_label_values(&["/v1/zones", "GET", "200"]).inc();
        let text = render(vec![
            Family::gauge("ferrodns_zones", "Zones served.").sample(&[], 3.0).build(),
            Family::gauge("ferrodns_empty", "Nothing.").build(),
        ]);
        assert!(text.contains("ferrodns_dns_queries_total{qtype=\"AAAA\",transport=\"udp\"} 1"), "{text}");
        assert!(text.contains("# TYPE ferrodns_zones gauge\nferrodns_zones 3\n"), "{text}");
        assert!(!text.contains("ferrodns_empty"), "families without samples are left out");
        let api = text.find("ferrodns_api_requests_total").unwrap();
        assert!(api < text.find("ferrodns_zones").unwrap());
    }
}
