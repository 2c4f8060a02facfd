/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmarec - internal definitions shared by the driver's source files.
 */
#ifndef _DMAREC_DRV_H
#define _DMAREC_DRV_H

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "include/uapi/dmarec.h"

#define DMAREC_MAX_BUFFERS	1024u
#define DMAREC_MIN_PAYLOAD	4096u
#define DMAREC_MAX_PAYLOAD	(16u << 20)
#define DMAREC_MAX_CHANNELS	64u
#define DMAREC_MAX_CARDS	32u

/* Largest compound chunk tried for MMAP payload memory (2 MiB on x86). */
#define DMAREC_MAX_CHUNK_ORDER	9

#define DMAREC_GOLDEN		0x9E3779B97F4A7C15ULL
#define DMAREC_SEED_SALT	0xD1B54A32D192ED03ULL

/*
 * Buffer ownership. USER: userspace owns it (CPU domain). QUEUED: given to
 * the card, waiting. ACTIVE: the card is filling it. DONE: filled, waiting
 * for DQBUF. Only QUEUED/ACTIVE/DONE buffers are in the device domain.
 */
enum dmarec_buf_state {
	DMAREC_BUF_USER,
	DMAREC_BUF_QUEUED,
	DMAREC_BUF_ACTIVE,
	DMAREC_BUF_DONE,
};

struct dmarec_buf {
	struct list_head list;		/* queued or done list, under qlock */
	enum dmarec_buf_state state;	/* under qlock */
	u32 index;

	/*
	 * MMAP: pages[] holds the header pages followed by the payload
	 * pages, all driver-owned. USERPTR: pages[] holds the pinned payload
	 * pages only. payload points at the first payload page in pages[].
	 */
	struct page **pages;
	unsigned int nr_pages;
	struct page **payload;
	unsigned int nr_payload;

	struct sg_table sgt;
	bool sgt_allocated;
	bool dma_mapped;
	bool attached;			/* payload memory present */
	struct mm_struct *pin_mm;	/* USERPTR: mm charged for the pins */

	/* Written by the card under qlock, read by DQBUF. */
	u64 seq;
	u64 timestamp_ns;
	u64 gap;
	u32 channel;
};

struct dmarec_card;

struct dmarec_ring {
	struct dmarec_card *card;
	u32 memory;
	u32 count;
	u32 payload_bytes;
	u64 stride;
	unsigned int pages_per_buf;	/* MMAP: stride in pages */
	struct dmarec_buf bufs[];
};

struct dmarec_counters {
	u64 filled;
	u64 overruns;
	u64 queued;
	u64 dequeued;
};

struct dmarec_card {
	unsigned int id;
	char name[24];
	struct platform_device *pdev;
	struct device *dma_dev;
	struct miscdevice misc;

	/*
	 * Lock order: lock -> ring_lock; lock -> mmap_lock (pinning user
	 * memory); mmap_lock -> ring_lock (mmap). qlock is innermost.
	 */
	struct mutex lock;		/* ioctls, owner, streaming, sim config */
	struct mutex ring_lock;		/* ring/owner pointers vs. mmap */
	atomic_t mmap_count;		/* live VMAs mapping the ring */

	struct file *owner;		/* file that set up the ring */
	struct dmarec_ring *ring;
	u32 channels;
	u64 rate;

	/* Stream state shared with the card thread. */
	spinlock_t qlock;
	bool streaming;
	struct list_head queued;
	struct list_head done;
	u64 card_seq;
	u64 pending_gap;
	struct dmarec_counters stats;
	wait_queue_head_t done_wq;	/* DQBUF and poll */
	wait_queue_head_t card_wq;	/* card thread waiting for a buffer */
	struct task_struct *thread;
	u32 sim_channels;		/* snapshot at STREAMON */
	u64 sim_period_ns;		/* 0 = as fast as buffers are queued */
};

/* dmarec-buf.c */
struct dmarec_ring *dmarec_ring_alloc(struct dmarec_card *card, u32 memory,
				      u32 count, u32 payload_bytes);
void dmarec_ring_free(struct dmarec_ring *ring);
int dmarec_buf_attach_userptr(struct dmarec_ring *ring, struct dmarec_buf *buf,
			      unsigned long addr);
void dmarec_buf_sync_for_device(struct dmarec_ring *ring,
				struct dmarec_buf *buf);
void dmarec_buf_sync_for_cpu(struct dmarec_ring *ring, struct dmarec_buf *buf);
int dmarec_mmap(struct file *file, struct vm_area_struct *vma);

/* dmarec-sim.c */
int dmarec_sim_start(struct dmarec_card *card);
void dmarec_sim_stop(struct dmarec_card *card);
u64 dmarec_pattern_seed(u64 card_seq, u32 channel);

#endif /* _DMAREC_DRV_H */
