//! The payload size of a recording's slots, from the command line to the
//! layout: one type, one rule.

use std::fmt;

/// Smallest payload per slot (one page).
pub const MIN_PAYLOAD_BYTES: u32 = 4096;
/// Largest payload per slot the format allows. The kernel driver (kmod/)
/// takes less: see [`PayloadSize::DRIVER_MAX_BYTES`].
pub const MAX_PAYLOAD_BYTES: u32 = 64 << 20;

/// Payload bytes per slot: a power of two from [`MIN_PAYLOAD_BYTES`] to
/// [`MAX_PAYLOAD_BYTES`]. The only way to make one is [`PayloadSize::new`],
/// which is the one place that rule is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PayloadSize(u32);

/// Why a payload size is refused: the rule it breaks, with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload size {bytes} bytes: must be a power of two from {MIN_PAYLOAD_BYTES} to {MAX_PAYLOAD_BYTES}")]
pub struct PayloadSizeError {
    pub bytes: u64,
}

impl PayloadSize {
    /// The kernel driver's largest payload (DMAREC_MAX_PAYLOAD in
    /// kmod/dmarec_drv.h; the driver also reports it in its capabilities).
    pub const DRIVER_MAX_BYTES: u32 = 16 << 20;
    /// The recorder's default (512 KiB).
    pub const DEFAULT: PayloadSize = PayloadSize(512 << 10);

    pub fn new(bytes: u64) -> Result<PayloadSize, PayloadSizeError> {
        let in_range =
            (u64::from(MIN_PAYLOAD_BYTES)..=u64::from(MAX_PAYLOAD_BYTES)).contains(&bytes);
        if !in_range || !bytes.is_power_of_two() {
            return Err(PayloadSizeError { bytes });
        }
        Ok(PayloadSize(bytes as u32))
    }

    /// The size as the superblock stores it.
    pub const fn bytes(self) -> u32 {
        self.0
    }

    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }

    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }

    /// One slot: the header page and this payload.
    pub const fn slot_bytes(self) -> u64 {
        crate::SLOT_HEADER_BYTES as u64 + self.0 as u64
    }
}

impl fmt::Display for PayloadSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_in_range_only() {
        assert_eq!(PayloadSize::new(4096).unwrap().bytes(), 4096);
        assert_eq!(
            PayloadSize::new(64 << 20).unwrap().slot_bytes(),
            (64 << 20) + 4096
        );
        for bytes in [0, 2048, 4095, 6144, (64 << 20) + 4096, 128 << 20, 1 << 40] {
            assert_eq!(
                PayloadSize::new(bytes),
                Err(PayloadSizeError { bytes }),
                "{bytes}"
            );
        }
        assert!(PayloadSize::new(u64::from(PayloadSize::DRIVER_MAX_BYTES)).is_ok());
        assert!(PayloadSize::DEFAULT == PayloadSize::new(512 << 10).unwrap());
    }
}
