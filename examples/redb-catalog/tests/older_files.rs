//! A redb catalog written before the audit log had hashes still takes new events: the next
//! one is chained after the old one (as after a zero hash), and the verification names the
//! old event as the one without a hash instead of every later step failing.

use backup_core::catalog::Catalog;
use backup_core::catalog::CatalogExt;
use backup_core::{AuditEvent, Engine, Timestamp};
use backup_redb_catalog::RedbCatalog;
use std::sync::Arc;

#[tokio::test]
async fn events_without_hashes_do_not_stop_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.redb");
    drop(RedbCatalog::open(&path).await.unwrap());
    {
        // An event as the previous build stored it: no `hash` field.
        let old =
            serde_json::json!({"seq": 1, "at": Timestamp::UNIX_EPOCH, "actor": "ops", "action": "collection.create"});
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut audit = tx.open_table(redb::TableDefinition::<u64, &[u8]>::new("audit")).unwrap();
            audit.insert(1u64, serde_json::to_vec(&old).unwrap().as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let catalog = Arc::new(RedbCatalog::open(&path).await.unwrap());
    catalog.append_audit(&AuditEvent::new(Timestamp::UNIX_EPOCH, "ops", "custom.after")).await.unwrap();
    let events = catalog.list_audit(None, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(events[0].hash.is_none() && events[1].hash.is_some());
    let engine = Engine::builder().catalog(catalog as Arc<dyn Catalog>).build().unwrap();
    let report = engine.verify_audit().await.unwrap();
    let problem = report.problem.expect("the old event is named");
    assert_eq!((problem.seq, problem.reason.as_str()), (1, "it has no hash"));
}
