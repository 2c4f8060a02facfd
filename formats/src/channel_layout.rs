//! How a recording's channels share the card buffers (superblock field
//! `channel_layout`, docs/FORMAT.md "Channel layouts"), defined once for the
//! recorder, the simulated cards, verify and export.
//!
//! - Round-robin (code 1, format 1.0): every buffer belongs to one channel,
//!   buffer `card_seq` to channel `card_seq mod N`.
//! - Interleaved (code 2, format 1.1): every buffer holds whole *frames*; a
//!   frame is one sample of each of the N channels in channel order, so a
//!   frame is `N × sample_bytes` and sample `k` of channel `c` in a buffer
//!   starts at byte `k × frame_bytes + c × sample_bytes`. All channels have
//!   the same datatype. A buffer carries `payload_bytes_used / frame_bytes`
//!   samples of every channel; `payload_bytes_used` is a non-zero multiple
//!   of the frame size. The slot header's channel field is 0.

use crate::{datatype_sample_bytes, Superblock};

/// Superblock code: buffer `card_seq` belongs to channel `card_seq % channels`.
pub const CHANNEL_LAYOUT_ROUND_ROBIN: u16 = 1;
/// Superblock code: every buffer holds frames of all channels' samples.
pub const CHANNEL_LAYOUT_INTERLEAVED: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLayout {
    RoundRobin { channels: u16 },
    Interleaved { channels: u16, sample_bytes: u32 },
}

impl ChannelLayout {
    /// The layout a validated superblock describes.
    pub fn of(sb: &Superblock) -> ChannelLayout {
        let channels = sb.channels.len() as u16;
        assert!(channels >= 1, "a validated superblock has channels");
        match sb.channel_layout {
            CHANNEL_LAYOUT_INTERLEAVED => ChannelLayout::Interleaved {
                channels,
                sample_bytes: datatype_sample_bytes(&sb.channels[0].datatype)
                    .expect("a validated superblock has SigMF datatypes")
                    as u32,
            },
            CHANNEL_LAYOUT_ROUND_ROBIN => ChannelLayout::RoundRobin { channels },
            other => panic!("channel layout {other} passed superblock validation"),
        }
    }

    /// The superblock's code for this layout.
    pub fn code(&self) -> u16 {
        match self {
            ChannelLayout::RoundRobin { .. } => CHANNEL_LAYOUT_ROUND_ROBIN,
            ChannelLayout::Interleaved { .. } => CHANNEL_LAYOUT_INTERLEAVED,
        }
    }

