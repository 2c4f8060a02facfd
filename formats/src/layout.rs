//! Where slot `n` lives: a pure function of the stripe set's geometry.
//!
//! Slots go round-robin over the members in member order. Members of unequal
//! size: once the smaller members are full, the round-robin continues over
//! the members that still have room, so every slot of every member is used
//! and the order stays a pure function of the slot counts. The stripe set's
//! capacity is the sum of the members' slot counts. In ring mode slot `n`
//! goes where slot `n % capacity` would, overwriting the slot of the
//! previous lap; otherwise slot `capacity` does not exist (device full).

use crate::{PayloadSize, Superblock, DATA_START_BYTES, MAX_DEVICES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Slot count of each member, in member order.
    slot_counts: Vec<u64>,
    slot_bytes: u64,
    ring: bool,
    /// The round-robin phases, computed once: [`Self::locate`] runs once per
    /// recorded slot and allocates nothing.
    phases: Vec<Phase>,
}

/// Rounds `start_round..end_round` go round-robin over `members` (every
/// member with at least `end_round` slots, in member order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Phase {
    start_round: u64,
    end_round: u64,
    members: Vec<usize>,
}

impl Phase {
    fn slots(&self) -> u64 {
        (self.end_round - self.start_round) * self.members.len() as u64
    }
}

/// A slot's place on the stripe set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub device_index: usize,
    /// Slot number on that device, from 0.
    pub device_slot: u64,
    /// Byte offset of the slot's header page on that device.
    pub offset_bytes: u64,
    /// How many times the ring has wrapped before this slot (0 if not ring).
    pub lap: u64,
}

impl Layout {
    pub fn new(slot_counts: Vec<u64>, payload_size: PayloadSize, ring: bool) -> Layout {
        assert!(!slot_counts.is_empty() && slot_counts.len() <= MAX_DEVICES);
        assert!(
            slot_counts.iter().all(|&c| c > 0),
            "every member holds at least one slot"
        );
        // The distinct slot counts, ascending, end the phases.
        let mut thresholds = slot_counts.clone();
        thresholds.sort_unstable();
        thresholds.dedup();
        let mut start_round = 0;
        let phases = thresholds
            .into_iter()
            .map(|end_round| {
                let members = (0..slot_counts.len())
                    .filter(|&d| slot_counts[d] >= end_round)
                    .collect();
                let p = Phase {
                    start_round,
                    end_round,
                    members,
                };
                start_round = end_round;
                p
            })
            .collect();
        Layout {
            slot_counts,
            slot_bytes: payload_size.slot_bytes(),
            ring,
            phases,
        }
    }

    pub fn from_superblock(sb: &Superblock) -> Layout {
        let payload_size = sb
            .payload_size()
            .expect("superblocks are validated when decoded or made");
        Layout::new(
            sb.members.iter().map(|m| m.slot_count).collect(),
            payload_size,
            sb.ring(),
        )
    }

    pub fn capacity_slots(&self) -> u64 {
        self.slot_counts.iter().sum()
    }

    pub fn slot_bytes(&self) -> u64 {
        self.slot_bytes
    }

    pub fn ring(&self) -> bool {
        self.ring
    }

    pub fn device_count(&self) -> usize {
        self.slot_counts.len()
    }

    /// Byte offset of slot `device_slot` on any member.
    pub fn offset_of(&self, device_slot: u64) -> u64 {
        DATA_START_BYTES + device_slot * self.slot_bytes
    }

    /// Where slot `slot_seq` goes, or `None` when it does not fit (the stripe
    /// set is full and this is not a ring).
    pub fn locate(&self, slot_seq: u64) -> Option<Location> {
        let capacity = self.capacity_slots();
        if !self.ring && slot_seq >= capacity {
            return None;
        }
        let (lap, mut rest) = (slot_seq / capacity, slot_seq % capacity);
        // Bounded by the member count.
        for phase in &self.phases {
            if rest < phase.slots() {
                let n = phase.members.len() as u64;
                let device_slot = phase.start_round + rest / n;
                let device_index = phase.members[(rest % n) as usize];
                return Some(Location {
                    device_index,
                    device_slot,
                    offset_bytes: self.offset_of(device_slot),
                    lap,
                });
            }
            rest -= phase.slots();
        }
        unreachable!("slot {slot_seq} inside capacity {capacity} but beyond every phase")
    }

    /// The slot sequence number modulo capacity that lives at
    /// (`device_index`, `device_slot`): the inverse of [`Self::locate`].
    pub fn position_of(&self, device_index: usize, device_slot: u64) -> Option<u64> {
        if device_index >= self.slot_counts.len() || device_slot >= self.slot_counts[device_index] {
            return None;
        }
        let mut before = 0u64;
        for phase in &self.phases {
            if device_slot < phase.end_round {
                let n = phase.members.len() as u64;
                let rank = phase.members.iter().position(|&d| d == device_index)? as u64;
                return Some(before + (device_slot - phase.start_round) * n + rank);
            }
            before += phase.slots();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unequal_members_fill_completely_and_invert() {
        let layout = Layout::new(vec![3, 7, 5], PayloadSize::new(4096).unwrap(), false);
        assert_eq!(layout.capacity_slots(), 15);
        let mut used = std::collections::HashSet::new();
        for s in 0..15 {
            let loc = layout.locate(s).unwrap();
            assert!(
                used.insert((loc.device_index, loc.device_slot)),
                "slot {s} placed twice"
            );
            assert_eq!(
                layout.position_of(loc.device_index, loc.device_slot),
                Some(s)
            );
        }
        assert_eq!(layout.locate(15), None);
        // Round-robin first over all three, then over the two bigger, then the biggest.
        let order: Vec<usize> = (0..15)
            .map(|s| layout.locate(s).unwrap().device_index)
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 1, 2, 1, 2, 1, 1]);
    }

    #[test]
    fn ring_wraps_with_laps() {
        let layout = Layout::new(vec![2, 2], PayloadSize::new(4096).unwrap(), true);
        let a = layout.locate(1).unwrap();
        let b = layout.locate(5).unwrap();
        assert_eq!((a.device_index, a.device_slot, a.lap), (1, 0, 0));
        assert_eq!((b.device_index, b.device_slot, b.lap), (1, 0, 1));
        assert_eq!(b.offset_bytes, DATA_START_BYTES);
    }
}
