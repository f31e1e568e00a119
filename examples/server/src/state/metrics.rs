//! Prometheus metrics: per collection, versions, bytes, quota use, last successful upload,
//! uploads refused by reason.

use std::sync::atomic::AtomicU64;

use backup_core::CollectionId;
use backup_core::Engine;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabel {
    collection: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    collection: String,
    reason: String,
}

/// The counters the server keeps; gauges are read from the catalog at each scrape.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    uploads: Family<CollectionLabel, Counter>,
    uploaded_bytes: Family<CollectionLabel, Counter>,
    refused: Family<RefusedLabels, Counter>,
    scrubbed_versions: Counter,
    scrubbed_bytes: Counter,
    scrub_failures: Counter,
    quarantined: Family<CollectionLabel, Counter>,
}

impl Metrics {
    /// Counts a committed upload.
    pub(crate) fn uploaded(&self, collection: &CollectionId, bytes: u64) {
        let label = CollectionLabel { collection: collection.to_string() };
        self.uploads.get_or_create(&label).inc();
        self.uploaded_bytes.get_or_create(&label).inc_by(bytes);
    }

    /// Counts a refused upload by reason (`quota`, `content`, `window`, `permission`, …);
    /// `collection` is empty when the request named no configured collection.
    pub(crate) fn refused(&self, collection: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels { collection: collection.to_owned(), reason: reason.to_owned() })
            .inc();
    }

    /// Counts what a scrub read and found.
    pub(crate) fn scrubbed(&self, report: &backup_core::ScrubReport) {
        self.scrubbed_versions.inc_by(report.checked);
        self.scrubbed_bytes.inc_by(report.bytes);
        self.scrub_failures.inc_by(report.failures.len() as u64);
        self.checked(report.damaged.iter());
    }

    /// Counts the versions that entered quarantine among `checks`.
    pub(crate) fn checked<'a>(&self, checks: impl Iterator<Item = &'a backup_core::VersionCheck>) {
        for c in checks.filter(|c| c.newly_quarantined) {
            self.quarantined.get_or_create(&CollectionLabel { collection: c.collection.to_string() }).inc();
        }
    }

    /// The text exposition, with the per-collection gauges from the engine's health of every
    /// collection now (one catalog row each, whatever the history).
    pub(crate) async fn render(&self, engine: &Engine) -> backup_core::Result<String> {
        let versions = Family::<CollectionLabel, Gauge>::default();
        let bytes = Family::<CollectionLabel, Gauge>::default();
        let quota = Family::<CollectionLabel, Gauge<f64, AtomicU64>>::default();
        let max_bytes = Family::<CollectionLabel, Gauge>::default();
        let last_upload = Family::<CollectionLabel, Gauge<f64, AtomicU64>>::default();
        let quarantined = Family::<CollectionLabel, Gauge>::default();
        let healthy = Family::<CollectionLabel, Gauge>::default();
        let last_bytes = Family::<CollectionLabel, Gauge>::default();
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut after: Option<CollectionId> = None;
        loop {
            let page = engine.health_page(after.as_ref(), 500).await?;
            for h in &page.items {
                let label = CollectionLabel { collection: h.collection.id.to_string() };
                let limit = h.collection.spec.limits.max_collection_size;
                versions.get_or_create(&label).set(gauge(h.versions));
                bytes.get_or_create(&label).set(gauge(h.committed_bytes));
                max_bytes.get_or_create(&label).set(gauge(limit));
                quota.get_or_create(&label).set(h.committed_bytes as f64 / limit.max(1) as f64);
                quarantined.get_or_create(&label).set(gauge(h.quarantined_versions));
                healthy.get_or_create(&label).set(i64::from(h.healthy()));
                if let Some(last) = h.last_committed_at {
                    last_upload.get_or_create(&label).set(last.as_micros() as f64 / 1e6);
                }
                if let Some(latest) = &h.latest {
                    last_bytes.get_or_create(&label).set(gauge(latest.size));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        // Notification targets: how far behind the log's head each one is, and what it gave up.
        let pending = Family::<TargetLabel, Gauge>::default();
        let failed = Family::<TargetLabel, Counter>::default();
        for t in crate::ops::notify::target_states(engine).await?.1 {
            let label = TargetLabel { target: t.name };
            pending.get_or_create(&label).set(gauge(t.pending));
            // Kept in the cursor's state: the same total on every instance, across restarts.
            failed.get_or_create(&label).inc_by(t.delivery.failed_total);
        }
        // Replicas: how far each is behind the primary.
        let replica_pending = Family::<ReplicaLabel, Gauge>::default();
        let replica_pending_bytes = Family::<ReplicaLabel, Gauge>::default();
        let replica_lag = Family::<ReplicaLabel, Gauge>::default();
        let replica_failed = Family::<ReplicaLabel, Gauge>::default();
        let replica_copied = Family::<ReplicaLabel, Counter>::default();
        for r in crate::api::replicas::statuses(engine).await? {
            let label = ReplicaLabel { replica: r.name };
            replica_pending.get_or_create(&label).set(gauge(r.pending_versions));
            replica_pending_bytes.get_or_create(&label).set(gauge(r.pending_bytes));
            replica_lag.get_or_create(&label).set(gauge(r.lag_seconds));
            replica_failed.get_or_create(&label).set(gauge(r.failed.len() as u64));
            // Kept in the replica's cursor: the same total on every instance, across restarts.
            replica_copied.get_or_create(&label).inc_by(r.copied);
        }
        let mut registry = Registry::with_prefix("backup");
        registry.register(
            "replica_pending_versions",
            "Committed versions not yet copied to the replica",
            replica_pending,
        );
        registry.register(
            "replica_pending_bytes",
            "Bytes of the versions not yet copied to the replica",
            replica_pending_bytes,
        );
        registry.register(
            "replica_lag_seconds",
            "Age of the oldest version not yet copied to the replica (0 when none)",
            replica_lag,
        );
        registry.register(
            "replica_failed_versions",
            "Versions whose copy to the replica failed (retried)",
            replica_failed,
        );
        registry.register("replica_copied_versions", "Versions copied to the replica", replica_copied);
        registry.register("collection_versions", "Committed versions", versions);
        registry.register("collection_bytes", "Bytes of committed versions", bytes);
        registry.register("collection_max_bytes", "The collection's hard limit in bytes", max_bytes);
        registry.register("collection_quota_used_ratio", "Committed bytes over the hard limit", quota);
        registry.register("collection_quarantined_versions", "Committed versions in quarantine", quarantined);
        registry.register("collection_healthy", "1 when every check of the collection's health passes", healthy);
        registry.register(
            "collection_last_upload_timestamp_seconds",
            "When the newest version was committed",
            last_upload.clone(),
        );
        // The names for the same time, and the newest version's size (a shrinking
        // backup is a broken one).
        registry.register(
            "collection_last_success_timestamp_seconds",
            "When the newest version was committed",
            last_upload,
        );
        registry.register("collection_last_version_bytes", "The size of the newest version", last_bytes);
        registry.register(
            "notifications_pending",
            "Audit events after the target's cursor (not yet delivered or passed over)",
            pending,
        );
        registry.register(
            "notifications_failed",
            "Events the target gave up on after retrying (dead-lettered)",
            failed,
        );
        registry.register("uploads", "Uploads committed", self.uploads.clone());
        registry.register("uploaded_bytes", "Bytes of uploads committed", self.uploaded_bytes.clone());
        registry.register("uploads_refused", "Uploads refused, by reason", self.refused.clone());
        registry.register("scrub_versions", "Versions read back by scrubs", self.scrubbed_versions.clone());
        registry.register("scrub_bytes", "Bytes read back by scrubs", self.scrubbed_bytes.clone());
        registry.register("scrub_failures", "Versions a scrub could not read", self.scrub_failures.clone());
        registry.register(
            "versions_quarantined",
            "Versions found damaged or missing and quarantined, by collection",
            self.quarantined.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .map_err(|e| backup_core::Error::internal(format!("metrics encoding: {e}")))?;
        Ok(out)
    }
}
