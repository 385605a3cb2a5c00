//! Keeping the catalog zone in step with the stored zones, on every node.
//!
//! The catalog's serial and the digest of the members it stands for live in
//! the database (`catalog_state`). Only the leader writes them (the single
//! node of an SQLite database is always the leader), under its fence, and it
//! logs `catalog written` with its term; a node that lost its term writes
//! nothing. Every node, the leader included, publishes the catalog only as
//! stored: the members it reads, when they match the stored digest, under the
//! stored serial. So whichever node a consumer transfers the catalog from,
//! one serial means one content. A node whose reading does not match (a zone
//! was created or deleted and the leader has not written yet) keeps serving
//! what it has and tries again at the next announcement or poll.

use ferrodns_store::{Backend, Fence};

use crate::{now_micros, ControlPlane};

/// How much work a sync may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogSync {
    /// Membership may have changed: read the members and, on the leader,
    /// write a new serial if they differ from the stored digest.
    Full,
    /// A periodic check: publish the stored state if it is newer than what
    /// this node serves; read the members only then.
    Poll,
    /// This node's zone files changed (a SIGHUP reload): as `Full`, and the
    /// leader writes a new serial even when the stored zones did not change,
    /// so that consumers fetch the catalog again.
    FilesChanged,
}

/// Brings this node's catalog zone in step with the database.
pub async fn sync(control: &ControlPlane, depth: CatalogSync) {
    let Some(catalog) = &control.catalog else { return };
    let _one_at_a_time = catalog.sync.lock().await;
    let stored = match control.store.catalog_state().await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the catalog state now");
            return;
        }
    };
    let published = catalog.published();
    let stored_now = stored.as_ref().map(|s| (s.serial, s.digest.clone()));
    if depth == CatalogSync::Poll && stored_now.is_some() && stored_now == published {
        return;
    }
    let members = match control.store.catalog_members().await {
        Ok(members) => members,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the catalog members now");
            return;
        }
    };
    let forwards = match control.store.forward_zones().await {
        Ok(zones) => zones,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the forward zones now");
            return;
        }
    };
    let digest = ferrodns_transfer::catalog::digest(&members, &forwards);
    let stored = match stored {
        Some(stored) if stored.digest == digest && depth != CatalogSync::FilesChanged => stored,
        _ => {
            let term = control.leadership.term();
            let fence = match control.store.backend() {
                Backend::Sqlite => Fence::Single,
                Backend::Postgres => match term {
                    Some(term) => Fence::Lease { node: control.leadership.node(), term },
                    // The leader writes; this node waits for its announcement.
                    None => return,
                },
            };
            let now = now_micros();
            match control.store.write_catalog(catalog.name(), &digest, fence, (now / 1_000_000) as u32, now).await {
                Ok(Some(written)) => {
                    tracing::info!(catalog = %catalog.name(), serial = written.serial.0, term = written.term,
                        members = members.len(), "catalog written");
                    written
                }
                Ok(None) => {
                    tracing::info!(catalog = %catalog.name(), ?fence, "catalog not written: the term is no longer current");
                    return;
                }
                Err(e) => {
                    tracing::warn!(catalog = %catalog.name(), error = %e, "cannot write the catalog state");
                    return;
                }
            }
        }
    };
    if published != Some((stored.serial, stored.digest.clone())) || depth == CatalogSync::FilesChanged {
        catalog.publish(stored.serial, &stored.digest, &members, &forwards);
        tracing::debug!(catalog = %catalog.name(), serial = stored.serial.0, "catalog published");
    }
}
