//! Rust mirror of kmod/include/uapi/dmarec.h (uapi version 1), with
//! compile-time size and offset checks: a field added on one side only
//! fails the build.

use std::mem::{offset_of, size_of};

pub const DMAREC_UAPI_VERSION: u32 = 1;
pub const DMAREC_HEADER_BYTES: usize = 4096;
pub const DMAREC_MEMORY_MMAP: u32 = 1;
pub const DMAREC_MEMORY_USERPTR: u32 = 2;
pub const DMAREC_CAP_MMAP: u32 = 1 << 0;
pub const DMAREC_CAP_USERPTR: u32 = 1 << 1;
pub const DMAREC_CAP_SIM: u32 = 1 << 2;
pub const DMAREC_BUF_FLAG_OVERRUN: u32 = 1 << 0;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecCaps {
    pub version: u32,
    pub caps: u32,
    pub max_buffers: u32,
    pub min_payload_bytes: u32,
    pub max_payload_bytes: u32,
    pub channels: u32,
    pub rate_bytes_per_s: u64,
    pub reserved: [u64; 4],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecSetup {
    pub memory: u32,
    pub buffer_count: u32,
    pub payload_bytes: u32,
    pub flags: u32,
    pub buffer_stride_bytes: u64,
    pub mmap_size_bytes: u64,
    pub reserved: [u64; 4],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecUserptr {
    pub index: u32,
    pub flags: u32,
    pub payload_addr: u64,
    pub payload_bytes: u64,
    pub reserved: [u64; 2],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecBuffer {
    pub index: u32,
    pub flags: u32,
    pub bytes_used: u32,
    pub channel: u32,
    pub card_seq: u64,
    pub card_timestamp_ns: u64,
    pub gap_count: u64,
    pub reserved: [u64; 2],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecStats {
    pub filled: u64,
    pub overruns: u64,
    pub queued: u64,
    pub dequeued: u64,
    pub reserved: [u64; 4],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmarecSimConfig {
    pub channels: u32,
    pub flags: u32,
    pub rate_bytes_per_s: u64,
    pub reserved: [u64; 2],
}

const _: () = {
    assert!(size_of::<DmarecCaps>() == 64);
    assert!(offset_of!(DmarecCaps, rate_bytes_per_s) == 24);
    assert!(size_of::<DmarecSetup>() == 64);
    assert!(offset_of!(DmarecSetup, buffer_stride_bytes) == 16);
    assert!(offset_of!(DmarecSetup, mmap_size_bytes) == 24);
    assert!(size_of::<DmarecUserptr>() == 40);
    assert!(offset_of!(DmarecUserptr, payload_addr) == 8);
    assert!(size_of::<DmarecBuffer>() == 56);
    assert!(offset_of!(DmarecBuffer, card_seq) == 16);
    assert!(offset_of!(DmarecBuffer, gap_count) == 32);
    assert!(size_of::<DmarecStats>() == 64);
    assert!(size_of::<DmarecSimConfig>() == 32);
    assert!(offset_of!(DmarecSimConfig, rate_bytes_per_s) == 8);
};

nix::ioctl_read!(querycap, b'R', 0x00, DmarecCaps);
nix::ioctl_readwrite!(setup, b'R', 0x01, DmarecSetup);
nix::ioctl_write_ptr!(attach_userptr, b'R', 0x02, DmarecUserptr);
nix::ioctl_write_ptr!(qbuf, b'R', 0x03, DmarecBuffer);
nix::ioctl_readwrite!(dqbuf, b'R', 0x04, DmarecBuffer);
nix::ioctl_none!(streamon, b'R', 0x05);
nix::ioctl_none!(streamoff, b'R', 0x06);
nix::ioctl_read!(stats, b'R', 0x07, DmarecStats);
nix::ioctl_write_ptr!(sim_config, b'R', 0x08, DmarecSimConfig);
