//! `status`: each repository's last success, last failure with its reason, next run, and the
//! versions kept with their size.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::state::State;
use crate::target::Target;

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Prints the status (a table, or JSON); whether every repository's last run succeeded.
pub(crate) async fn show(target: &Target, config: &Config, state: &State, as_json: bool) -> bool {
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut healthy = true;
    for r in &config.repositories {
        let s = state.get(&r.name);
        let summary = target.summary(&r.collection).await;
        let failing = s.last_failure.is_some_and(|f| s.last_success.is_none_or(|ok| f > ok));
        healthy &= !failing && summary.is_ok();
        let (versions, bytes, latest, latest_at) = match &summary {
            Ok(sum) => (
                json!(sum.count),
                json!(sum.bytes),
                json!(sum.latest.as_ref().map(|v| v.number)),
                json!(sum.latest.as_ref().and_then(|v| v.committed_at).map(time)),
            ),
            Err(_) => (Value::Null, Value::Null, Value::Null, Value::Null),
        };
        rows.push(json!({
            "repository": r.name,
            "collection": r.collection.as_str(),
            "lastSuccess": s.last_success.map(time),
            "lastFailure": s.last_failure.map(time),
            "lastError": s.last_error,
            "failing": failing,
            "nextRun": r.schedule.next_after(now).map(time),
            "versions": versions,
            "bytes": bytes,
            "latestVersion": latest,
            "latestAt": latest_at,
            "storageError": summary.err(),
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({ "repositories": rows })).unwrap_or_default());
        return healthy;
    }
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!(
        "{:<20} {:<21} {:<21} {:<21} {:>8} {:>14}",
        "REPOSITORY", "LAST SUCCESS", "LAST FAILURE", "NEXT RUN", "VERSIONS", "BYTES"
    );
    for row in &rows {
        println!(
            "{:<20} {:<21} {:<21} {:<21} {:>8} {:>14}",
            text(&row["repository"]),
            text(&row["lastSuccess"]),
            text(&row["lastFailure"]),
            text(&row["nextRun"]),
            text(&row["versions"]),
            text(&row["bytes"]),
        );
        if row["failing"] == json!(true) {
            println!("    last error: {}", text(&row["lastError"]));
        }
        if !row["storageError"].is_null() {
            println!("    storage: {}", text(&row["storageError"]));
        }
    }
    healthy
}
