//! Rust mirror of kmod/include/uapi/dmarec.h (uapi version 2), with
//! compile-time size and offset checks: a field added on one side only
//! fails the build.

use std::mem::{offset_of, size_of};

pub const DMAREC_UAPI_VERSION: u32 = 2;
/// The ioctl type byte (0xD7: free in Documentation/userspace-api/ioctl/ioctl-number.rst).
pub const DMAREC_IOC_MAGIC: u8 = 0xD7;
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

nix::ioctl_read!(querycap, DMAREC_IOC_MAGIC, 0x00, DmarecCaps);
nix::ioctl_readwrite!(setup, DMAREC_IOC_MAGIC, 0x01, DmarecSetup);
nix::ioctl_write_ptr!(attach_userptr, DMAREC_IOC_MAGIC, 0x02, DmarecUserptr);
nix::ioctl_write_ptr!(qbuf, DMAREC_IOC_MAGIC, 0x03, DmarecBuffer);
nix::ioctl_read!(dqbuf, DMAREC_IOC_MAGIC, 0x04, DmarecBuffer);
nix::ioctl_none!(streamon, DMAREC_IOC_MAGIC, 0x05);
nix::ioctl_none!(streamoff, DMAREC_IOC_MAGIC, 0x06);
nix::ioctl_read!(stats, DMAREC_IOC_MAGIC, 0x07, DmarecStats);
nix::ioctl_write_ptr!(sim_config, DMAREC_IOC_MAGIC, 0x08, DmarecSimConfig);

#[cfg(test)]
mod tests {
    //! The C header is the contract: compile it and compare every size and
    //! ioctl number with this mirror.
    use super::*;
    use std::process::Command;

    #[test]
    fn matches_the_c_header() {
        let dir = std::env::temp_dir().join(format!("dmarec-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("uapi.c");
        std::fs::write(
            &src,
            r#"#include <stdio.h>
#include "dmarec.h"
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu\n", sizeof(struct dmarec_caps), sizeof(struct dmarec_setup),
           sizeof(struct dmarec_userptr), sizeof(struct dmarec_buffer), sizeof(struct dmarec_stats),
           sizeof(struct dmarec_sim_config));
    printf("%lu %lu %lu %lu %lu %lu %lu %lu %lu\n", (unsigned long)DMAREC_IOC_QUERYCAP,
           (unsigned long)DMAREC_IOC_SETUP, (unsigned long)DMAREC_IOC_ATTACH_USERPTR,
           (unsigned long)DMAREC_IOC_QBUF, (unsigned long)DMAREC_IOC_DQBUF,
           (unsigned long)DMAREC_IOC_STREAMON, (unsigned long)DMAREC_IOC_STREAMOFF,
           (unsigned long)DMAREC_IOC_STATS, (unsigned long)DMAREC_IOC_SIM_CONFIG);
    printf("%d %d %u %u\n", DMAREC_UAPI_VERSION, DMAREC_HEADER_BYTES, DMAREC_CAP_SIM, DMAREC_BUF_FLAG_OVERRUN);
    return 0;
}
"#,
        )
        .unwrap();
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../kmod/include/uapi");
        let exe = dir.join("uapi");
        let cc = Command::new("gcc")
            .arg("-I")
            .arg(include)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .status()
            .expect("gcc");
        assert!(cc.success(), "compiling the uapi header failed");
        let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<Vec<u64>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
            .collect();
        let sizes = [
            size_of::<DmarecCaps>(),
            size_of::<DmarecSetup>(),
            size_of::<DmarecUserptr>(),
            size_of::<DmarecBuffer>(),
            size_of::<DmarecStats>(),
            size_of::<DmarecSimConfig>(),
        ];
        assert_eq!(
            lines[0],
            sizes.map(|s| s as u64).to_vec(),
            "struct sizes differ from the C header"
        );
        let codes = [
            nix::request_code_read!(DMAREC_IOC_MAGIC, 0x00, size_of::<DmarecCaps>()),
            nix::request_code_readwrite!(DMAREC_IOC_MAGIC, 0x01, size_of::<DmarecSetup>()),
            nix::request_code_write!(DMAREC_IOC_MAGIC, 0x02, size_of::<DmarecUserptr>()),
            nix::request_code_write!(DMAREC_IOC_MAGIC, 0x03, size_of::<DmarecBuffer>()),
            nix::request_code_read!(DMAREC_IOC_MAGIC, 0x04, size_of::<DmarecBuffer>()),
            nix::request_code_none!(DMAREC_IOC_MAGIC, 0x05),
            nix::request_code_none!(DMAREC_IOC_MAGIC, 0x06),
            nix::request_code_read!(DMAREC_IOC_MAGIC, 0x07, size_of::<DmarecStats>()),
            nix::request_code_write!(DMAREC_IOC_MAGIC, 0x08, size_of::<DmarecSimConfig>()),
        ];
        assert_eq!(
            lines[1],
            codes.map(|c| c).to_vec(),
            "ioctl numbers differ from the C header"
        );
        assert_eq!(
            lines[2],
            vec![
                DMAREC_UAPI_VERSION as u64,
                DMAREC_HEADER_BYTES as u64,
                DMAREC_CAP_SIM as u64,
                DMAREC_BUF_FLAG_OVERRUN as u64
            ]
        );
    }
}
