//! The discrete-event engine: a time-ordered queue and the run's random streams.
//!
//! Events are ordered by (time, insertion sequence), so two events at the same instant run in
//! the order they were scheduled, whatever the queue does internally. Time never goes
//! backwards: scheduling in the past is a bug and panics. The engine knows nothing about
//! packets or Kubernetes: it stores any event type `E`.
//!
//! The queue is a radix heap on time (the keys of a discrete-event queue only ever grow, which
//! is what a radix heap needs) with the events themselves in a slab: what moves between buckets
//! is a 24-byte key, never the event. Events at the current instant wait in a FIFO in insertion
//! order; a bucket's events that share its earliest time join that FIFO sorted by sequence.

use std::collections::VecDeque;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::time::Instant;

/// A queued event's place in the radix heap: its time, insertion sequence and slab slot.
#[derive(Clone, Copy, Debug)]
struct Key {
    time: u64,
    seq: u64,
    slot: u32,
}

/// A priority queue of events keyed by (time, insertion sequence), with the current time.
pub struct EventQueue<E> {
    /// Slots of the events at `now`, in insertion order.
    current: VecDeque<u32>,
    /// `buckets[i]`: the events later than `now` whose time first differs from `now` at bit `i`
    /// (the highest differing bit). Every key in bucket `i` is before every key in bucket `j > i`.
    buckets: [Vec<Key>; 64],
    /// Bit `i` set when `buckets[i]` is not empty.
    occupied: u64,
    /// Keys of a bucket's earliest instant, gathered to be sorted by sequence (kept for its
    /// allocation).
    ties: Vec<Key>,
    /// The events, by slot; `None` for a free slot.
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    len: usize,
    next_seq: u64,
    now: Instant,
    processed: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket of time `t` relative to `now` (`t > now`): the highest bit in which they differ.
fn bucket_of(t: u64, now: u64) -> usize {
    63 - (t ^ now).leading_zeros() as usize
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            current: VecDeque::new(),
            buckets: std::array::from_fn(|_| Vec::new()),
            occupied: 0,
            ties: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            next_seq: 0,
            now: Instant::ZERO,
            processed: 0,
        }
    }

    /// The time of the event being processed (or of the last one processed).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Events taken off the queue so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// Counts `n` more events as processed: those the event being handled stands for (the
    /// copies of a flood travelling as one).
    pub fn count_processed(&mut self, n: u64) {
        self.processed += n;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `event` at `time`. Panics if `time` is before `now`: time never goes back.
    pub fn schedule(&mut self, time: Instant, event: E) {
        assert!(time >= self.now, "event scheduled at {time} before now ({})", self.now);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(event);
                s
            }
            None => {
                let s = u32::try_from(self.slots.len()).expect("fewer than 2^32 pending events");
                self.slots.push(Some(event));
                s
            }
        };
        let (t, now) = (time.as_nanos(), self.now.as_nanos());
        if t == now {
            // Every event at `now` is in `current`, and this one was scheduled after them all.
            self.current.push_back(slot);
        } else {
            let b = bucket_of(t, now);
            self.buckets[b].push(Key { time: t, seq: self.next_seq, slot });
            self.occupied |= 1 << b;
        }
        self.next_seq += 1;
        self.len += 1;
    }

    /// Removes the earliest event if it is at or before `limit`, advancing `now` to its time.
    pub fn pop_until(&mut self, limit: Instant) -> Option<(Instant, E)> {
        let slot = match self.current.pop_front() {
            Some(slot) if self.now <= limit => slot,
            Some(slot) => {
                self.current.push_front(slot);
                return None;
            }
            None => self.advance(limit.as_nanos())?,
        };
        let event = self.slots[slot as usize].take().expect("a queued slot holds its event");
        self.free.push(slot);
        self.len -= 1;
        self.processed += 1;
        Some((self.now, event))
    }

    /// With nothing left at `now`: moves `now` to the earliest queued time if it is at or
    /// before `limit` and returns the slot of the first event scheduled for then (the others
    /// for then wait in `current`, in sequence order).
    fn advance(&mut self, limit: u64) -> Option<u32> {
        if self.occupied == 0 {
            return None;
        }
        let i = self.occupied.trailing_zeros() as usize;
        let bucket = &mut self.buckets[i];
        if bucket.len() == 1 {
            let k = bucket[0];
            if k.time > limit {
                return None;
            }
            bucket.clear();
            self.occupied &= !(1 << i);
            self.now = Instant::from_nanos(k.time);
            return Some(k.slot);
        }
        let t = bucket.iter().map(|k| k.time).min().expect("occupied bucket");
        if t > limit {
            return None;
        }
        // Advance to `t`: the lowest bucket's keys move to lower buckets relative to `t` (the
        // higher buckets' keys keep theirs: `t` shares their bits above `i`), and those at `t`
        // itself are taken in sequence order.
        let mut bucket = std::mem::take(bucket);
        self.occupied &= !(1 << i);
        for k in bucket.drain(..) {
            if k.time == t {
                self.ties.push(k);
            } else {
                let b = bucket_of(k.time, t);
                self.buckets[b].push(k);
                self.occupied |= 1 << b;
            }
        }
        self.buckets[i] = bucket;
        self.now = Instant::from_nanos(t);
        if self.ties.len() == 1 {
            return self.ties.pop().map(|k| k.slot);
        }
        self.ties.sort_unstable_by_key(|k| k.seq);
        self.current.extend(self.ties.drain(..).map(|k| k.slot));
        self.current.pop_front()
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
        self.slots.iter().filter_map(Option::as_ref)
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
    /// A BGP speaker's timer jitter.
    Bgp = 5,
    /// When each node's BIRD starts (`bgp.start_spread`).
    BgpStart = 6,
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
    fn matches_a_reference_heap_under_random_use() {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut rng = RngFactory::new(11).stream(Component::Link, 0);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let mut seq = 0u64;
        for round in 0..20_000u64 {
            let now = q.now().as_nanos();
            for _ in 0..rng.random_range(0..4) {
                let delay = match rng.random_range(0..4) {
                    0 => 0,
                    1 => rng.random_range(0..8),
                    2 => rng.random_range(0..10_000),
                    _ => rng.random_range(0..1u64 << 40),
                };
                q.schedule(Instant::from_nanos(now + delay), seq);
                reference.push(Reverse((now + delay, seq)));
                seq += 1;
            }
            let limit = if round % 7 == 0 { now + rng.random_range(0..5_000) } else { u64::MAX };
            let got = q.pop_until(Instant::from_nanos(limit)).map(|(t, e)| (t.as_nanos(), e));
            let want = match reference.peek() {
                Some(&Reverse((t, _))) if t <= limit => reference.pop().map(|Reverse(k)| k),
                _ => None,
            };
            assert_eq!(got, want);
            assert_eq!(q.len(), reference.len());
        }
        let mut left: Vec<u64> = q.pending().copied().collect();
        left.sort_unstable();
        let mut want: Vec<u64> = reference.into_iter().map(|Reverse((_, s))| s).collect();
        want.sort_unstable();
        assert_eq!(left, want);
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
