//! The one scheduler that drives every session's timers (docs/wire-format.md#session-timers, but one heap instead of kcp-go's
//! per-CPU workers).
//!
//! A single thread owns a min-heap of `(deadline, generation, session)`. Each session keeps at most one *live*
//! entry: it pushes a new one only when its engine's `next_deadline()` comes earlier than the entry it already
//! has, and bumps its generation so older entries are recognised as stale and skipped when they pop. A session
//! whose engine is idle (`next_deadline() == None`) has no live entry and costs nothing until it does something.
//!
//! The thread is independent of any tokio runtime, so sessions created on different runtimes (one per test, say)
//! share it. When an entry pops, the session checks on this thread (one short lock) whether its engine still has
//! work due: an entry made stale by an ACK that idled the engine or moved its deadline later costs no task and
//! no runtime wake-up. The sessions that do have work are handed to their runtimes in one task per runtime and
//! batch, not one task each.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Something the scheduler can wake: a session.
pub(crate) trait Timed: Send + Sync {
    /// Whether an entry pushed with `generation` is still wanted (lock-free; a stale entry is dropped without
    /// waking the thread for it).
    fn live(&self, generation: u64) -> bool;
    /// Called on the scheduler thread once an entry's deadline (ms on the [`now_ms`] clock, here `now`) has
    /// passed, with the generation the entry was pushed with. Returns the runtime on which
    /// [`Timed::run`] must be called if there is work due; `None` if the entry is stale or the work was
    /// rescheduled (the callee pushes a new entry itself).
    fn due(&self, generation: u64, now: u64) -> Option<tokio::runtime::Handle>;
    /// The timer's work, run inside the runtime that [`Timed::due`] returned.
    fn run(&self, generation: u64);
}

/// Milliseconds since the process's clock epoch (the first time anyone asked).
pub(crate) fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// [`now_ms`] as the packet path's clock type.
pub(crate) fn now() -> crate::proto::time::Timestamp {
    crate::proto::time::Timestamp::from_millis(now_ms())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

struct Entry {
    deadline: u64,
    seq: u64,
    generation: u64,
    target: Weak<dyn Timed>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other
            .deadline
            .cmp(&self.deadline)
            .then(other.seq.cmp(&self.seq))
    }
}

/// Timers handed to one runtime in one task: the target and the generation its entry carried.
type Batch = Vec<(Arc<dyn Timed>, u64)>;

struct Heap {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

/// The process-wide timer heap.
pub(crate) struct Scheduler {
    heap: Mutex<Heap>,
    /// The deadline the thread is sleeping towards (`u64::MAX` when it sleeps without one); a push earlier than
    /// this unparks it.
    sleeping_until: AtomicU64,
    thread: OnceLock<Thread>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("entries", &self.heap.lock().heap.len())
            .finish()
    }
}

impl Scheduler {
    /// The shared scheduler, started on first use.
    pub(crate) fn global() -> &'static Arc<Scheduler> {
        static GLOBAL: OnceLock<Arc<Scheduler>> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let s = Arc::new(Scheduler {
                heap: Mutex::new(Heap {
                    heap: BinaryHeap::new(),
                    seq: 0,
                }),
                sleeping_until: AtomicU64::new(0),
                thread: OnceLock::new(),
            });
            let run = Arc::clone(&s);
            let handle = std::thread::Builder::new()
                .name("kcp-timer".into())
                .spawn(move || run.run())
                .expect("spawning the KCP timer thread");
            let _ = s.thread.set(handle.thread().clone());
            s
        })
    }

    /// Asks for `target.on_timer(generation)` at `deadline` (ms on the [`now_ms`] clock).
    pub(crate) fn schedule(&self, deadline: u64, generation: u64, target: Weak<dyn Timed>) {
        {
            let mut h = self.heap.lock();
            h.seq += 1;
            let seq = h.seq;
            h.heap.push(Entry {
                deadline,
                seq,
                generation,
                target,
            });
        }
        if deadline < self.sleeping_until.load(Ordering::Acquire)
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    fn run(&self) {
        let mut due: Vec<(u64, Weak<dyn Timed>)> = Vec::new();
        // Work to hand to runtimes, grouped by runtime (usually one).
        let mut batches: Vec<(tokio::runtime::Handle, Batch)> = Vec::new();
        loop {
            let now = now_ms();
            let next = {
                let mut h = self.heap.lock();
                // Due entries are collected; stale ones at the top are dropped, so the thread only ever sleeps
                // towards an entry someone still wants.
                while let Some(e) = h.heap.peek() {
                    let is_due = e.deadline <= now;
                    let live = e.target.upgrade().is_some_and(|t| t.live(e.generation));
                    if !is_due && live {
                        break;
                    }
                    if let Some(e) = h.heap.pop()
                        && live
                    {
                        due.push((e.generation, e.target));
                    }
                }
                let next = h.heap.peek().map_or(u64::MAX, |e| e.deadline);
                // Published under the lock, so a push that lands after it sees the value and unparks us.
                self.sleeping_until
                    .store(if due.is_empty() { next } else { 0 }, Ordering::Release);
                next
            };
            if !due.is_empty() {
                for (generation, target) in due.drain(..) {
                    let Some(t) = target.upgrade() else { continue };
                    let Some(rt) = t.due(generation, now) else {
                        continue;
                    };
                    match batches.iter_mut().find(|(h, _)| h.id() == rt.id()) {
                        Some((_, work)) => work.push((t, generation)),
                        None => batches.push((rt, vec![(t, generation)])),
                    }
                }
                for (rt, work) in batches.drain(..) {
                    rt.spawn(async move {
                        for (t, generation) in work {
                            t.run(generation);
                        }
                    });
                }
                continue;
            }
            if next == u64::MAX {
                std::thread::park();
            } else {
                let wake_at = epoch() + Duration::from_millis(next);
                let now = Instant::now();
                if wake_at > now {
                    std::thread::park_timeout(wake_at - now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counter {
        hits: AtomicUsize,
        dues: AtomicUsize,
        live: AtomicU64,
        rt: tokio::runtime::Handle,
    }
    impl Timed for Counter {
        fn live(&self, generation: u64) -> bool {
            generation == self.live.load(Ordering::SeqCst)
        }
        fn due(&self, generation: u64, _now: u64) -> Option<tokio::runtime::Handle> {
            self.dues.fetch_add(1, Ordering::SeqCst);
            (generation == self.live.load(Ordering::SeqCst)).then(|| self.rt.clone())
        }
        fn run(&self, _generation: u64) {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fires_in_order_and_skips_stale_generations() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let s = Scheduler::global();
        let c = Arc::new(Counter {
            hits: AtomicUsize::new(0),
            dues: AtomicUsize::new(0),
            live: AtomicU64::new(2),
            rt: rt.handle().clone(),
        });
        let weak: Weak<dyn Timed> = Arc::downgrade(&(c.clone() as Arc<dyn Timed>));
        let now = now_ms();
        s.schedule(now + 30, 1, weak.clone()); // stale generation: must not count
        s.schedule(now + 5, 2, weak.clone());
        let start = Instant::now();
        while c.hits.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.hits.load(Ordering::SeqCst), 1);
        // The superseded entry was dropped by generation, never handed to the target.
        assert_eq!(c.dues.load(Ordering::SeqCst), 1);
    }
}
