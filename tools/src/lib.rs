//! dmaplay's library: reading dmarec recordings back at device speed.
//!
//! A recording is a stripe set of member devices (or files), each with a
//! superblock, holding self-describing slots, plus an index file
//! (docs/FORMAT.md, the `formats` crate). This crate opens the members
//! read-only with O_DIRECT ([`stripe`]), finds the slots through the index
//! or, when the index is missing or damaged, by scanning slot headers
//! ([`catalog`], [`scan`]), reads them with io_uring ([`uring`]), and
//! implements dmaplay's commands: [`inspect`], [`verify`], [`export`]
//! (raw and SigMF), [`replay`] and [`reindex`]. It never writes to a
//! recording's members.

pub mod aligned;
pub mod catalog;
pub mod checkpool;
pub mod deinterleave;
pub mod drift;
pub mod export;
pub mod inspect;
pub mod outwrite;
pub mod pacing;
pub mod progress;
pub mod reindex;
pub mod replay;
pub mod scan;
pub mod scans;
pub mod select;
pub mod sigmf;
pub mod stripe;
pub mod target;
pub mod timeline;
pub mod timespec;
pub mod uring;
pub mod verify;

/// `schema_version` of every dmaplay `--json` output (docs/JSON.md): raised
/// when a field changes meaning or is removed.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// A command line that asks for something impossible for this recording
/// (a channel it does not have, a terminal as replay's output, an empty
/// selection): dmaplay exits with status 2, like clap's own usage errors.
pub use select::UsageError;

/// Refuses `--channel c` for a recording of `channels` channels (usage error).
pub fn check_channel(stripe: &stripe::StripeSet, channel: Option<u16>) -> anyhow::Result<()> {
    let n = stripe.superblock.channels.len();
    match channel {
        Some(c) if c as usize >= n => Err(UsageError(format!(
            "--channel {c}: recording {} has channels 0..={} only",
            stripe.recording_uuid(),
            n - 1
        ))
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_time;
#[cfg(test)]
mod timeline_tests;
