use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::WorkerHandle;
use crate::Error;

const LONG: Duration = Duration::from_secs(10);

/// A worker counting up until it is told to stop; it returns `result` then.
fn counter(result: Result<(), &'static str>) -> (WorkerHandle<u64>, CancellationToken) {
    let shutdown = CancellationToken::new();
    let (status, watched) = watch::channel(0);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let mut count = 0;
        loop {
            count += 1;
            status.send_replace(count);
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        result.map_err(|reason| Error::Config(reason.into()))
    });
    let handle = WorkerHandle::watched("counter", shutdown.clone(), watched).with_task(task);
    (handle, shutdown)
}

#[tokio::test]
async fn waits_until_the_condition_holds_then_stops_gracefully() {
    let (worker, shutdown) = counter(Ok(()));
    let status = worker.wait_until(LONG, |count| *count >= 5).await.unwrap();
    assert!(status >= 5);
    assert!(!worker.is_finished());
    let last = worker.stop(LONG).await.unwrap();
    assert!(last >= status);
    assert!(shutdown.is_cancelled());
}

#[tokio::test]
async fn a_condition_that_never_holds_times_out_with_the_last_status() {
    let (worker, _) = counter(Ok(()));
    let error = worker
        .wait_until(Duration::from_millis(50), |_| false)
        .await
        .unwrap_err();
    match error {
        Error::Timeout {
            worker,
            waited,
            status,
            ..
        } => {
            assert_eq!(worker, "counter");
            assert_eq!(waited, Duration::from_millis(50));
            assert!(status.parse::<u64>().unwrap() > 0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn waiting_on_a_worker_that_ended_fails_at_once() {
    let (worker, shutdown) = counter(Ok(()));
    shutdown.cancel();
    let started = tokio::time::Instant::now();
    let error = worker.wait_until(LONG, |_| false).await.unwrap_err();
    assert!(matches!(error, Error::WorkerEnded { .. }), "{error:?}");
    assert!(started.elapsed() < LONG / 2);
}

#[tokio::test]
async fn stop_reports_the_error_a_task_ended_with() {
    let (worker, _) = counter(Err("broken"));
    let error = worker.stop(LONG).await.unwrap_err();
    assert!(
        matches!(&error, Error::Config(reason) if reason == "broken"),
        "{error:?}"
    );
}

#[tokio::test]
async fn stop_reports_a_panic_as_an_error() {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        panic!("bad state");
    });
    let worker = WorkerHandle::computed("panicky", shutdown, || ()).with_task(task);
    match worker.stop(LONG).await.unwrap_err() {
        Error::WorkerEnded { worker, reason } => {
            assert_eq!(worker, "panicky");
            assert!(reason.contains("bad state"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_worker_slower_to_stop_than_the_timeout_is_reported() {
    let task = tokio::spawn(async {
        tokio::time::sleep(LONG).await;
        Ok(())
    });
    let worker = WorkerHandle::computed("slow", CancellationToken::new(), || 7).with_task(task);
    let error = worker.stop(Duration::from_millis(20)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Timeout { what, status, .. } if what == "stop" && status == "7"),
        "{error:?}"
    );
}

#[tokio::test]
async fn abort_runs_the_hook_and_ends_the_tasks_without_a_graceful_stop() {
    let hooked = Arc::new(AtomicBool::new(false));
    let (worker, shutdown) = counter(Ok(()));
    let flag = Arc::clone(&hooked);
    let worker = worker.on_abort(move || async move { flag.store(true, Ordering::SeqCst) });
    worker.abort().await;
    assert!(hooked.load(Ordering::SeqCst));
    // Dropping the aborted handle cancels the token; nothing is left to see
    // it.
    assert!(shutdown.is_cancelled());
}

#[tokio::test]
async fn dropping_the_handle_stops_the_worker() {
    let (worker, shutdown) = counter(Ok(()));
    drop(worker);
    assert!(shutdown.is_cancelled());
}

#[tokio::test]
async fn the_control_is_reached_through_the_handle() {
    struct Extra;
    impl Extra {
        fn answer(&self) -> u32 {
            42
        }
    }
    let (worker, _) = counter(Ok(()));
    let worker = worker.with_control(Extra);
    assert_eq!(worker.answer(), 42);
    worker.stop(LONG).await.unwrap();
}

#[tokio::test]
async fn a_computed_status_is_read_when_asked() {
    let shutdown = CancellationToken::new();
    let value = Arc::new(AtomicBool::new(false));
    let read = Arc::clone(&value);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        Ok(())
    });
    let worker = WorkerHandle::computed("flag", shutdown, move || read.load(Ordering::SeqCst))
        .with_task(task);
    assert!(!worker.status());
    let flip = Arc::clone(&value);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        flip.store(true, Ordering::SeqCst);
    });
    assert!(worker.wait_until(LONG, |set| *set).await.unwrap());
    worker.stop(LONG).await.unwrap();
}
