//! `drive` and `ConnExec` on a real runtime.

use super::*;
use hyper::rt::Executor;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test]
async fn inline_futures_finish_before_drive_returns_and_extra_ones_are_spawned() {
    let exec = ConnExec::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let conn = {
        let exec = exec.clone();
        let done = done.clone();
        async move {
            for _ in 0..INLINE_STREAMS + 3 {
                let done = done.clone();
                exec.execute(async move {
                    tokio::task::yield_now().await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            assert_eq!(exec.lock().inline, INLINE_STREAMS, "the rest were spawned");
            let handed = INLINE_STREAMS + 3;
            assert_eq!(
                exec.activity(),
                (handed, handed as u64),
                "all of them are open"
            );
            let _ = rx.await;
            "closed"
        }
    };
    let driving = tokio::spawn(drive(conn, exec.clone()));
    while exec.activity().0 > 0 || done.load(Ordering::SeqCst) < INLINE_STREAMS + 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(done.load(Ordering::SeqCst), INLINE_STREAMS + 3);
    assert_eq!(exec.lock().inline, 0);
    assert_eq!(
        exec.activity(),
        (0, INLINE_STREAMS as u64 + 3),
        "spawned ones too ended"
    );
    tx.send(()).unwrap();
    assert_eq!(driving.await.unwrap(), "closed");
}

#[tokio::test]
async fn drive_waits_for_inline_requests_after_the_connection_ends() {
    let exec = ConnExec::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let got = Arc::new(AtomicUsize::new(0));
    let conn = {
        let exec = exec.clone();
        let got = got.clone();
        async move {
            exec.execute(async move {
                got.store(rx.await.unwrap() as usize, Ordering::SeqCst);
            });
        }
    };
    let driving = tokio::spawn(drive(conn, exec.clone()));
    // The connection has ended and handed over its request; give `drive` every chance to
    // (wrongly) return.
    while exec.activity().1 == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!driving.is_finished(), "a request is still in flight");
    tx.send(7).unwrap();
    driving.await.unwrap();
    assert_eq!(got.load(Ordering::SeqCst), 7);
}

/// A connection that keeps waking itself without progress (as tokio's cooperative budget
/// makes I/O do) must not hold the thread: other tasks run in between, and it finishes.
/// Run on a thread of its own, so a spinning `drive` fails the test instead of hanging it.
#[test]
fn a_future_that_wakes_itself_yields_to_other_tasks() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = rt.block_on(async {
            let other_ran = Arc::new(AtomicBool::new(false));
            let conn = {
                let other_ran = other_ran.clone();
                std::future::poll_fn(move |cx| {
                    if other_ran.load(Ordering::SeqCst) {
                        Poll::Ready("done")
                    } else {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                })
            };
            let driving = tokio::spawn(drive(conn, ConnExec::default()));
            tokio::spawn(async move { other_ran.store(true, Ordering::SeqCst) });
            driving.await.unwrap()
        });
        let _ = done_tx.send(out);
    });
    let out = done_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("drive never yielded to the other task");
    assert_eq!(out, "done");
}

/// A wake-up from another thread while `drive` is parked is never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_from_other_threads_are_not_lost() {
    for _ in 0..200 {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let driving = tokio::spawn(drive(rx, ConnExec::default()));
        std::thread::spawn(move || tx.send(1).unwrap());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), driving)
            .await
            .expect("a wake-up was lost");
        assert_eq!(got.unwrap().unwrap(), 1);
    }
}

/// A panicking request ends only itself: the connection and its other requests go on.
#[tokio::test]
async fn a_panicking_request_does_not_end_the_connection() {
    let exec = ConnExec::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let got = Arc::new(AtomicUsize::new(0));
    let conn = {
        let exec = exec.clone();
        let got = got.clone();
        async move {
            exec.execute(async move {
                got.store(rx.await.unwrap() as usize, Ordering::SeqCst);
            });
            exec.execute(async {
                tokio::task::yield_now().await;
                panic!("a handler bug");
            });
            "closed"
        }
    };
    let driving = tokio::spawn(drive(conn, exec.clone()));
    while exec.activity().0 > 1 {
        tokio::task::yield_now().await;
    }
    tx.send(7).unwrap();
    assert_eq!(driving.await.expect("drive survived the panic"), "closed");
    assert_eq!(got.load(Ordering::SeqCst), 7, "the other request finished");
}
