//! Announcing the change path's commits to the other nodes after they
//! commit (PostgreSQL).
//!
//! PostgreSQL makes every transaction that sends a notification take one
//! cluster-wide lock and hold it until after its commit, WAL flush
//! included (`PreCommit_Notify` in its `async.c`: notifications must enter
//! the queue in commit order). With the notification inside each change's
//! transaction, changes to different zones could never share a WAL flush:
//! each waited for the one before it to reach the disk. Eight writers on
//! eight zones stopped near 2,800 changes a second here with the CPUs a
//! quarter idle, and at 3,300–3,900 without the notification
//! (docs/benchmarks.md).
//!
//! So the change path ([`crate::queue`]) announces a change once it has
//! committed, through one task per node. It sends what is waiting in one
//! statement and one transaction of its own, which waits for no WAL flush
//! (`synchronous_commit` off for it alone: it writes nothing anyone needs
//! kept), so the lock is held for moments; it sends at once when its last
//! statement ended at least [`GATHER`] ago, and otherwise gathers until
//! then, so that under load one statement carries several announcements
//! while a change among sparse ones is told at once. The task keeps its
//! connection while announcements keep coming and hands it back after
//! [`IDLE`] without one.
//!
//! A node that stops between a commit and its announcement, or whose
//! announcement fails, leaves the other nodes to find the change at their
//! next catch-up (`--ha-poll-ms`, a second by default), as they find what
//! was announced while they were not listening. Rarer writes (imports,
//! zone settings, creations and deletions, the leader's duties) still
//! announce inside their transactions (`announce`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::time::Instant;

use crate::{Backend, Markers, Result, CHANGES_CHANNEL};

/// How long the task waits for more before it hands its connection back
/// and ends.
const IDLE: Duration = Duration::from_secs(1);

/// The least time between the end of one of the task's statements and
/// the start of the next: under load, one statement then carries several
/// (at 3,000 changes a second, six or so), and another node hears of a
/// change up to this much later. A change that comes after a quiet spell of
/// this long goes at once (at 100 changes a second, every one does), which
/// spares the task a timer wake-up per change.
const GATHER: Duration = Duration::from_millis(2);

/// The most announcements one statement carries.
const PER_STATEMENT: usize = 256;

/// The most announcements waiting. Changes commit on other connections
/// while the task's statement is under way; were that statement to hang
/// (PostgreSQL's notification queue lock held by another session, say),
/// those past this many are dropped, and other nodes find their changes at
/// their next catch-up as they would after a failed statement. Some 6 MiB
/// with names of 40 characters; a few seconds of changes at full speed.
const MOST_WAITING: usize = 1 << 16;

/// The announcements waiting, and the task that sends them.
#[derive(Default)]
pub(crate) struct Announcer {
    state: Mutex<Waiting>,
    wake: tokio::sync::Notify,
    closing: AtomicBool,
}

#[derive(Default)]
struct Waiting {
    payloads: Vec<String>,
    /// A task is running to send them.
    running: bool,
    /// Announcements dropped since the task last sent, the queue full.
    dropped: u64,
}

impl Announcer {
    /// Queues `payload` (as `crate::announcement` makes it), starting the
    /// task if none runs.
    pub(crate) fn announce(self: &Arc<Self>, pool: &AnyPool, payload: String) {
        let start = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.payloads.len() < MOST_WAITING {
                state.payloads.push(payload);
            } else {
                state.dropped += 1;
            }
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(self.clone().run(pool.clone()));
        } else {
            self.wake.notify_one();
        }
    }

    /// Sends what is waiting and has the task hand its connection back (as
    /// the store closes: the pool waits for every connection).
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>, pool: AnyPool) {
        let mut conn: Option<PoolConnection<Any>> = None;
        let mut last_end: Option<Instant> = None;
        loop {
            if let Some(until) = gather_until(last_end, Instant::now()) {
                if !self.closing.load(Ordering::Acquire) {
                    // Those that come in meanwhile go in the same statement.
                    tokio::time::sleep_until(until).await;
                }
            }
            let (waiting, dropped) = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                (std::mem::take(&mut state.payloads), std::mem::take(&mut state.dropped))
            };
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "announcements of committed changes waited past their bound and were dropped; \
                     other nodes find those changes at their next catch-up"
                );
            }
            if !waiting.is_empty() {
                send_or_drop(&pool, &mut conn, &waiting).await;
                last_end = Some(Instant::now());
                continue;
            }
            if self.closing.load(Ordering::Acquire) {
                break;
            }
            tokio::select! {
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(IDLE) => {}
            }
            // Idle: end, unless one came in just now (it found the task
            // running, so it started none).
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.payloads.is_empty() {
                state.running = false;
                break;
            }
        }
        drop(conn);
    }
}

