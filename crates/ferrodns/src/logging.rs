//! Logs that an attacker cannot flood. Each call site (one `warn!` in the
//! code, say) may write at most [`BURST`] lines in each [`WINDOW`]; further
//! lines in that window are counted and dropped, and every window a
//! reporter thread writes one line per site with how many it dropped. A
//! flood of signed queries with an unknown key, or an accept loop out of
//! descriptors, then costs a few lines, not one per packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// Lines one call site may write per window.
pub const BURST: u32 = 100;
/// The window, and how often dropped lines are reported.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The target of the reports, which are never limited.
const REPORT_TARGET: &str = "ferrodns::log";

#[derive(Default)]
struct Site {
    started: Option<Instant>,
    written: u32,
    dropped: u64,
    /// Where the site is, for the report.
    name: String,
}

/// The per-call-site limit, as a per-layer filter.
#[derive(Clone, Default)]
pub struct RateLimit {
    sites: Arc<Mutex<HashMap<Identifier, Site>>>,
}

impl RateLimit {
    /// Whether a line from `meta` may be written at `now`.
    fn allow(&self, meta: &Metadata<'_>, now: Instant) -> bool {
        if meta.target() == REPORT_TARGET {
            return true;
        }
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let site = sites.entry(meta.callsite()).or_default();
        if site.started.is_none_or(|started| now.duration_since(started) >= WINDOW) {
            site.started = Some(now);
            site.written = 0;
        }
        if site.written < BURST {
            site.written += 1;
            return true;
        }
        if site.dropped == 0 {
            site.name = format!("{} ({}:{})", meta.target(), meta.file().unwrap_or("?"), meta.line().unwrap_or(0));
        }
        site.dropped += 1;
        false
    }

    /// Takes the counts of dropped lines since the last call.
    fn take_dropped(&self) -> Vec<(String, u64)> {
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = Vec::new();
        for site in sites.values_mut() {
            if site.dropped > 0 {
                dropped.push((std::mem::take(&mut site.name), site.dropped));
                site.dropped = 0;
            }
        }
        // Sites that have been quiet for a window are forgotten.
        let now = Instant::now();
        sites.retain(|_, site| site.started.is_some_and(|started| now.duration_since(started) < WINDOW * 2));
        dropped
    }

    /// Starts the thread that reports dropped lines every window.
    pub fn start_reporter(&self) {
        let limit = self.clone();
        let spawned = std::thread::Builder::new().name("log-reporter".into()).spawn(move || loop {
            std::thread::sleep(WINDOW);
            for (site, dropped) in limit.take_dropped() {
                tracing::warn!(target: REPORT_TARGET, %site, dropped, "log lines dropped: this line came more than {BURST} times in {} s", WINDOW.as_secs());
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the log reporter; repeated lines are dropped without a count: {e}");
        }
    }
}

impl<S: Subscriber> Filter<S> for RateLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.allow(event.metadata(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use tracing::callsite::{DefaultCallsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;
    use tracing::Level;

    use super::*;

    static SITE: DefaultCallsite = DefaultCallsite::new(&SITE_META);
    static SITE_META: Metadata<'static> = Metadata::new(
        "test site",
        "ferrodns::test",
        Level::WARN,
        None,
        None,
        None,
        FieldSet::new(&[], Identifier(&SITE)),
        Kind::EVENT,
    );

    #[test]
    fn a_site_writes_its_burst_per_window_and_counts_the_rest() {
        let limit = RateLimit::default();
        let start = Instant::now();
        let written = (0..1000).filter(|_| limit.allow(&SITE_META, start)).count();
        assert_eq!(written, BURST as usize);
        assert_eq!(limit.take_dropped().first().map(|(_, n)| *n), Some(1000 - BURST as u64));
        assert!(limit.allow(&SITE_META, start + WINDOW), "a new window writes again");
        assert!(limit.take_dropped().is_empty());
    }
}
