/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmarec - internal definitions shared by the driver's source files.
 */
#ifndef _DMAREC_DRV_H
#define _DMAREC_DRV_H

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/kref.h>
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

/*
 * USERPTR pages pinned by ATTACH before it takes the card lock, owned here
 * until installed into a buffer or unpinned (pages == NULL: empty).
 */
struct dmarec_pin {
	struct page **pages;
	unsigned int nr;
	struct mm_struct *mm;		/* charged for the pins, grabbed */
};

struct dmarec_card;

struct dmarec_ring {
	struct dmarec_card *card;
	u32 memory;
	u32 count;
	u32 payload_bytes;
	u64 stride;
	unsigned int pages_per_buf;	/* MMAP: stride in pages */
	struct user_struct *user;	/* MMAP: charged for locked memory */
	unsigned long charged_pages;
	struct dmarec_buf bufs[];
};

struct dmarec_counters {
	u64 filled;
	u64 overruns;
	u64 queued;
	u64 dequeued;
};

/*
 * A card backend: the thing that writes queued buffers. The core owns the
 * buffers, the lists and the uapi; a backend takes the oldest queued buffer
 * with dmarec_card_take(), fills its payload through buf->sgt's DMA
 * addresses and hands it on with dmarec_card_complete() (or returns it
 * unfilled with dmarec_card_requeue() when stopped half way).
 *
 * All ops are called with card->lock held and never after
 * dmarec_card_unregister() has returned.
 *  start: streaming has just been set; begin taking buffers.
 *  stop:  return only when the device no longer touches any buffer and no
 *         buffer is ACTIVE (each is back on the queued or done list).
 *  queued: a buffer was added to the queued list (optional).
 */
struct dmarec_card_ops {
	const char *name;
	u32 caps;			/* DMAREC_CAP_* beyond MMAP|USERPTR */
	int (*start)(struct dmarec_card *card);
	void (*stop)(struct dmarec_card *card);
	void (*queued)(struct dmarec_card *card);
};

struct dmarec_card {
	unsigned int id;
	char name[24];
	struct kref ref;		/* the backend's + one per open file */
	const struct dmarec_card_ops *ops;
	void *priv;			/* backend data */
	struct device *dma_dev;		/* the device that DMAs (referenced) */
	struct miscdevice misc;
	bool registered;		/* misc device registered */
	bool dead;			/* under lock and ring_lock: device gone */

	/*
	 * Lock order: lock -> ring_lock; mmap_lock -> ring_lock (mmap); never
	 * lock -> mmap_lock (ATTACH pins without lock); a backend's own engine lock
	 * (edu: eng_lock, taken by its IRQ thread) -> qlock. qlock is
	 * innermost. No user memory is touched under lock: ATTACH pins before
	 * taking it, DQBUF and SETUP copy outside it.
	 */
	struct mutex lock;		/* ioctls, owner, streaming, sim config */
	struct mutex ring_lock;		/* ring/owner pointers vs. mmap */
	atomic_t mmap_count;		/* live VMAs mapping the ring */

	struct file *owner;		/* file that set up the ring */
	struct dmarec_ring *ring;
	u32 channels;			/* current settings (SIM_CONFIG) */
	u64 rate;
	u32 default_channels;		/* module parameters */
	u64 default_rate;
	struct file *config_file;	/* made the settings; compared only */

	/* Stream state shared with the card thread. */
	spinlock_t qlock;
	bool streaming;
	struct list_head queued;
	struct list_head done;
	u64 card_seq;
	u64 pending_gap;
	struct dmarec_counters stats;
	wait_queue_head_t done_wq;	/* DQBUF and poll */
	u32 stream_channels;		/* snapshot at STREAMON */
	u64 gen;			/* under lock: +1 per SETUP and STREAMON
					 * (ATTACH re-checks it after pinning) */
};

/* dmarec-buf.c */
struct dmarec_ring *dmarec_ring_alloc(struct dmarec_card *card, u32 memory,
				      u32 count, u32 payload_bytes);
void dmarec_ring_free(struct dmarec_ring *ring);
int dmarec_pin_userptr(struct dmarec_pin *pin, unsigned long addr,
		       unsigned int nr);
void dmarec_unpin_userptr(struct dmarec_pin *pin);
int dmarec_buf_install_userptr(struct dmarec_ring *ring, struct dmarec_buf *buf,
			       struct dmarec_pin *pin);
void dmarec_buf_sync_for_device(struct dmarec_ring *ring,
				struct dmarec_buf *buf);
void dmarec_buf_sync_for_cpu(struct dmarec_ring *ring, struct dmarec_buf *buf);
int dmarec_mmap(struct file *file, struct vm_area_struct *vma);

void dmarec_ring_unmap_dma(struct dmarec_ring *ring);
int dmarec_zero_copy_check(struct dmarec_card *card);

/* dmarec-core.c: card lifetime and the backend side of the buffer lists */
struct dmarec_card *dmarec_card_alloc(const struct dmarec_card_ops *ops,
				      struct device *dma_dev, void *priv);
int dmarec_card_register(struct dmarec_card *card);
void dmarec_card_unregister(struct dmarec_card *card);
void dmarec_card_put(struct dmarec_card *card);
struct dmarec_buf *dmarec_card_take(struct dmarec_card *card);
void dmarec_card_complete(struct dmarec_card *card, struct dmarec_buf *buf);
void dmarec_card_complete_at(struct dmarec_card *card, struct dmarec_buf *buf,
			     u64 timestamp_ns);
void dmarec_card_requeue(struct dmarec_card *card, struct dmarec_buf *buf);
void dmarec_card_lost(struct dmarec_card *card, u64 n);
bool dmarec_card_has_queued(struct dmarec_card *card);

/* dmarec-sim.c: the simulated card and the shared payload pattern */
u64 dmarec_pattern_seed(u64 card_seq, u32 channel);
void dmarec_pattern_fill(__le64 *dst, u64 seed, u64 first_word,
			 unsigned int words);
int dmarec_sim_init(unsigned int cards, unsigned int channels, u64 rate);
void dmarec_sim_exit(void);

/* dmarec-edu.c: QEMU's edu PCI device as a card */
int dmarec_edu_init(void);
void dmarec_edu_exit(void);

#endif /* _DMAREC_DRV_H */
