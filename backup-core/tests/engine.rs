//! The engine's public API: validation of every input, authorization, content rules, leases,
//! staged uploads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::Clock;
use backup_core::catalog::CatalogExt;
use backup_core::testing::{body_of, pattern};
use backup_core::{
    Action, Actor, Authorizer, AuthzRequest, CollectionId, CollectionSpec, ContentRule, DigestAlgorithm, Engine, Error,
    ErrorKind, FilenameTemplate, Limits, ManualClock, Permit, RetentionSpec, TokioClock, UploadOptions, VersionQuery,
    VersionSelector,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

fn spec() -> CollectionSpec {
    CollectionSpec::new("v-${version}.bin", Limits::new(3, 1000, 4000).unwrap())
}

fn field(e: &Error) -> &'static str {
    match e {
        Error::InvalidSpec { field, .. } => field,
        other => panic!("not a spec error: {other:?}"),
    }
}

async fn setup() -> (Engine, Actor, CollectionId) {
    let engine = Engine::in_memory();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    (engine, actor, id)
}

#[tokio::test]
async fn create_refuses_every_bad_spec_with_the_field_named() {
    let engine = Engine::in_memory();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    let mut negative_extra = spec();
    negative_extra.limits =
        serde_json::from_str(r#"{"max_versions": 5, "max_version_size": 100, "max_collection_size": 400}"#).unwrap();
    let mut no_placeholder = spec();
    no_placeholder.filename_template = serde_json::from_str::<FilenameTemplate>("\"backup.tar\"").unwrap();
    let cases = [
        (negative_extra, "limits.max_collection_size"),
        (no_placeholder, "filename_template"),
        (spec().with_retention(RetentionSpec::named("no-such-strategy")), "retention.strategy"),
        (spec().with_retention(RetentionSpec::named("fifo-plus-older")), "retention.options"),
        (spec().with_retention(RetentionSpec::named("gfs").with_option("keepDaily", "often")), "retention.options"),
        (spec().with_retention(RetentionSpec::fifo().with_min_keep(3)), "retention.min_keep"),
        (spec().with_retention(RetentionSpec::fifo().with_option("maxOlderCopies", "2")), "retention.options"),
        (spec().with_content_rule("openpgp"), "content_rule"),
    ];
    for (bad, expected) in cases {
        let e = engine.create_collection(&actor, &id, bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(field(&e), expected, "{e}");
    }
    let e = engine.collection(&actor, &id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "nothing was created");
}

#[tokio::test]
async fn update_refuses_bad_specs_and_keeps_the_old_one() {
    let (engine, actor, id) = setup().await;
    let mut bad = spec();
    bad.limits.max_collection_size = 10;
    let e = engine.update_collection(&actor, &id, bad).await.unwrap_err();
    assert_eq!(field(&e), "limits.max_collection_size");
    assert_eq!(engine.collection(&actor, &id).await.unwrap().spec, spec());
    let updated = engine.update_collection(&actor, &id, spec().with_description("new")).await.unwrap();
    assert_eq!((updated.revision, updated.spec.description.as_str()), (2, "new"));
}

#[tokio::test]
async fn unknown_and_duplicate_names_get_their_kinds() {
    let (engine, actor, id) = setup().await;
    let e = engine.create_collection(&actor, &id, spec()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let other: CollectionId = "other".parse().unwrap();
    let e = engine.upload(&actor, &other, body_of(Bytes::from_static(b"x"), 1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = engine.download(&actor, &id, VersionSelector::Latest).await.unwrap_err();
    assert!(matches!(e, Error::VersionNotFound { .. }), "{e:?}");
    let e = engine.download(&actor, &id, VersionSelector::Number(7)).await.unwrap_err();
    assert_eq!(e.to_string(), "collection c has no version 7");
    let e = engine.delete_version(&actor, &id, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    engine.upload(&actor, &id, body_of(Bytes::from_static(b"x"), 1)).await.unwrap();
    let e = engine.delete_collection(&actor, &id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "a collection with versions is not deleted");
    engine.delete_version(&actor, &id, 1).await.unwrap();
    engine.delete_collection(&actor, &id).await.unwrap();
}

#[tokio::test]
async fn pagination_of_versions_and_collections() {
    let (engine, actor, id) = setup().await;
    for i in 0..3 {
        engine.upload(&actor, &id, body_of(pattern(i, 10), 10)).await.unwrap();
    }
    let first = engine.versions(&actor, &id, VersionQuery::first(2)).await.unwrap();
    assert_eq!(first.items.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(first.next, Some(2));
    let rest = engine.versions(&actor, &id, VersionQuery::first(2).after(2)).await.unwrap();
    assert_eq!((rest.items.len(), rest.next), (1, None));
    for name in ["a", "b", "d"] {
        engine.create_collection(&actor, &name.parse().unwrap(), spec()).await.unwrap();
    }
    let page = engine.list_collections(&actor, None, 2).await.unwrap();
    assert_eq!(page.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let page = engine.list_collections(&actor, page.next.as_ref(), 2).await.unwrap();
    assert_eq!(page.items.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
}

#[tokio::test]
async fn sha256_collections_store_sha256_digests() {
    let (engine, actor, _) = setup().await;
    let id: CollectionId = "sha".parse().unwrap();
    engine.create_collection(&actor, &id, spec().with_digest(DigestAlgorithm::Sha256)).await.unwrap();
    let v = engine.upload(&actor, &id, body_of(Bytes::from_static(b"abc"), 1)).await.unwrap();
    assert_eq!(v.digest.to_string(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/// Denies one action and counts questions.
#[derive(Debug, Default)]
struct Deny {
    action: Option<Action>,
    asked: AtomicUsize,
}

#[async_trait]
impl Authorizer for Deny {
    async fn authorize(&self, request: &AuthzRequest<'_>) -> backup_core::Result<Permit> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if Some(request.action) == self.action {
            return Err(Error::PermissionDenied {
                reason: format!("{} may not {}", request.actor.user, request.action.name()),
            });
        }
        Ok(Permit::allow())
    }
}

#[tokio::test]
async fn every_operation_asks_the_authorizer_first() {
    for action in [
        Action::CreateCollection,
        Action::ReadCollection,
        Action::UpdateCollection,
        Action::DeleteCollection,
        Action::ListVersions,
        Action::Upload,
        Action::Download,
        Action::DeleteVersion,
    ] {
        let deny = Arc::new(Deny { action: Some(action), ..Deny::default() });
        let engine = Engine::builder().authorizer(deny.clone()).build().unwrap();
        let actor = Actor::user("mallory");
        let id: CollectionId = "c".parse().unwrap();
        let created = engine.create_collection(&actor, &id, spec()).await;
        if action == Action::CreateCollection {
            assert_eq!(created.unwrap_err().kind(), ErrorKind::PermissionDenied);
            continue;
        }
        created.unwrap();
        let upload = engine.upload(&actor, &id, body_of(Bytes::from_static(b"x"), 1)).await;
        let e = match action {
            Action::ReadCollection => engine.collection(&actor, &id).await.err(),
            Action::UpdateCollection => engine.update_collection(&actor, &id, spec()).await.err(),
            Action::DeleteCollection => engine.delete_collection(&actor, &id).await.err(),
            Action::ListVersions => engine.versions(&actor, &id, VersionQuery::first(1)).await.err(),
            Action::Upload => upload.err(),
            Action::Download => engine.download(&actor, &id, VersionSelector::Latest).await.err(),
            Action::DeleteVersion => engine.delete_version(&actor, &id, 1).await.err(),
            _ => unreachable!(),
        };
        let e = e.unwrap_or_else(|| panic!("{action:?} was not denied"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{action:?}: {e}");
        assert!(e.to_string().contains(action.name()));
    }
}

#[tokio::test]
async fn allows_asks_the_authorizer_about_a_collection_read_before() {
    let deny = Arc::new(Deny { action: Some(Action::DeleteVersion), ..Deny::default() });
    let engine = Engine::builder().authorizer(deny.clone()).build().unwrap();
    let actor = Actor::user("mallory");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    let collection = engine.collection(&actor, &id).await.unwrap();
    let asked = deny.asked.load(Ordering::SeqCst);
    engine.allows(&actor, &collection, Action::Download).await.unwrap();
    let e = engine.allows(&actor, &collection, Action::DeleteVersion).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(deny.asked.load(Ordering::SeqCst), asked + 2, "one question each");
}

#[tokio::test]
async fn denied_upload_reserves_nothing() {
    let deny = Arc::new(Deny { action: Some(Action::Upload), ..Deny::default() });
    let engine = Engine::builder().authorizer(deny).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    engine.upload(&actor, &id, body_of(Bytes::from_static(b"x"), 1)).await.unwrap_err();
    let state = engine.catalog().collection_state(&id).await.unwrap();
    assert!(state.pending.is_empty() && state.counters.versions == 0);
}

/// Refuses bodies not starting with `ok` or ending with `!`.
#[derive(Debug)]
struct Shouting;

impl ContentRule for Shouting {
    fn name(&self) -> &str {
        "shouting"
    }
    fn head_len(&self) -> usize {
        2
    }
    fn tail_len(&self) -> usize {
        1
    }
    fn check_head(&self, head: &[u8], _complete: bool) -> Result<(), String> {
        if head == b"ok" { Ok(()) } else { Err("must start with ok".into()) }
    }
    fn check_tail(&self, _head: &[u8], tail: &[u8], _total: u64) -> Result<(), String> {
        if tail == b"!" { Ok(()) } else { Err("must end with !".into()) }
    }
}

#[tokio::test]
async fn content_rules_refuse_early_and_leave_nothing() {
    let engine = Engine::builder().content_rule(Arc::new(Shouting)).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec().with_content_rule("shouting")).await.unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let endless = stream::repeat_with(move || {
        p.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from_static(b"no"))
    });
    let e = engine.upload(&actor, &id, endless).await.unwrap_err();
    assert!(
        matches!(&e, Error::ContentRejected { rule, reason, at_end: false } if rule == "shouting" && reason == "must start with ok"),
        "{e:?}"
    );
    assert_eq!(pulled.load(Ordering::SeqCst), 1, "refused on the first chunk");
    let e = engine.upload(&actor, &id, body_of(Bytes::from_static(b"ok, fine."), 3)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContentRejected);
    let v = engine.upload(&actor, &id, body_of(Bytes::from_static(b"ok, fine!"), 3)).await.unwrap();
    assert_eq!(v.number, 1);
    engine.wait_for_cleanups().await;
    let objects = version_objects(&engine).await;
    assert_eq!(objects.len(), 1, "refused uploads left no object");
}

#[tokio::test]
async fn staged_uploads_commit_abort_or_release_when_dropped() {
    let (engine, actor, id) = setup().await;
    let staged =
        engine.begin_upload(&actor, &id, body_of(pattern(1, 100), 10), UploadOptions::default()).await.unwrap();
    assert_eq!(staged.size(), 100);
    assert!(
        engine.versions(&actor, &id, VersionQuery::first(9)).await.unwrap().items.is_empty(),
        "invisible until commit"
    );
    let v = staged.commit().await.unwrap();
    assert_eq!(v.number, 1);

    let staged =
        engine.begin_upload(&actor, &id, body_of(pattern(2, 100), 10), UploadOptions::default()).await.unwrap();
    staged.abort().await.unwrap();
    let staged =
        engine.begin_upload(&actor, &id, body_of(pattern(3, 100), 10), UploadOptions::default()).await.unwrap();
    drop(staged);
    engine.wait_for_cleanups().await;
    let state = engine.catalog().collection_state(&id).await.unwrap();
    assert!(state.pending.is_empty(), "aborted and dropped uploads released their reservations");
    assert_eq!(state.counters.next_number, 2, "no number was used by them");
    let objects = version_objects(&engine).await;
    assert_eq!(objects.len(), 1);
}

/// A body that waits `step` of Tokio's time before every chunk: a producer that pauses.
fn slow_body(chunks: usize, step: Duration) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    stream::iter(0..chunks).then(move |_| async move {
        tokio::time::sleep(step).await;
        Ok(Bytes::from_static(b"0123456789"))
    })
}

/// One rule for long pauses: the lease is renewed on a timer while the upload lives, whether
/// bytes flow or not, so a producer that pauses (ten minutes in all, 25 s at a time, or
/// five minutes at once) keeps its reservation and commits.
#[tokio::test(start_paused = true)]
async fn leases_are_renewed_on_a_timer_while_the_upload_lives() {
    let clock = Arc::new(TokioClock::new());
    let engine = Engine::builder().clock(clock.clone()).lease(Duration::from_secs(60)).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    let v = engine.upload(&actor, &id, slow_body(24, Duration::from_secs(25))).await.unwrap();
    assert_eq!(v.size, 240);
    let v = engine.upload(&actor, &id, slow_body(1, Duration::from_secs(300))).await.unwrap();
    assert_eq!(v.number, 2, "a five-minute pause before the first byte");
    // Staged (the server's confirmation grace) for longer than the lease: still renewed.
    let staged =
        engine.begin_upload(&actor, &id, slow_body(1, Duration::ZERO), UploadOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(staged.commit().await.unwrap().number, 3);
}

/// A lease that expired anyway (the process froze: both clocks moved, no timer fired) is never
/// revived: the upload fails clearly instead of committing by chance, and nothing stays.
#[tokio::test(start_paused = true)]
async fn an_expired_lease_fails_the_upload() {
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder().clock(clock.clone()).lease(Duration::from_secs(60)).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    let staged = engine.begin_upload(&actor, &id, body_of(pattern(1, 10), 5), UploadOptions::default()).await.unwrap();
    clock.advance(chrono::Duration::seconds(61));
    let e = staged.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    let state = engine.catalog().collection_state(&id).await.unwrap();
    assert!(state.pending.is_empty());
    assert_eq!(state.counters.versions, 0);
}

/// A step of the wall clock (an NTP correction of two minutes, forward) is not a frozen
/// process: the keeper renews at once, the lease that ran out by the clock is renewed while
/// its room is free, and the uploads in flight commit, one mid-body and one staged.
#[tokio::test]
async fn a_step_of_the_wall_clock_does_not_fail_uploads_in_flight() {
    let clock = Arc::new(ManualClock::starting_now());
    let engine = Engine::builder().clock(clock.clone()).lease(Duration::from_secs(60)).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    let staged = engine.begin_upload(&actor, &id, body_of(pattern(1, 10), 5), UploadOptions::default()).await.unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    tx.unbounded_send(Ok(pattern(2, 10))).unwrap();
    let streaming = {
        let (engine, actor, id) = (engine.clone(), actor.clone(), id.clone());
        tokio::spawn(async move { engine.upload(&actor, &id, rx).await })
    };
    while engine.catalog().collection_state(&id).await.unwrap().pending.len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clock.step(chrono::Duration::minutes(2));
    // The keeper notices at its next tick (a second later) and renews the leases that ran out
    // by the clock.
    clock.advance(chrono::Duration::seconds(1));
    let renewed = async {
        loop {
            let state = engine.catalog().collection_state(&id).await.unwrap();
            if state.pending.iter().all(|p| p.is_live(clock.now())) {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), renewed).await.expect("renewed after the step");
    tx.unbounded_send(Ok(pattern(3, 10))).unwrap();
    drop(tx);
    assert_eq!(streaming.await.unwrap().unwrap().size, 20);
    assert_eq!(staged.commit().await.unwrap().size, 10);
}

/// After a step, a lease that ran out by the clock is not renewed when its room went to
/// another upload meanwhile (I2): its owner fails with the reason, the other keeps its room.
#[tokio::test]
async fn a_step_does_not_revive_a_lease_whose_room_went_to_another_upload() {
    let clock = Arc::new(ManualClock::starting_now());
    // Lease far longer than the test: no renewal happens on its own.
    let engine = Engine::builder().clock(clock.clone()).lease(Duration::from_secs(3600)).build().unwrap();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    // 2 versions of 100 bytes, 300 in all: 100 bytes of extra space.
    let spec = CollectionSpec::new("c-${version}", Limits::new(2, 100, 300).unwrap());
    engine.create_collection(&actor, &id, spec).await.unwrap();
    let first = engine.begin_upload(&actor, &id, body_of(pattern(1, 180), 60), UploadOptions::default()).await.unwrap();
    clock.step(chrono::Duration::hours(2));
    // The other upload takes the extra space the first one's lease, expired by the clock,
    // no longer holds.
    let second = engine.upload(&actor, &id, body_of(pattern(2, 190), 60)).await.unwrap();
    assert_eq!(second.size, 190);
    let e = first.commit().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("room went to other uploads"), "{e}");
    let state = engine.catalog().collection_state(&id).await.unwrap();
    assert!(state.pending.is_empty() && state.counters.versions == 1, "{state:?}");
}

/// A producer that pauses while its lease runs out (the process froze) gets the same clear
/// refusal whether or not a maintenance run aborted the upload meanwhile: never a commit by
/// chance.
#[tokio::test(start_paused = true)]
async fn a_lease_that_ran_out_mid_body_fails_with_or_without_maintenance() {
    for maintenance in [false, true] {
        let clock = Arc::new(ManualClock::starting_now());
        let engine = Engine::builder().clock(clock.clone()).lease(Duration::from_secs(3)).build().unwrap();
        let actor = Actor::user("u");
        let id: CollectionId = "c".parse().unwrap();
        engine.create_collection(&actor, &id, spec()).await.unwrap();
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        tx.unbounded_send(Ok(pattern(1, 10))).unwrap();
        let upload = {
            let (engine, actor, id) = (engine.clone(), actor.clone(), id.clone());
            tokio::spawn(async move { engine.upload(&actor, &id, rx).await })
        };
        while engine.catalog().collection_state(&id).await.unwrap().pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The process froze for 4 s: the wall clock moved, and so did the monotonic one.
        clock.advance(chrono::Duration::seconds(4));
        if maintenance {
            assert_eq!(engine.recover().await.unwrap().aborted_uploads, 1, "maintenance aborts the expired upload");
        }
        // The producer resumes: the upload fails at the lease check, or has failed already
        // (the keeper, woken by the same 4 s, found the lease gone), its body dropped.
        let _ = tx.unbounded_send(Ok(pattern(2, 10)));
        drop(tx);
        let e = upload.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "maintenance {maintenance}: {e}");
        assert!(e.to_string().contains("lease"), "maintenance {maintenance}: {e}");
        engine.wait_for_cleanups().await;
        let state = engine.catalog().collection_state(&id).await.unwrap();
        assert!(state.pending.is_empty() && state.counters.versions == 0, "maintenance {maintenance}: {state:?}");
    }
}

#[tokio::test]
async fn usage_reports_the_allowance() {
    let engine = Engine::in_memory();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    // backup-repository's README: 5 × 1M, 10M in all.
    const M: u64 = 1 << 20;
    engine
        .create_collection(&actor, &id, CollectionSpec::new("x-${version}", Limits::new(5, M, 10 * M).unwrap()))
        .await
        .unwrap();
    assert_eq!(engine.usage(&actor, &id).await.unwrap().allowed_next_upload, 6 * M);
    engine.upload(&actor, &id, body_of(pattern(1, (7 * M / 2) as usize), 64 << 10)).await.unwrap();
    let usage = engine.usage(&actor, &id).await.unwrap();
    assert_eq!((usage.versions, usage.committed_bytes, usage.allowed_next_upload), (1, 7 * M / 2, 7 * M / 2));
    assert_eq!(usage.latest.unwrap().number, 1);
    let announced = UploadOptions::new().expected_size(7 * M / 2);
    engine.upload_with(&actor, &id, body_of(pattern(2, (7 * M / 2) as usize), 64 << 10), announced).await.unwrap();
    let e = engine.upload(&actor, &id, body_of(pattern(3, (M + 1) as usize), 64 << 10)).await.unwrap_err();
    assert!(matches!(e, Error::QuotaExceeded { allowed, .. } if allowed == M), "{e:?}");
    let e = engine
        .upload_with(
            &actor,
            &id,
            futures::stream::pending::<Result<Bytes, std::io::Error>>(),
            UploadOptions::new().expected_size(M + 1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::QuotaExceeded { allowed, received_at_least } if allowed == M && received_at_least == M + 1),
        "refused before reading: {e:?}"
    );

    // A body shorter than announced is refused too.
    let e = engine
        .upload_with(&actor, &id, body_of(pattern(4, 10), 3), UploadOptions::new().expected_size(11))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
}

#[tokio::test]
async fn issue_156_worked_example() {
    // 400M / 150M / 2 scaled to KiB: the arithmetic is the same.
    const M: u64 = 1 << 10;
    let engine = Engine::in_memory();
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    let limits = Limits::new(2, 150 * M, 400 * M).unwrap();
    engine.create_collection(&actor, &id, CollectionSpec::new("x-${version}", limits)).await.unwrap();
    for size in [150 * M, 200 * M] {
        let usage = engine.usage(&actor, &id).await.unwrap();
        assert!(usage.allowed_next_upload >= size, "{size} does not fit: {usage:?}");
        let body = stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(vec![0u8; size as usize])) });
        engine.upload(&actor, &id, body).await.unwrap();
    }
}

/// The maintenance deletes sessions a day after they expired (they refuse their tokens
/// anyway; their rows would only grow with every login), and keeps the others.
#[tokio::test]
async fn recover_deletes_sessions_expired_a_day_ago() {
    use backup_core::{Session, SessionId, Timestamp};
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let engine = Engine::builder().clock(clock.clone()).build().unwrap();
    let now = Timestamp::from(chrono::Utc::now());
    let old = Session::new(
        SessionId::of_token("old"),
        "u",
        now - chrono::Duration::days(3),
        now - chrono::Duration::hours(30),
        "Login",
    );
    let recent = Session::new(
        SessionId::of_token("recent"),
        "u",
        now - chrono::Duration::hours(8),
        now - chrono::Duration::hours(2),
        "Login",
    );
    let live = Session::new(SessionId::of_token("live"), "u", now, now + chrono::Duration::hours(6), "Login");
    for s in [&old, &recent, &live] {
        engine.catalog().insert_session(s).await.unwrap();
    }
    let report = engine.recover().await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(engine.catalog().get_session(&old.id).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(engine.catalog().get_session(&recent.id).await.is_ok(), "expired less than a day ago");
    assert!(engine.catalog().get_session(&live.id).await.is_ok());
}

/// The versions' objects under collection `c` (not their descriptions).
async fn version_objects(engine: &Engine) -> Vec<String> {
    let all: Vec<_> = engine.store().list(Some(&"data/c".into())).try_collect().await.unwrap();
    all.into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| !k.ends_with(backup_core::store::DESCRIPTION_SUFFIX))
        .collect()
}

/// With the defaults, a deleted version can be restored for a day; once purged (here with no
/// trash retention), a restore says why it cannot, instead of "no version 1".
#[tokio::test]
async fn a_deleted_version_is_restorable_by_default_and_a_purged_one_says_why() {
    let actor = Actor::user("u");
    let id: CollectionId = "c".parse().unwrap();
    let engine = Engine::in_memory();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    engine.upload(&actor, &id, body_of(pattern(1, 10), 5)).await.unwrap();
    engine.delete_version(&actor, &id, 1).await.unwrap();
    assert_eq!(engine.restore_version(&actor, &id, 1).await.unwrap().number, 1, "restorable by default");

    let engine = Engine::builder().trash_retention(Duration::ZERO).build().unwrap();
    engine.create_collection(&actor, &id, spec()).await.unwrap();
    engine.upload(&actor, &id, body_of(pattern(1, 10), 5)).await.unwrap();
    engine.delete_version(&actor, &id, 1).await.unwrap();
    let e = engine.restore_version(&actor, &id, 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(matches!(e, Error::VersionPurged { number: 1, .. }), "{e:?}");
    assert!(e.to_string().contains("trash retention"), "{e}");
}