    /// The name dmarec's `--channel-layout` and dmaplay's reports use.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelLayout::RoundRobin { .. } => "round_robin",
            ChannelLayout::Interleaved { .. } => "interleaved",
        }
    }

    /// The name in messages: `round-robin` or `interleaved`.
    pub fn describe(&self) -> &'static str {
        match self {
            ChannelLayout::RoundRobin { .. } => "round-robin",
            ChannelLayout::Interleaved { .. } => "interleaved",
        }
    }

    pub fn channels(&self) -> u16 {
        match *self {
            ChannelLayout::RoundRobin { channels } => channels,
            ChannelLayout::Interleaved { channels, .. } => channels,
        }
    }

    pub fn interleaved(&self) -> bool {
        matches!(self, ChannelLayout::Interleaved { .. })
    }

    /// The channel field of buffer `card_seq`'s slot header.
    pub fn slot_channel(&self, card_seq: u64) -> u16 {
        match *self {
            ChannelLayout::RoundRobin { channels } => (card_seq % u64::from(channels)) as u16,
            ChannelLayout::Interleaved { .. } => 0,
        }
    }

    /// Bytes of one frame (interleaved), or None (round-robin: no frames).
    pub fn frame_bytes(&self) -> Option<u64> {
        match *self {
            ChannelLayout::RoundRobin { .. } => None,
            ChannelLayout::Interleaved {
                channels,
                sample_bytes,
            } => Some(u64::from(channels) * u64::from(sample_bytes)),
        }
    }

    /// Payload bytes a full buffer of `payload_bytes` carries: the whole
    /// payload (round-robin) or its whole frames (interleaved).
    pub fn full_used_bytes(&self, payload_bytes: u32) -> u32 {
        match self.frame_bytes() {
            None => payload_bytes,
            Some(frame) => (u64::from(payload_bytes) / frame * frame) as u32,
        }
    }

    /// Why `used_bytes` is not a valid `payload_bytes_used` for this
    /// layout (interleaved: a non-zero multiple of the frame size), or None.
    pub fn used_bytes_problem(&self, used_bytes: u32) -> Option<String> {
        let frame = self.frame_bytes()?;
        let used = u64::from(used_bytes);
        (used == 0 || used % frame != 0).then(|| {
            format!(
                "payload_bytes_used {used_bytes} is not a non-zero multiple of the interleaved frame ({} channels x {} bytes = {frame} bytes)",
                self.channels(),
                frame / u64::from(self.channels())
            )
        })
    }

    /// Samples of ONE channel in a buffer with `used_bytes` payload.
    pub fn samples_per_channel(&self, used_bytes: u32, sample_bytes: u32) -> u64 {
        assert!(sample_bytes > 0);
        match self.frame_bytes() {
            None => u64::from(used_bytes) / u64::from(sample_bytes),
            Some(frame) => u64::from(used_bytes) / frame,
        }
    }

    /// Whether `channel`'s samples are in buffer `card_seq`.
    pub fn buffer_has_channel(&self, card_seq: u64, channel: u16) -> bool {
        match *self {
            ChannelLayout::RoundRobin { channels } => {
                card_seq % u64::from(channels) == channel as u64
            }
            ChannelLayout::Interleaved { channels, .. } => channel < channels,
        }
    }

    /// Card buffers between two consecutive buffers of one channel: N
    /// (round-robin) or 1 (interleaved: every buffer has every channel).
    pub fn card_seq_stride(&self) -> u64 {
        match *self {
            ChannelLayout::RoundRobin { channels } => u64::from(channels),
            ChannelLayout::Interleaved { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RR: ChannelLayout = ChannelLayout::RoundRobin { channels: 4 };
    const IL: ChannelLayout = ChannelLayout::Interleaved {
        channels: 3,
        sample_bytes: 4,
    };

    #[test]
    fn round_robin_rules() {
        assert_eq!(RR.code(), 1);
        assert_eq!(RR.name(), "round_robin");
        assert_eq!(RR.describe(), "round-robin");
        assert_eq!(RR.channels(), 4);
        assert!(!RR.interleaved());
        assert_eq!(RR.slot_channel(7), 3);
        assert_eq!(RR.slot_channel(8), 0);
        assert_eq!(RR.frame_bytes(), None);
        assert_eq!(RR.full_used_bytes(4096), 4096);
        assert_eq!(RR.used_bytes_problem(12), None);
        assert_eq!(RR.samples_per_channel(4096, 4), 1024);
        assert!(RR.buffer_has_channel(6, 2));
        assert!(!RR.buffer_has_channel(6, 1));
        assert_eq!(RR.card_seq_stride(), 4);
    }

    #[test]
    fn interleaved_rules() {
        assert_eq!(IL.code(), 2);
        assert_eq!(IL.name(), "interleaved");
        assert_eq!(IL.describe(), "interleaved");
        assert_eq!(IL.channels(), 3);
        assert!(IL.interleaved());
        assert_eq!(IL.slot_channel(7), 0);
        assert_eq!(IL.frame_bytes(), Some(12));
        // 4096 / 12 = 341 whole frames = 4092 bytes.
        assert_eq!(IL.full_used_bytes(4096), 4092);
        assert_eq!(IL.used_bytes_problem(4092), None);
        assert_eq!(IL.used_bytes_problem(12), None);
        assert!(IL.used_bytes_problem(4096).unwrap().contains("12 bytes"));
        assert!(IL.used_bytes_problem(0).is_some());
        assert!(IL.used_bytes_problem(6).is_some());
        assert_eq!(IL.samples_per_channel(4092, 4), 341);
        assert!(IL.buffer_has_channel(6, 2));
        assert!(IL.buffer_has_channel(7, 0));
        assert!(!IL.buffer_has_channel(7, 3));
        assert_eq!(IL.card_seq_stride(), 1);
    }
}
