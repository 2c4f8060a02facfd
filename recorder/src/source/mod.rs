//! Where filled buffers come from: the simulated card (`sim`) or the kernel
//! driver (`kmod`). A source fills buffers of the recorder's [`SlotMemory`](crate::memory::SlotMemory)
//! in place (no copy) and hands them over by index; the recorder gives each
//! one back only after its write has completed.

mod handoff;
pub mod kmod;
pub mod sim;
pub mod uapi;

use anyhow::Result;

/// A buffer the card has filled, now owned by the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filled {
    pub buffer: usize,
    pub card_seq: u64,
    pub card_timestamp_ns: u64,
    pub channel: u16,
    pub gap_count: u64,
    pub bytes_used: u32,
}

/// The card's channels, as the superblock's channel table describes them
/// (every channel alike; channel `c` is named `ch{c}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelDescription {
    pub count: u16,
    /// How the channels share the buffers: the superblock's
    /// `channel_layout` code (formats::ChannelLayout).
    pub layout: u16,
    /// SigMF datatype of every channel's samples, e.g. `ci16_le`.
    pub datatype: &'static str,
    /// Samples per second per channel; 0.0 when unknown.
    pub sample_rate_hz: f64,
}

/// What the card reports at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardStats {
    pub filled: u64,
    /// Buffers the card lost because none was queued.
    pub overruns: u64,
    /// CPU time this process spent being the card (the simulated card's
    /// thread filling payloads; 0 for a real card, whose DMA engine is free).
    pub card_cpu_ns: u64,
}

pub trait Source {
    /// Starts the card. Every buffer of the slot memory is queued to it.
    fn start(&mut self) -> Result<()>;
    /// A filled buffer if one is ready now, without blocking.
    fn try_take(&mut self) -> Result<Option<Filled>>;
    /// Waits up to `timeout_ms` for a filled buffer.
    fn wait_take(&mut self, timeout_ms: u32) -> Result<Option<Filled>>;
    /// Gives `buffer` back to the card to fill again.
    fn give(&mut self, buffer: usize) -> Result<()>;
    /// Stops the card; buffers it still holds are abandoned (not recorded).
    fn stop(&mut self) -> Result<CardStats>;
    /// The card's channels.
    fn channels(&self) -> ChannelDescription;
    /// The card's clock anchored to CLOCK_REALTIME, read once before
    /// start() (the superblock records it).
    fn time_anchor(&self) -> formats::time::TimeAnchor;
    fn describe(&self) -> String;
}
