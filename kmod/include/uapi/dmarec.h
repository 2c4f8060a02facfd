/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * dmarec: DMA buffer ring of a capture card (simulated card included).
 *
 * Userspace contract, version DMAREC_UAPI_VERSION. All structures use
 * fixed-size fields only and have no implicit padding, so they are the same
 * for 32-bit and 64-bit userspace. Nonzero reserved fields or flags are
 * rejected with EINVAL.
 */
#ifndef _UAPI_LINUX_DMAREC_H
#define _UAPI_LINUX_DMAREC_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * 2: ioctl magic 0xD7 (was 'R', whose 0x00-0x1F block belongs to
 * linux/random.h: STREAMOFF was RNDCLEARPOOL's number); DQBUF is _IOR.
 */
#define DMAREC_UAPI_VERSION 2

/*
 * Each buffer is a header area of DMAREC_HEADER_BYTES (userspace writes its
 * slot header there; the card never DMAs into it) followed by the payload.
 */
#define DMAREC_HEADER_BYTES 4096

#define DMAREC_MEMORY_MMAP    1
#define DMAREC_MEMORY_USERPTR 2

#define DMAREC_CAP_MMAP    (1u << 0)
#define DMAREC_CAP_USERPTR (1u << 1)
#define DMAREC_CAP_SIM     (1u << 2)

#define DMAREC_BUF_FLAG_OVERRUN (1u << 0) /* gap_count > 0 */

struct dmarec_caps {
	__u32 version;			/* DMAREC_UAPI_VERSION */
	__u32 caps;			/* DMAREC_CAP_* */
	__u32 max_buffers;		/* 1024 */
	__u32 min_payload_bytes;	/* 4096 */
	__u32 max_payload_bytes;	/* 16 MiB */
	__u32 channels;			/* current sim channel count */
	__u64 rate_bytes_per_s;		/* current sim rate, 0 = unlimited */
	__u64 reserved[4];		/* zero */
};

/*
 * buffer_count 0 tears the ring down: only when not streaming (EBUSY
 * otherwise) and while no mmap of the ring exists (EBUSY otherwise).
 */
struct dmarec_setup {
	__u32 memory;			/* DMAREC_MEMORY_* */
	__u32 buffer_count;		/* 1..max_buffers */
	__u32 payload_bytes;		/* power of two, min..max */
	__u32 flags;			/* 0 */
	__u64 buffer_stride_bytes;	/* out: DMAREC_HEADER_BYTES + payload_bytes */
	__u64 mmap_size_bytes;		/* out: MMAP: buffer_count * stride, 0 for USERPTR */
	__u64 reserved[4];
};

/* USERPTR mode: once per buffer, before STREAMON. */
struct dmarec_userptr {
	__u32 index;
	__u32 flags;			/* 0 */
	__u64 payload_addr;		/* page aligned user address of the payload */
	__u64 payload_bytes;		/* == setup payload_bytes */
	__u64 reserved[2];
};

struct dmarec_buffer {
	__u32 index;
	__u32 flags;			/* DMAREC_BUF_FLAG_* */
	__u32 bytes_used;		/* payload bytes filled */
	__u32 channel;
	__u64 card_seq;			/* starts at 0 on STREAMON, counts lost buffers */
	__u64 card_timestamp_ns;	/* CLOCK_MONOTONIC when the card finished */
	__u64 gap_count;		/* buffers lost just before this one */
	__u64 reserved[2];
};

struct dmarec_stats {
	__u64 filled;
	__u64 overruns;
	__u64 queued;
	__u64 dequeued;
	__u64 reserved[4];
};

/* Only when not streaming. */
struct dmarec_sim_config {
	__u32 channels;			/* 1..64 */
	__u32 flags;			/* 0 */
	__u64 rate_bytes_per_s;		/* 0 = as fast as buffers are queued */
	__u64 reserved[2];
};

#define DMAREC_IOC_MAGIC		0xD7

#define DMAREC_IOC_QUERYCAP		_IOR(DMAREC_IOC_MAGIC, 0x00, struct dmarec_caps)
#define DMAREC_IOC_SETUP		_IOWR(DMAREC_IOC_MAGIC, 0x01, struct dmarec_setup)
#define DMAREC_IOC_ATTACH_USERPTR	_IOW(DMAREC_IOC_MAGIC, 0x02, struct dmarec_userptr)
#define DMAREC_IOC_QBUF			_IOW(DMAREC_IOC_MAGIC, 0x03, struct dmarec_buffer)
#define DMAREC_IOC_DQBUF		_IOR(DMAREC_IOC_MAGIC, 0x04, struct dmarec_buffer)
#define DMAREC_IOC_STREAMON		_IO(DMAREC_IOC_MAGIC, 0x05)
#define DMAREC_IOC_STREAMOFF		_IO(DMAREC_IOC_MAGIC, 0x06)
#define DMAREC_IOC_STATS		_IOR(DMAREC_IOC_MAGIC, 0x07, struct dmarec_stats)
#define DMAREC_IOC_SIM_CONFIG		_IOW(DMAREC_IOC_MAGIC, 0x08, struct dmarec_sim_config)

#endif /* _UAPI_LINUX_DMAREC_H */
