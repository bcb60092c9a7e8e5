//! Model checks of [`WakeGate`] with loom: every interleaving of `drive`'s poll (a pass over its
//! futures, then parking) with wake-ups from other threads, before, during and after the poll.
//! The property: the event a wake-up announces is always seen by a poll.

use super::{Flag, WakeGate};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};

#[derive(Default)]
struct LoomFlag(AtomicBool);

impl Flag for LoomFlag {
    fn set(&self, value: bool) {
        self.0.store(value, Ordering::SeqCst);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn fence() {
        loom::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// What `drive` and the executor share in the model: the gate, the events announced by
/// wake-ups (behind a lock, as h2's stream state and the executor's queue are), and the
/// task's "woken" bit (set by a wake-up, taken by the executor).
#[derive(Default)]
struct World {
    gate: WakeGate<LoomFlag>,
    events: Mutex<usize>,
    task_woken: AtomicBool,
}

impl World {
    /// Another thread: an event happens, then its wake-up.
    fn raise(&self) {
        *self.events.lock().unwrap() += 1;
        if self.gate.wake() {
            self.task_woken.store(true, Ordering::SeqCst);
        }
    }

    /// One poll of `drive`, as its loop does it (`self_wakes` bounded by `max_self_wakes`);
    /// returns the events seen.
    fn poll(&self, max_self_wakes: usize) -> usize {
        self.gate.enter();
        let mut self_wakes = 0;
        loop {
            self.gate.round();
            let seen = *self.events.lock().unwrap();
            if self.gate.woken() {
                self_wakes += 1;
                if self_wakes <= max_self_wakes {
                    continue;
                }
                self.gate.leave();
                self.task_woken.store(true, Ordering::SeqCst);
                return seen;
            }
            if self.gate.park() {
                return seen;
            }
        }
    }
}

/// `threads` wake-ups from other threads race with a poll; the executor then polls again
/// for as long as the task was woken. Every event must have been seen.
fn check(threads: usize, max_self_wakes: usize) {
    let mut model = loom::model::Builder::new();
    // Every interleaving with up to three preemptions: bugs of this kind (a lost wake-up
    // between two flags) need two; unbounded, three threads with locks take hours.
    model.preemption_bound = Some(3);
    model.check(move || {
        let world = Arc::new(World::default());
        let wakers: Vec<_> = (0..threads)
            .map(|_| {
                let world = world.clone();
                loom::thread::spawn(move || world.raise())
            })
            .collect();
        let mut seen = world.poll(max_self_wakes);
        for w in wakers {
            w.join().unwrap();
        }
        while world.task_woken.swap(false, Ordering::SeqCst) {
            seen = world.poll(max_self_wakes);
        }
        assert_eq!(seen, threads, "a wake-up was lost");
    });
}

#[test]
fn a_wake_up_during_or_after_a_poll_is_never_lost() {
    check(1, super::MAX_SELF_WAKES);
}

#[test]
fn wake_ups_from_two_threads_are_never_lost() {
    check(2, super::MAX_SELF_WAKES);
}

#[test]
fn a_poll_that_gives_up_its_self_wakes_still_sees_every_event() {
    check(2, 0);
}
