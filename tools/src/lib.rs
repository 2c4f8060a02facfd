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
pub mod deinterleave;
pub mod export;
pub mod inspect;
pub mod progress;
pub mod reindex;
pub mod replay;
pub mod scan;
pub mod select;
pub mod sigmf;
pub mod stripe;
pub mod target;
pub mod uring;
pub mod verify;

#[cfg(test)]
mod synth;
#[cfg(test)]
mod tests;
