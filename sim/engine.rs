//! The discrete-event engine: a time-ordered queue and the run's random streams.
//!
//! Events are ordered by (time, insertion sequence), so two events at the same instant run in
//! the order they were scheduled, whatever the heap does. Time never goes backwards: scheduling
//! in the past is a bug and panics. The engine knows nothing about packets or Kubernetes: it
//! stores any event type `E`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::time::Instant;

struct Entry<E> {
    time: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest (time, seq) on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// A priority queue of events keyed by (time, insertion sequence), with the current time.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
    now: Instant,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue { heap: BinaryHeap::new(), next_seq: 0, now: Instant::ZERO, processed: 0 }
    }

    /// The time of the event being processed (or of the last one processed).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Events taken off the queue so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Schedules `event` at `time`. Panics if `time` is before `now`: time never goes back.
    pub fn schedule(&mut self, time: Instant, event: E) {
        assert!(time >= self.now, "event scheduled at {time} before now ({})", self.now);
        self.heap.push(Entry { time, seq: self.next_seq, event });
        self.next_seq += 1;
    }

    /// Removes the earliest event if it is at or before `limit`, advancing `now` to its time.
    pub fn pop_until(&mut self, limit: Instant) -> Option<(Instant, E)> {
        if self.heap.peek()?.time > limit {
            return None;
        }
        let Entry { time, event, .. } = self.heap.pop()?;
        debug_assert!(time >= self.now);
        self.now = time;
        self.processed += 1;
        Some((time, event))
    }

    /// Runs `handler` on every event up to and including `limit`, in order. The handler may
    /// schedule more events. Returns the number of events processed.
    pub fn run_until(&mut self, limit: Instant, mut handler: impl FnMut(&mut Self, Instant, E)) -> u64 {
        let before = self.processed;
        while let Some((t, e)) = self.pop_until(limit) {
            handler(self, t, e);
        }
        self.processed - before
    }

    /// The events still queued, in no particular order (for end-of-run accounting).
    pub fn pending(&self) -> impl Iterator<Item = &E> {
        self.heap.iter().map(|e| &e.event)
    }
}

/// Kinds of simulation component that draw random numbers. Each (kind, index) pair gets its own
/// ChaCha stream, so adding a link does not change the numbers a workload draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Component {
    Link = 1,
    Workload = 2,
    Node = 3,
    Proxy = 4,
}

/// Splits one seed into independent, reproducible random streams.
#[derive(Clone, Copy, Debug)]
pub struct RngFactory {
    seed: u64,
}

impl RngFactory {
    pub fn new(seed: u64) -> Self {
        RngFactory { seed }
    }

    /// The stream for component `(kind, index)`: ChaCha8 seeded with the run seed, on stream
    /// number `kind << 48 | index`.
    pub fn stream(&self, kind: Component, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(((kind as u64) << 48) | (index & ((1 << 48) - 1)));
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn orders_by_time_then_insertion() {
        let mut q = EventQueue::new();
        q.schedule(Instant::from_nanos(20), "c");
        q.schedule(Instant::from_nanos(10), "a");
        q.schedule(Instant::from_nanos(20), "d");
        q.schedule(Instant::from_nanos(10), "b");
        let mut seen = Vec::new();
        q.run_until(Instant::MAX, |_, t, e| seen.push((t.as_nanos(), e)));
        assert_eq!(seen, [(10, "a"), (10, "b"), (20, "c"), (20, "d")]);
    }

    #[test]
    fn run_until_stops_at_limit_and_handlers_can_schedule() {
        let mut q = EventQueue::new();
        q.schedule(Instant::ZERO, 0u32);
        let n = q.run_until(Instant::from_nanos(100), |q, t, k| {
            q.schedule(t + crate::time::Duration::from_nanos(30), k + 1);
        });
        assert_eq!(n, 4); // t = 0, 30, 60, 90
        assert_eq!(q.now(), Instant::from_nanos(90));
        assert_eq!(q.len(), 1);
    }

    #[test]
    #[should_panic(expected = "before now")]
    fn scheduling_in_the_past_panics() {
        let mut q = EventQueue::new();
        q.schedule(Instant::from_nanos(10), ());
        q.pop_until(Instant::MAX);
        q.schedule(Instant::from_nanos(5), ());
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let f = RngFactory::new(7);
        let a: u64 = f.stream(Component::Link, 3).random();
        let b: u64 = f.stream(Component::Link, 3).random();
        let c: u64 = f.stream(Component::Link, 4).random();
        let d: u64 = RngFactory::new(8).stream(Component::Link, 3).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
