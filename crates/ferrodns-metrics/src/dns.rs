//! What the answer path counts: queries by transport and type, responses
//! by rcode, truncations, drops, malformed queries, and how long answers
//! take.
//!
//! Each UDP worker owns a [`WorkerStats`] and is its only writer, so a count
//! is a plain load and store of a relaxed atomic (no locked instruction,
//! no cache line shared with another worker). Transports whose tasks share
//! one (TCP, the forwarding thread's misses) count with `fetch_add`. A
//! scrape sums the workers; the sums only grow, as counters must.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

/// The transports counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
}

const TRANSPORTS: [&str; 2] = ["udp", "tcp"];

/// Query types counted by name; the rest are `other`.
const QTYPES: [(u16, &str); 18] = [
    (1, "A"),
    (2, "NS"),
    (5, "CNAME"),
    (6, "SOA"),
    (12, "PTR"),
    (15, "MX"),
    (16, "TXT"),
    (28, "AAAA"),
    (33, "SRV"),
    (35, "NAPTR"),
    (43, "DS"),
    (48, "DNSKEY"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (251, "IXFR"),
    (252, "AXFR"),
    (255, "ANY"),
    (257, "CAA"),
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// The slot of `qtype` in [`QTYPES`] (the last slot for the rest): a jump
/// table, not a search, on the answer path.
#[inline(always)]
fn qtype_slot(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        2 => 1,
        5 => 2,
        6 => 3,
        12 => 4,
        15 => 5,
        16 => 6,
        28 => 7,
        33 => 8,
        35 => 9,
        43 => 10,
        48 => 11,
        64 => 12,
        65 => 13,
        251 => 14,
        252 => 15,
        255 => 16,
        257 => 17,
        _ => QTYPES.len(),
    }
}

/// Header rcodes counted by name; the rest are `other`.
const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
    "NOTZONE",
];
const RCODE_SLOTS: usize = RCODES.len() + 1;