/// Until when the task gathers before its next statement, its last having
/// ended at `last_end`: none when that was [`GATHER`] ago or more, or
/// never.
fn gather_until(last_end: Option<Instant>, now: Instant) -> Option<Instant> {
    last_end.map(|end| end + GATHER).filter(|until| *until > now)
}

/// Sends `waiting` on the kept connection or, when it fails (PostgreSQL may
/// have ended it), once more on one from the pool; gives them up if that
/// fails too.
async fn send_or_drop(pool: &AnyPool, conn: &mut Option<PoolConnection<Any>>, waiting: &[String]) {
    if let Some(kept) = conn.as_mut() {
        match send(kept, waiting).await {
            Ok(()) => return,
            Err(error) => tracing::debug!(%error, "announcing changes on a kept connection failed; taking another"),
        }
    }
    *conn = None;
    let sent = match pool.acquire().await {
        Ok(mut fresh) => send(&mut fresh, waiting).await.map(|()| fresh),
        Err(error) => Err(error.into()),
    };
    match sent {
        Ok(fresh) => *conn = Some(fresh),
        Err(error) => tracing::debug!(
            %error,
            changes = waiting.len(),
            "cannot announce committed changes; other nodes find them at their next catch-up"
        ),
    }
}

/// One transaction: the announcements, without waiting for its WAL flush.
async fn send(conn: &mut sqlx::AnyConnection, payloads: &[String]) -> Result<()> {
    for chunk in payloads.chunks(PER_STATEMENT) {
        let mut markers = Markers::new(Backend::Postgres);
        let channel = markers.take(1);
        let rows: Vec<String> = chunk.iter().map(|_| format!("({})", markers.take(1))).collect();
        let sql = format!(
            "SELECT set_config('synchronous_commit', 'off', true), pg_notify({channel}, v.payload) \
             FROM (VALUES {}) AS v(payload)",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() <= 4).bind(CHANGES_CHANNEL);
        for payload in chunk {
            query = query.bind(payload.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While the task's statement is under way, announcements wait up to
    /// their bound; those past it are counted and dropped, not kept.
    #[tokio::test]
    async fn announcements_waiting_on_a_stuck_statement_are_bounded() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new().connect_lazy("postgres://127.0.0.1:1/none").unwrap();
        let announcer = Arc::new(Announcer::default());
        // As though the task were running, held up in its statement.
        announcer.state.lock().unwrap().running = true;
        for n in 0..MOST_WAITING + 5 {
            announcer.announce(&pool, format!("zone{n}.test. 1"));
        }
        let state = announcer.state.lock().unwrap();
        assert_eq!(state.payloads.len(), MOST_WAITING);
        assert_eq!(state.dropped, 5);
        assert_eq!(
            state.payloads.last().map(String::as_str),
            Some(format!("zone{}.test. 1", MOST_WAITING - 1).as_str())
        );
    }

    /// A statement goes at once after a quiet spell of [`GATHER`], and
    /// otherwise waits out the rest of it from the last one's end.
    #[test]
    fn the_task_gathers_only_within_gather_of_its_last_statement() {
        let now = Instant::now();
        assert_eq!(gather_until(None, now), None, "the first goes at once");
        assert_eq!(gather_until(Some(now - GATHER), now), None);
        assert_eq!(gather_until(Some(now - GATHER * 5), now), None);
        let recent = now - GATHER / 4;
        assert_eq!(gather_until(Some(recent), now), Some(recent + GATHER));
        assert_eq!(gather_until(Some(now), now), Some(now + GATHER));
    }
}
