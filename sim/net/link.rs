//! A directed cable with a transmitter: serialisation at the link rate, propagation delay,
//! a drop-tail queue in bytes and optional random loss.
//!
//! The transmitter sends one frame at a time; a frame offered while it is busy waits in the
//! queue. A frame that does not fit the queue's byte budget is dropped on arrival (drop-tail).
//! The queue holds frames waiting and the one being sent, as Linux's byte queue limits count
//! them.

use std::collections::VecDeque;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::time::{Duration, Instant};

/// Why a link refused a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDrop {
    QueueFull,
    /// A host NIC's qdisc held its `txqueuelen` packets.
    QdiscFull,
    Loss,
}

/// Bytes a frame of `len` bytes (Ethernet header + payload, as captured) occupies on the wire:
/// padded to the 60-byte minimum, plus FCS (4), preamble and start delimiter (8) and the
/// inter-frame gap (12) (IEEE 802.3 clauses 3 and 4).
pub fn wire_len(len: usize) -> usize {
    len.max(60) + 4 + 8 + 12
}

#[derive(Debug)]
pub struct Link {
    pub bandwidth_bps: u64,
    pub propagation: Duration,
    pub queue_limit: u64,
    /// On a host's NIC: the qdisc's packet limit (`txqueuelen`; pfifo_fast tail-drops past
    /// it). Switch ports and fabric links have only the byte budget.
    pub packet_limit: Option<usize>,
    pub loss: f64,
    rng: ChaCha8Rng,
    /// When the transmitter finishes the last accepted frame.
    busy_until: Instant,
    /// (time the frame leaves the transmitter, its size, whether it holds a qdisc slot) for
    /// frames not yet sent.
    in_queue: VecDeque<(Instant, u32, bool)>,
    queued_bytes: u64,
    /// Entries of `in_queue` that hold a qdisc slot.
    queued_packets: usize,
    /// Frames and bytes accepted, frames dropped by queue and by loss.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub drops_queue: u64,
    pub drops_loss: u64,
    /// Frames refused by the qdisc's packet limit.
    pub drops_qdisc: u64,
    /// Largest queue occupancy seen, bytes.
    pub max_queued_bytes: u64,
}

impl Link {
    pub fn new(
        bandwidth_bps: u64,
        propagation: Duration,
        queue_limit: u64,
        loss: f64,
        rng: ChaCha8Rng,
    ) -> Link {
        Link {
            bandwidth_bps,
            propagation,
            queue_limit,
            packet_limit: None,
            loss,
            rng,
            busy_until: Instant::ZERO,
            in_queue: VecDeque::new(),
            queued_bytes: 0,
            queued_packets: 0,
            tx_frames: 0,
            tx_bytes: 0,
            drops_queue: 0,
            drops_loss: 0,
            drops_qdisc: 0,
            max_queued_bytes: 0,
        }
    }

    /// Offers a frame of `len` bytes at `now`. Returns when its last bit reaches the far end.
    /// Offers must come in non-decreasing time order (the engine guarantees it).
    pub fn offer(&mut self, now: Instant, len: usize) -> Result<Instant, LinkDrop> {
        self.offer_frame(now, len, true)
    }

    /// When the frame last accepted will have left the transmitter.
    pub fn busy_until(&self) -> Instant {
        self.busy_until
    }

    /// [`Self::offer`] for one frame of a TSO super-packet the NIC cuts in hardware: the qdisc
    /// held the super-packet as one skb, so only its first frame (`qdisc_slot`) takes a slot
    /// of `txqueuelen`.
    pub fn offer_frame(&mut self, now: Instant, len: usize, qdisc_slot: bool) -> Result<Instant, LinkDrop> {
        while let Some(&(done, bytes, slot)) = self.in_queue.front() {
            if done > now {
                break;
            }
            self.in_queue.pop_front();
            self.queued_bytes -= bytes as u64;
            self.queued_packets -= usize::from(slot);
        }
        if qdisc_slot && self.packet_limit.is_some_and(|limit| self.queued_packets >= limit) {
            self.drops_qdisc += 1;
            return Err(LinkDrop::QdiscFull);
        }
        if self.queued_bytes + len as u64 > self.queue_limit {
            self.drops_queue += 1;
            return Err(LinkDrop::QueueFull);
        }
        let start = self.busy_until.max(now);
        let done = start + Duration::serialisation(wire_len(len), self.bandwidth_bps);
        self.busy_until = done;
        self.in_queue.push_back((done, len as u32, qdisc_slot));
        self.queued_bytes += len as u64;
        self.queued_packets += usize::from(qdisc_slot);
        self.max_queued_bytes = self.max_queued_bytes.max(self.queued_bytes);
        // The frame occupies the wire either way; loss corrupts it in flight.
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            self.drops_loss += 1;
            return Err(LinkDrop::Loss);
        }
        self.tx_frames += 1;
        self.tx_bytes += len as u64;
        Ok(done + self.propagation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Component, RngFactory};

    fn link(queue: u64, loss: f64) -> Link {
        let rng = RngFactory::new(1).stream(Component::Link, 0);
        Link::new(8_000_000_000, Duration::from_micros(5), queue, loss, rng)
    }

    #[test]
    fn serialisation_queueing_and_propagation() {
        let mut l = link(10_000, 0.0);
        // A 976 B frame is 1000 B on the wire: 1 us at 8 Gbit/s, + 5 us propagation.
        assert_eq!(l.offer(Instant::ZERO, 976), Ok(Instant::from_nanos(6_000)));
        // Second frame waits for the first.
        assert_eq!(l.offer(Instant::ZERO, 976), Ok(Instant::from_nanos(7_000)));
        // Idle link later: no waiting. A 42 B ARP frame is padded to 60 B: 84 B on the wire.
        assert_eq!(l.offer(Instant::from_nanos(100_000), 42), Ok(Instant::from_nanos(105_084)));
    }

    #[test]
    fn drop_tail_in_bytes() {
        let mut l = link(2_500, 0.0);
        assert!(l.offer(Instant::ZERO, 976).is_ok());
        assert!(l.offer(Instant::ZERO, 976).is_ok());
        assert_eq!(l.offer(Instant::ZERO, 976), Err(LinkDrop::QueueFull));
        // After the first frame has left (1 us), there is room again.
        assert!(l.offer(Instant::from_nanos(1_000), 976).is_ok());
        assert_eq!(l.drops_queue, 1);
    }

    #[test]
    fn qdisc_packet_limit_before_the_byte_budget() {
        let mut l = link(u64::MAX, 0.0);
        l.packet_limit = Some(2);
        assert!(l.offer(Instant::ZERO, 60).is_ok());
        assert!(l.offer(Instant::ZERO, 60).is_ok());
        assert_eq!(l.offer(Instant::ZERO, 60), Err(LinkDrop::QdiscFull));
        assert_eq!((l.drops_qdisc, l.drops_queue), (1, 0));
    }

    #[test]
    fn loss_rate_is_roughly_honoured() {
        let mut l = link(u64::MAX, 0.1);
        let lost = (0..10_000).filter(|i| l.offer(Instant::from_nanos(i * 10_000), 100).is_err()).count();
        assert!((800..1200).contains(&lost), "{lost}");
    }
}