/// Upper bounds of the answer-time histogram, in seconds.
pub const ANSWER_BUCKETS: [f64; 14] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
const ANSWER_BUCKET_NANOS: [u64; 14] = {
    let mut nanos = [0u64; 14];
    let mut i = 0;
    while i < nanos.len() {
        nanos[i] = (ANSWER_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    nanos
};

#[derive(Default)]
struct PerTransport {
    queries: [AtomicU64; QTYPE_SLOTS],
    responses: [AtomicU64; RCODE_SLOTS],
    truncated: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    /// Non-cumulative: answers that took at most bucket i's bound and
    /// more than bucket i-1's; the last slot is above every bound.
    answer_buckets: [AtomicU64; ANSWER_BUCKETS.len() + 1],
    answer_nanos: AtomicU64,
}

/// One writer's counts. See the module documentation for who may write.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    transports: [PerTransport; 2],
    /// True when several threads write: counts then use `fetch_add`.
    shared: bool,
}

impl WorkerStats {
    #[inline(always)]
    fn add(&self, counter: &AtomicU64, n: u64) {
        if self.shared {
            counter.fetch_add(n, Relaxed);
        } else {
            // The only writer: a load and a store, never a torn or lost count.
            counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    /// A query of this type was read.
    #[inline]
    pub fn query(&self, transport: Transport, qtype: u16) {
        self.add(&self.transports[transport as usize].queries[qtype_slot(qtype)], 1);
    }

    /// A response left, its header in `reply` (at least 4 octets).
    #[inline]
    pub fn response(&self, transport: Transport, reply: &[u8]) {
        let Some(&flags) = reply.get(3) else { return };
        let rcode = (flags & 0x0f) as usize;
        let counts = &self.transports[transport as usize];
        self.add(&counts.responses[rcode.min(RCODES.len())], 1);
        if reply[2] & 0x02 != 0 {
            self.add(&counts.truncated, 1);
        }
    }

    /// A query got no response (rate-limited, a full queue, unreadable).
    #[inline]
    pub fn dropped(&self, transport: Transport) {
        self.add(&self.transports[transport as usize].dropped, 1);
    }

    /// A query did not parse, or did not fit the receive buffer.
    #[inline]
    pub fn malformed(&self, transport: Transport) {
        self.add(&self.transports[transport as usize].malformed, 1);
    }

    /// `count` answers each took `nanos`.
    #[inline]
    pub fn answered(&self, transport: Transport, nanos: u64, count: u64) {
        let counts = &self.transports[transport as usize];
        let slot = ANSWER_BUCKET_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(ANSWER_BUCKETS.len());
        self.add(&counts.answer_buckets[slot], count);
        self.add(&counts.answer_nanos, nanos.saturating_mul(count));
    }
}

/// Every writer's counts, summed at each scrape.
#[derive(Default)]
pub struct DnsStats {
    writers: Mutex<Vec<Arc<WorkerStats>>>,
}

impl DnsStats {
    /// Counts for one thread (a UDP worker) that alone writes them.
    pub fn owned(&self) -> Arc<WorkerStats> {
        self.register(false)
    }

    /// Counts that several tasks or threads write.
    pub fn shared(&self) -> Arc<WorkerStats> {
        self.register(true)
    }

    fn register(&self, shared: bool) -> Arc<WorkerStats> {
        let stats = Arc::new(WorkerStats { shared, ..WorkerStats::default() });
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).push(stats.clone());
        stats
    }

    fn sum(&self, read: impl Fn(&PerTransport) -> &AtomicU64, transport: usize) -> u64 {
        let writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.iter().map(|w| read(&w.transports[transport]).load(Relaxed)).sum()
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut pair = proto::LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

fn counter(labels: Vec<proto::LabelPair>, value: u64) -> proto::Metric {
    let mut counter = proto::Counter::default();
    counter.set_value(value as f64);
    let mut metric = proto::Metric::default();
    metric.set_label(labels);
    metric.set_counter(counter);
    metric
}

/// The collector a registry scrapes for [`DnsStats`].
pub struct DnsCollector {
    stats: Arc<DnsStats>,
    descs: Vec<Desc>,
}

const FAMILIES: [(&str, &str); 6] = [
    ("ferrodns_dns_queries_total", "DNS queries read, by transport and query type."),
    ("ferrodns_dns_responses_total", "DNS responses sent, by transport and header rcode."),
    ("ferrodns_dns_truncated_total", "DNS responses sent with TC set."),
    ("ferrodns_dns_dropped_total", "DNS queries that got no response: rate-limited, a full queue, unanswerable."),
    ("ferrodns_dns_malformed_total", "DNS queries that did not parse or did not fit the receive buffer."),
    (
        "ferrodns_dns_answer_duration_seconds",
        "Time from reading a query to sending its response; UDP answers are timed per batch read.",
    ),
];

impl DnsCollector {
    pub fn new(stats: Arc<DnsStats>) -> DnsCollector {
        let descs = FAMILIES
            .iter()
            .map(|(name, help)| {
                let labels = if name.ends_with("queries_total") {
                    vec!["transport".to_string(), "qtype".to_string()]
                } else if name.ends_with("responses_total") {
                    vec!["transport".to_string(), "rcode".to_string()]
                } else {
                    vec!["transport".to_string()]
                };
                Desc::new(name.to_string(), help.to_string(), labels, Default::default())
                    .expect("the DNS metric names are valid")
            })
            .collect();
        DnsCollector { stats, descs }
    }
}

impl Collector for DnsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = &self.stats;
        let (mut queries, mut responses, mut truncated, mut dropped, mut malformed, mut answers) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            for slot in 0..QTYPE_SLOTS {
                let n = stats.sum(|c| &c.queries[slot], t);
                if n > 0 {
                    let qtype = QTYPES.get(slot).map_or("other", |(_, name)| name);
                    queries.push(counter(vec![label("qtype", qtype), label("transport", transport)], n));
                }
            }
            for slot in 0..RCODE_SLOTS {
                let n = stats.sum(|c| &c.responses[slot], t);
                if n > 0 {
                    let rcode = RCODES.get(slot).copied().unwrap_or("other");
                    responses.push(counter(vec![label("rcode", rcode), label("transport", transport)], n));
                }
            }
            truncated.push(counter(vec![label("transport", transport)], stats.sum(|c| &c.truncated, t)));
            dropped.push(counter(vec![label("transport", transport)], stats.sum(|c| &c.dropped, t)));
            malformed.push(counter(vec![label("transport", transport)], stats.sum(|c| &c.malformed, t)));
            let mut cumulative = 0;
            let mut buckets = Vec::with_capacity(ANSWER_BUCKETS.len());
            for (slot, bound) in ANSWER_BUCKETS.iter().enumerate() {
                cumulative += stats.sum(|c| &c.answer_buckets[slot], t);
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                buckets.push(bucket);
            }
            cumulative += stats.sum(|c| &c.answer_buckets[ANSWER_BUCKETS.len()], t);
            let mut histogram = proto::Histogram::default();
            histogram.set_bucket(buckets);
            histogram.set_sample_count(cumulative);
            histogram.set_sample_sum(stats.sum(|c| &c.answer_nanos, t) as f64 / 1e9);
            let mut metric = proto::Metric::default();
            metric.set_label(vec![label("transport", transport)]);
            metric.set_histogram(histogram);
            answers.push(metric);
        }
        let kinds = [
            MetricType::COUNTER,
            MetricType::COUNTER,
            MetricType::COUNTER,
            MetricType::COUNTER,
            MetricType::COUNTER,
            MetricType::HISTOGRAM,
        ];
        [queries, responses, truncated, dropped, malformed, answers]
            .into_iter()
            .zip(FAMILIES.iter().zip(kinds))
            .map(|(metrics, ((name, help), kind))| family(name, help, kind, metrics))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jump_table_agrees_with_the_names() {
        for (slot, (code, _)) in QTYPES.iter().enumerate() {
            assert_eq!(qtype_slot(*code), slot);
        }
        assert_eq!(qtype_slot(99), QTYPES.len());
    }

    #[test]
    fn owned_and_shared_writers_sum_into_one_scrape() {
        let stats = Arc::new(DnsStats::default());
        let (a, b) = (stats.owned(), stats.shared());
        a.query(Transport::Udp, 1);
        b.query(Transport::Udp, 1);
        b.query(Transport::Tcp, 4242);
        a.response(Transport::Udp, &[0, 0, 0x82, 0x03]);
        a.answered(Transport::Udp, 30_000, 2);
        a.answered(Transport::Udp, 10_000_000_000, 1);
        let families = DnsCollector::new(stats).collect();
        let queries = &families[0];
        let pairs: Vec<(String, String, f64)> = queries
            .get_metric()
            .iter()
            .map(|m| {
                let labels = m.get_label();
                (labels[0].value().to_string(), labels[1].value().to_string(), m.get_counter().get_value())
            })
            .collect();
        assert_eq!(pairs, [("A".into(), "udp".into(), 2.0), ("other".into(), "tcp".into(), 1.0)]);
        let responses = &families[1].get_metric()[0];
        assert_eq!(responses.get_label()[0].value(), "NXDOMAIN");
        assert_eq!(families[2].get_metric()[0].get_counter().get_value(), 1.0, "TC counted");
        let histogram = families[5].get_metric()[0].get_histogram();
        assert_eq!(histogram.get_sample_count(), 3);
        assert_eq!(histogram.get_bucket()[1].cumulative_count(), 0, "30 µs is above 25 µs");
        assert_eq!(histogram.get_bucket()[2].cumulative_count(), 2);
        assert_eq!(histogram.get_bucket().last().unwrap().cumulative_count(), 2, "10 s is only in +Inf");
    }
}
