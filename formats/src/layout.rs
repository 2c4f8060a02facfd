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
    /// The region of set positions this layout places slots in (a scan's,
    /// docs/FORMAT.md "Scans"): slot `n` goes to set position
    /// `first_slot + n` (ring: `first_slot + n % region_slots`).
    first_slot: u64,
    region_slots: u64,
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
        let region_slots = slot_counts.iter().sum();
        Layout {
            slot_counts,
            slot_bytes: payload_size.slot_bytes(),
            ring,
            first_slot: 0,
            region_slots,
            phases,
        }
    }

    /// This set's layout restricted to the set positions
    /// `first_slot .. first_slot + region_slots` (a scan's region).
    pub fn region(&self, first_slot: u64, region_slots: u64, ring: bool) -> Layout {
        let set = self.set_capacity_slots();
        assert!(
            first_slot
                .checked_add(region_slots)
                .is_some_and(|end| end <= set),
            "region {first_slot}+{region_slots} beyond the set's {set} slots"
        );
        Layout {
            ring,
            first_slot,
            region_slots,
            ..self.clone()
        }
    }

    /// Slots of the whole stripe set (every member's slot count).
    pub fn set_capacity_slots(&self) -> u64 {
        self.slot_counts.iter().sum()
    }

    /// Set position of this layout's slot 0.
    pub fn first_slot(&self) -> u64 {
        self.first_slot
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

    /// Slots this layout can place (before wrapping, in ring mode): the
    /// region's size; the whole set's unless [`Self::region`] narrowed it.
    pub fn capacity_slots(&self) -> u64 {
        self.region_slots
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
        if capacity == 0 || (!self.ring && slot_seq >= capacity) {
            return None;
        }
        let (lap, offset) = (slot_seq / capacity, slot_seq % capacity);
        let mut rest = self.first_slot + offset;
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
        let set_position = self.set_position_of(device_index, device_slot)?;
        let in_region = set_position.checked_sub(self.first_slot)?;
        (in_region < self.region_slots).then_some(in_region)
    }

    /// The set position at (`device_index`, `device_slot`), whatever the region.
    pub fn set_position_of(&self, device_index: usize, device_slot: u64) -> Option<u64> {
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
    fn a_region_places_slots_after_its_first_position_and_inverts() {
        let set = Layout::new(vec![3, 7, 5], PayloadSize::new(4096).unwrap(), false);
        let scan = set.region(4, 6, false);
        assert_eq!(scan.capacity_slots(), 6);
        assert_eq!(scan.set_capacity_slots(), 15);
        for n in 0..6 {
            let loc = scan.locate(n).unwrap();
            assert_eq!(loc, set.locate(4 + n).unwrap(), "slot {n}");
            assert_eq!(scan.position_of(loc.device_index, loc.device_slot), Some(n));
        }
        assert_eq!(scan.locate(6), None);
        // Positions outside the region belong to no slot of this scan.
        let before = set.locate(3).unwrap();
        let after = set.locate(10).unwrap();
        assert_eq!(
            scan.position_of(before.device_index, before.device_slot),
            None
        );
        assert_eq!(
            scan.position_of(after.device_index, after.device_slot),
            None
        );
        // A ring region wraps inside itself.
        let ring = set.region(12, 3, true);
        assert_eq!(
            ring.locate(3).unwrap(),
            Location {
                lap: 1,
                ..set.locate(12).unwrap()
            }
        );
        assert_eq!(
            ring.locate(5).unwrap().offset_bytes,
            set.locate(14).unwrap().offset_bytes
        );
        assert_eq!(set.region(15, 0, false).locate(0), None);
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
