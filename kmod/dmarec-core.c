// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec - DMA buffer ring driver for capture cards.
 *
 * Each card is a backend (dmarec-sim.c: a simulated card on a platform
 * device; dmarec-edu.c: QEMU's edu PCI device) and a misc character device
 * /dev/dmarecN. The first file that sets up a ring owns the card until it
 * tears the ring down or is released; other files may only QUERYCAP and read
 * STATS. A card lives until its backend unregisters it and the last open
 * file is released (kref); after unregistration (PCI unbind) every ioctl
 * gives ENODEV and release frees what is left.
 */
#include <linux/build_bug.h>
#include <linux/compat.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/nospec.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "dmarec_drv.h"

static unsigned int cards = 1;
module_param(cards, uint, 0444);
MODULE_PARM_DESC(cards, "number of simulated cards, /dev/dmarec0..N-1 (0..32); PCI cards follow");

static unsigned int channels = 1;
module_param(channels, uint, 0444);
MODULE_PARM_DESC(channels, "default simulated channel count (1..64)");

static unsigned long long rate;
module_param(rate, ullong, 0444);
MODULE_PARM_DESC(rate, "default simulated rate in bytes/s (0 = unlimited)");

static DEFINE_IDA(dmarec_ida);

/* The uapi structures must have the same layout on every ABI. */
static_assert(sizeof(struct dmarec_caps) == 64);
static_assert(sizeof(struct dmarec_setup) == 64);
static_assert(sizeof(struct dmarec_userptr) == 40);
static_assert(sizeof(struct dmarec_buffer) == 56);
static_assert(sizeof(struct dmarec_stats) == 64);
static_assert(sizeof(struct dmarec_sim_config) == 32);

static struct dmarec_card *dmarec_file_card(struct file *file)
{
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct dmarec_card, misc);
}

static bool dmarec_is_zero(const void *p, size_t len)
{
	return !memchr_inv(p, 0, len);
}

/* card->lock held: the file must own a set-up ring. */
static int dmarec_check_owner(struct dmarec_card *card, struct file *file)
{
	if (card->dead)
		return -ENODEV;
	if (!card->ring)
		return -EINVAL;
	if (card->owner != file)
		return -EBUSY;
	return 0;
}

/*
 * Stop the card and give every queued or filled buffer back to userspace.
 * card->lock held.
 */
static void dmarec_stream_stop(struct dmarec_card *card)
{
	struct dmarec_buf *buf, *tmp;
	LIST_HEAD(returned);

	if (!card->dead)
		card->ops->stop(card);

	spin_lock(&card->qlock);
	card->streaming = false;
	list_splice_init(&card->queued, &returned);
	list_splice_tail_init(&card->done, &returned);
	list_for_each_entry(buf, &returned, list)
		buf->state = DMAREC_BUF_USER;
	spin_unlock(&card->qlock);

	list_for_each_entry_safe(buf, tmp, &returned, list) {
		list_del_init(&buf->list);
		dmarec_buf_sync_for_cpu(card->ring, buf);
	}
	wake_up_all(&card->done_wq);
}

/* card->lock held, card stopped, no mapping: detach and free the ring. */
static int dmarec_ring_teardown(struct dmarec_card *card)
{
	struct dmarec_ring *ring;

	mutex_lock(&card->ring_lock);
	if (atomic_read(&card->mmap_count)) {
		mutex_unlock(&card->ring_lock);
		return -EBUSY;
	}
	ring = card->ring;
	card->ring = NULL;
	WRITE_ONCE(card->owner, NULL);
	mutex_unlock(&card->ring_lock);

	/* Buffers may still sit on the lists if queued before STREAMON. */
	spin_lock(&card->qlock);
	INIT_LIST_HEAD(&card->queued);
	INIT_LIST_HEAD(&card->done);
	spin_unlock(&card->qlock);

	dmarec_ring_free(ring);
	return 0;
}

static long dmarec_ioc_querycap(struct dmarec_card *card, void __user *uarg)
{
	struct dmarec_caps caps = {
		.version = DMAREC_UAPI_VERSION,
		.caps = DMAREC_CAP_MMAP | DMAREC_CAP_USERPTR | card->ops->caps,
		.max_buffers = DMAREC_MAX_BUFFERS,
		.min_payload_bytes = DMAREC_MIN_PAYLOAD,
		.max_payload_bytes = DMAREC_MAX_PAYLOAD,
	};

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	caps.channels = card->channels;
	caps.rate_bytes_per_s = card->rate;
	mutex_unlock(&card->lock);

	return copy_to_user(uarg, &caps, sizeof(caps)) ? -EFAULT : 0;
}

static int dmarec_setup_validate(const struct dmarec_setup *s)
{
	if (s->flags || !dmarec_is_zero(s->reserved, sizeof(s->reserved)))
		return -EINVAL;
	if (s->buffer_count == 0)
		return 0;
	if (s->memory != DMAREC_MEMORY_MMAP &&
	    s->memory != DMAREC_MEMORY_USERPTR)
		return -EINVAL;
	if (s->buffer_count > DMAREC_MAX_BUFFERS)
		return -EINVAL;
	if (s->payload_bytes < DMAREC_MIN_PAYLOAD ||
	    s->payload_bytes > DMAREC_MAX_PAYLOAD ||
	    !is_power_of_2(s->payload_bytes))
		return -EINVAL;
	return 0;
}

/* card->lock held: settings made by another file do not carry over. */
static void dmarec_config_claim(struct dmarec_card *card, struct file *file)
{
	if (card->config_file == file)
		return;
	card->channels = card->default_channels;
	card->rate = card->default_rate;
	card->config_file = NULL;
}

/* card->lock held: allocate a ring of the geometry already answered. */
static struct dmarec_ring *dmarec_setup_alloc(struct dmarec_card *card,
					      struct dmarec_setup *s)
{
	struct dmarec_ring *ring;
	int ret;

	ret = dmarec_zero_copy_check(card);
	if (ret)
		return ERR_PTR(ret);
	ring = dmarec_ring_alloc(card, s->memory, s->buffer_count,
				 s->payload_bytes);
	if (!IS_ERR(ring))
		WARN_ON(ring->stride != s->buffer_stride_bytes);
	return ring;
}

static long dmarec_ioc_setup(struct dmarec_card *card, struct file *file,
			     void __user *uarg)
{
	struct dmarec_ring *ring = NULL;
	struct dmarec_setup s;
	long ret;

	if (copy_from_user(&s, uarg, sizeof(s)))
		return -EFAULT;
	ret = dmarec_setup_validate(&s);
	if (ret)
		return ret;
	/*
	 * The answer follows from the request alone: write it before taking
	 * the lock, so no user fault happens under it (on failure the output
	 * fields mean nothing) and nobody can see a ring a failed copy would
	 * have to undo.
	 */
	s.buffer_stride_bytes = 0;
	s.mmap_size_bytes = 0;
	if (s.buffer_count) {
		s.buffer_stride_bytes = (u64)DMAREC_HEADER_BYTES + s.payload_bytes;
		if (s.memory == DMAREC_MEMORY_MMAP)
			s.mmap_size_bytes = s.buffer_stride_bytes * s.buffer_count;
	}
	if (copy_to_user(uarg, &s, sizeof(s)))
		return -EFAULT;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = -ENODEV;
	if (card->dead)
		goto out;
	ret = -EBUSY;
	if (card->owner && card->owner != file)
		goto out;
	if (card->streaming)
		goto out;
	if (card->ring) {
		ret = dmarec_ring_teardown(card);
		if (ret)
			goto out;
	}

	ret = 0;
	if (!s.buffer_count)
		goto out;
	ring = dmarec_setup_alloc(card, &s);
	if (IS_ERR(ring)) {
		ret = PTR_ERR(ring);
		goto out;
	}
	dmarec_config_claim(card, file);
	spin_lock(&card->qlock);
	memset(&card->stats, 0, sizeof(card->stats));
	spin_unlock(&card->qlock);
	mutex_lock(&card->ring_lock);
	card->ring = ring;
	card->gen++;
	WRITE_ONCE(card->owner, file);
	mutex_unlock(&card->ring_lock);
out:
	mutex_unlock(&card->lock);
	return ret;
}

/*
 * card->lock held: may this file attach memory to buffer index now? The
 * same answer is asked before the pin and again after it, since the lock
 * is dropped while pinning (unbind, SETUP, STREAMON or another ATTACH of
 * the same index may have come in between).
 */
static int dmarec_attach_check(struct dmarec_card *card, struct file *file,
			       const struct dmarec_userptr *u)
{
	int ret = dmarec_check_owner(card, file);

	if (ret)
		return ret;
	if (card->ring->memory != DMAREC_MEMORY_USERPTR ||
	    u->index >= card->ring->count ||
	    u->payload_bytes != card->ring->payload_bytes)
		return -EINVAL;
	if (card->streaming)
		return -EBUSY;
	if (card->ring->bufs[array_index_nospec(u->index,
						card->ring->count)].attached)
		return -EBUSY;
	return 0;
}

/*
 * card->lock held: install the pinned pages unless the card or its ring
 * changed while they were pinned without the lock (then pin stays with the
 * caller, which unpins it after dropping the lock).
 */
static long dmarec_attach_install(struct dmarec_card *card, struct file *file,
				  const struct dmarec_userptr *u, u64 gen,
				  struct dmarec_pin *pin)
{
	struct dmarec_buf *buf;
	long ret;

	ret = dmarec_attach_check(card, file, u);
	if (ret)
		return ret;
	/* set up again (a new ring, maybe at the same address) or streamed */
	if (card->gen != gen)
		return -EBUSY;
	buf = &card->ring->bufs[array_index_nospec(u->index, card->ring->count)];
	return dmarec_buf_install_userptr(card->ring, buf, pin);
}

static long dmarec_ioc_attach(struct dmarec_card *card, struct file *file,
			      void __user *uarg)
{
	struct dmarec_userptr u;
	struct dmarec_pin pin;
	unsigned int nr;
	long ret;
	u64 gen;

	if (copy_from_user(&u, uarg, sizeof(u)))
		return -EFAULT;
	if (u.flags || !dmarec_is_zero(u.reserved, sizeof(u.reserved)))
		return -EINVAL;
	if (!PAGE_ALIGNED(u.payload_addr) || u.payload_addr == 0)
		return -EINVAL;
	if (u.payload_addr > (u64)ULONG_MAX - u.payload_bytes)
		return -EINVAL;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = dmarec_attach_check(card, file, &u);
	gen = card->gen;
	mutex_unlock(&card->lock);
	if (ret)
		return ret;

	/* the payload size was checked against the ring: <= 16 MiB */
	nr = u.payload_bytes >> PAGE_SHIFT;
	ret = dmarec_pin_userptr(&pin, u.payload_addr, nr);
	if (ret)
		return ret;

	if (mutex_lock_interruptible(&card->lock)) {
		ret = -ERESTARTSYS;
		goto out_unpin;
	}
	ret = dmarec_attach_install(card, file, &u, gen, &pin);
	mutex_unlock(&card->lock);
out_unpin:
	/* empty after a successful install; else undone outside the lock */
	dmarec_unpin_userptr(&pin);
	return ret;
}

static long dmarec_ioc_qbuf(struct dmarec_card *card, struct file *file,
			    void __user *uarg)
{
	struct dmarec_buffer b;
	struct dmarec_buf *buf;
	long ret;

	if (copy_from_user(&b, uarg, sizeof(b)))
		return -EFAULT;
	/*
	 * Output fields are ignored so a struct filled by DQBUF can be passed
	 * straight back; unknown flag bits and reserved fields are refused.
	 */
	if ((b.flags & ~DMAREC_BUF_FLAG_OVERRUN) ||
	    !dmarec_is_zero(b.reserved, sizeof(b.reserved)))
		return -EINVAL;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = dmarec_check_owner(card, file);
	if (ret)
		goto out;
	ret = -EINVAL;
	if (b.index >= card->ring->count)
		goto out;
	buf = &card->ring->bufs[array_index_nospec(b.index, card->ring->count)];
	/* state changes away from USER only under card->lock */
	if (!buf->attached || READ_ONCE(buf->state) != DMAREC_BUF_USER)
		goto out;

	dmarec_buf_sync_for_device(card->ring, buf);

	spin_lock(&card->qlock);
	buf->state = DMAREC_BUF_QUEUED;
	list_add_tail(&buf->list, &card->queued);
	card->stats.queued++;
	spin_unlock(&card->qlock);
	if (card->ops->queued)
		card->ops->queued(card);
	ret = 0;
out:
	mutex_unlock(&card->lock);
	return ret;
}

static bool dmarec_dq_ready(struct dmarec_card *card)
{
	bool ret;

	spin_lock(&card->qlock);
	ret = !list_empty(&card->done) || !card->streaming;
	spin_unlock(&card->qlock);
	return ret;
}

/* card->lock held. Returns a buffer now owned by userspace, or an error. */
static struct dmarec_buf *dmarec_dq_take(struct dmarec_card *card)
{
	struct dmarec_buf *buf;

	spin_lock(&card->qlock);
	buf = list_first_entry_or_null(&card->done, struct dmarec_buf, list);
	if (buf) {
		list_del_init(&buf->list);
		buf->state = DMAREC_BUF_USER;
		card->stats.dequeued++;
	} else {
		buf = ERR_PTR(card->streaming ? -EAGAIN : -EPIPE);
	}
	spin_unlock(&card->qlock);
	return buf;
}

/* card->lock held: wait for and take the oldest filled buffer. */
static struct dmarec_buf *dmarec_dq_wait(struct dmarec_card *card,
					 struct file *file)
{
	struct dmarec_buf *buf;
	long ret;

	for (;;) {
		ret = dmarec_check_owner(card, file);
		if (ret)
			return ERR_PTR(ret);
		buf = dmarec_dq_take(card);
		if (!IS_ERR(buf) || PTR_ERR(buf) != -EAGAIN ||
		    (file->f_flags & O_NONBLOCK))
			return buf;
		mutex_unlock(&card->lock);
		ret = wait_event_interruptible(card->done_wq,
					       dmarec_dq_ready(card));
		if (!ret && mutex_lock_interruptible(&card->lock))
			ret = -ERESTARTSYS;
		if (ret) {
			/* returns with the lock taken, as on every path */
			mutex_lock(&card->lock);
			return ERR_PTR(ret);
		}
	}
}

/*
 * The copy of a dequeued buffer's description failed: it goes back as the
 * oldest filled buffer, unless the ring or the stream changed meanwhile
 * (then STREAMOFF/teardown already owns the question).
 */
static void dmarec_dq_undo(struct dmarec_card *card, u64 gen, u32 index)
{
	struct dmarec_buf *buf;

	mutex_lock(&card->lock);
	if (card->ring && card->gen == gen && card->streaming &&
	    index < card->ring->count) {
		buf = &card->ring->bufs[index];
		if (buf->state == DMAREC_BUF_USER) {
			dmarec_buf_sync_for_device(card->ring, buf);
			spin_lock(&card->qlock);
			buf->state = DMAREC_BUF_DONE;
			list_add(&buf->list, &card->done);
			card->stats.dequeued--;
			spin_unlock(&card->qlock);
		}
	}
	mutex_unlock(&card->lock);
}

static long dmarec_ioc_dqbuf(struct dmarec_card *card, struct file *file,
			     void __user *uarg)
{
	struct dmarec_buffer b = {};
	struct dmarec_buf *buf;
	u64 gen;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	buf = dmarec_dq_wait(card, file);
	if (IS_ERR(buf)) {
		mutex_unlock(&card->lock);
		return PTR_ERR(buf);
	}
	dmarec_buf_sync_for_cpu(card->ring, buf);
	b.index = buf->index;
	b.bytes_used = card->ring->payload_bytes;
	b.channel = buf->channel;
	b.card_seq = buf->seq;
	b.card_timestamp_ns = buf->timestamp_ns;
	b.gap_count = buf->gap;
	if (buf->gap)
		b.flags |= DMAREC_BUF_FLAG_OVERRUN;
	gen = card->gen;
	mutex_unlock(&card->lock);

	/* no lock across a user fault (userfaultfd could hold it forever) */
	if (copy_to_user(uarg, &b, sizeof(b))) {
		dmarec_dq_undo(card, gen, b.index);
		return -EFAULT;
	}
	return 0;
}

static long dmarec_ioc_streamon(struct dmarec_card *card, struct file *file)
{
	long ret;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = dmarec_check_owner(card, file);
	if (ret)
		goto out;
	ret = -EBUSY;
	if (card->streaming)
		goto out;

	spin_lock(&card->qlock);
	card->card_seq = 0;
	card->pending_gap = 0;
	card->stream_channels = card->channels;
	card->streaming = true;
	card->gen++;
	spin_unlock(&card->qlock);

	ret = card->ops->start(card);
	if (ret) {
		spin_lock(&card->qlock);
		card->streaming = false;
		spin_unlock(&card->qlock);
		/* a DQBUF or poll of another thread may have seen streaming */
		wake_up_all(&card->done_wq);
	}
out:
	mutex_unlock(&card->lock);
	return ret;
}

static long dmarec_ioc_streamoff(struct dmarec_card *card, struct file *file)
{
	long ret;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = dmarec_check_owner(card, file);
	if (!ret)
		dmarec_stream_stop(card);
	mutex_unlock(&card->lock);
	return ret;
}

static long dmarec_ioc_stats(struct dmarec_card *card, void __user *uarg)
{
	struct dmarec_stats st = {};

	spin_lock(&card->qlock);
	st.filled = card->stats.filled;
	st.overruns = card->stats.overruns;
	st.queued = card->stats.queued;
	st.dequeued = card->stats.dequeued;
	spin_unlock(&card->qlock);

	return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long dmarec_ioc_sim_config(struct dmarec_card *card, struct file *file,
				  void __user *uarg)
{
	struct dmarec_sim_config c;
	long ret;

	if (copy_from_user(&c, uarg, sizeof(c)))
		return -EFAULT;
	if (c.flags || !dmarec_is_zero(c.reserved, sizeof(c.reserved)))
		return -EINVAL;
	if (c.channels < 1 || c.channels > DMAREC_MAX_CHANNELS)
		return -EINVAL;

	if (!(card->ops->caps & DMAREC_CAP_SIM))
		return -EOPNOTSUPP;

	if (mutex_lock_interruptible(&card->lock))
		return -ERESTARTSYS;
	ret = -ENODEV;
	if (card->dead)
		goto out;
	ret = -EBUSY;
	if ((card->owner && card->owner != file) || card->streaming)
		goto out;
	card->channels = c.channels;
	card->rate = c.rate_bytes_per_s;
	/* only this file's next SETUP keeps them (dmarec_config_claim) */
	card->config_file = file;
	ret = 0;
out:
	mutex_unlock(&card->lock);
	return ret;
}

static long dmarec_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	struct dmarec_card *card = dmarec_file_card(file);
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case DMAREC_IOC_QUERYCAP:
		return dmarec_ioc_querycap(card, uarg);
	case DMAREC_IOC_SETUP:
		return dmarec_ioc_setup(card, file, uarg);
	case DMAREC_IOC_ATTACH_USERPTR:
		return dmarec_ioc_attach(card, file, uarg);
	case DMAREC_IOC_QBUF:
		return dmarec_ioc_qbuf(card, file, uarg);
	case DMAREC_IOC_DQBUF:
		return dmarec_ioc_dqbuf(card, file, uarg);
	case DMAREC_IOC_STREAMON:
		return dmarec_ioc_streamon(card, file);
	case DMAREC_IOC_STREAMOFF:
		return dmarec_ioc_streamoff(card, file);
	case DMAREC_IOC_STATS:
		return dmarec_ioc_stats(card, uarg);
	case DMAREC_IOC_SIM_CONFIG:
		return dmarec_ioc_sim_config(card, file, uarg);
	default:
		return -ENOTTY;
	}
}

/*
 * EPOLLIN when a filled buffer can be dequeued; EPOLLERR when DQBUF would
 * fail without waiting (not the owner, or not streaming and nothing filled).
 */
static __poll_t dmarec_poll(struct file *file, poll_table *wait)
{
	struct dmarec_card *card = dmarec_file_card(file);
	__poll_t mask = 0;

	poll_wait(file, &card->done_wq, wait);

	if (READ_ONCE(card->owner) != file)
		return EPOLLERR;
	spin_lock(&card->qlock);
	if (!list_empty(&card->done))
		mask = EPOLLIN | EPOLLRDNORM;
	else if (!card->streaming)
		mask = EPOLLERR;
	spin_unlock(&card->qlock);
	return mask;
}

static int dmarec_open(struct inode *inode, struct file *file)
{
	/* misc_open() holds misc_mtx: the card is still registered here */
	kref_get(&dmarec_file_card(file)->ref);
	return 0;
}

static int dmarec_release(struct inode *inode, struct file *file)
{
	struct dmarec_card *card = dmarec_file_card(file);

	mutex_lock(&card->lock);
	if (card->owner == file) {
		dmarec_stream_stop(card);
		/* A mapping holds a file reference, so none can exist here. */
		WARN_ON(dmarec_ring_teardown(card));
	}
	if (card->config_file == file)
		card->config_file = NULL;
	mutex_unlock(&card->lock);
	dmarec_card_put(card);
	return 0;
}

static const struct file_operations dmarec_fops = {
	.owner = THIS_MODULE,
	.open = dmarec_open,
	.unlocked_ioctl = dmarec_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = dmarec_mmap,
	.poll = dmarec_poll,
	.release = dmarec_release,
	.llseek = noop_llseek,
};

/*
 * ------------------------------------------------------------------------
 * Backend side: card lifetime and the buffer lists.
 * ------------------------------------------------------------------------
 */

/* A card with one reference (the backend's); not yet visible. */
struct dmarec_card *dmarec_card_alloc(const struct dmarec_card_ops *ops,
				      struct device *dma_dev, void *priv)
{
	struct dmarec_card *card;
	int id;

	card = kzalloc(sizeof(*card), GFP_KERNEL);
	if (!card)
		return ERR_PTR(-ENOMEM);
	id = ida_alloc(&dmarec_ida, GFP_KERNEL);
	if (id < 0) {
		kfree(card);
		return ERR_PTR(id);
	}
	card->id = id;
	card->ops = ops;
	card->priv = priv;
	card->dma_dev = get_device(dma_dev);
	kref_init(&card->ref);
	card->channels = 1;
	card->default_channels = 1;
	mutex_init(&card->lock);
	mutex_init(&card->ring_lock);
	atomic_set(&card->mmap_count, 0);
	spin_lock_init(&card->qlock);
	INIT_LIST_HEAD(&card->queued);
	INIT_LIST_HEAD(&card->done);
	init_waitqueue_head(&card->done_wq);
	snprintf(card->name, sizeof(card->name), "dmarec%u", id);
	return card;
}

/* Makes /dev/dmarecN appear; the card must be fully set up. */
int dmarec_card_register(struct dmarec_card *card)
{
	int ret;

	card->default_channels = card->channels;
	card->default_rate = card->rate;
	card->misc.minor = MISC_DYNAMIC_MINOR;
	card->misc.name = card->name;
	card->misc.fops = &dmarec_fops;
	card->misc.parent = card->dma_dev;
	card->misc.mode = 0600;
	ret = misc_register(&card->misc);
	if (!ret)
		card->registered = true;
	return ret;
}

/*
 * The device is going away (PCI unbind, module exit): no new opens, stop
 * streaming, drop every DMA mapping while the device still exists. Open
 * files keep the card (and the ring's memory) until they are released.
 */
void dmarec_card_unregister(struct dmarec_card *card)
{
	if (card->registered)
		misc_deregister(&card->misc);
	card->registered = false;

	mutex_lock(&card->lock);
	if (card->streaming)
		dmarec_stream_stop(card);
	mutex_lock(&card->ring_lock);
	card->dead = true;
	if (card->ring)
		dmarec_ring_unmap_dma(card->ring);
	mutex_unlock(&card->ring_lock);
	mutex_unlock(&card->lock);
	wake_up_all(&card->done_wq);
}

static void dmarec_card_free(struct kref *ref)
{
	struct dmarec_card *card = container_of(ref, struct dmarec_card, ref);

	WARN_ON(card->ring || card->registered);
	put_device(card->dma_dev);
	ida_free(&dmarec_ida, card->id);
	mutex_destroy(&card->ring_lock);
	mutex_destroy(&card->lock);
	kfree(card);
}

void dmarec_card_put(struct dmarec_card *card)
{
	kref_put(&card->ref, dmarec_card_free);
}

bool dmarec_card_has_queued(struct dmarec_card *card)
{
	bool ret;

	spin_lock(&card->qlock);
	ret = !list_empty(&card->queued);
	spin_unlock(&card->qlock);
	return ret;
}

/* Take the oldest queued buffer (now ACTIVE) and number it, or NULL. */
struct dmarec_buf *dmarec_card_take(struct dmarec_card *card)
{
	struct dmarec_buf *buf;
	u64 seq;

	spin_lock(&card->qlock);
	buf = list_first_entry_or_null(&card->queued, struct dmarec_buf, list);
	if (buf) {
		list_del_init(&buf->list);
		buf->state = DMAREC_BUF_ACTIVE;
		buf->seq = card->card_seq++;
		buf->gap = card->pending_gap;
		seq = buf->seq;
		buf->channel = do_div(seq, card->stream_channels);
		card->pending_gap = 0;
	}
	spin_unlock(&card->qlock);
	return buf;
}

/* The card lost n buffers (nothing was queued when they were due). */
void dmarec_card_lost(struct dmarec_card *card, u64 n)
{
	spin_lock(&card->qlock);
	card->card_seq += n;
	card->pending_gap += n;
	card->stats.overruns += n;
	spin_unlock(&card->qlock);
}

/*
 * An ACTIVE buffer is filled: stamp it with timestamp_ns (the card's clock)
 * and hand it to DQBUF.
 */
void dmarec_card_complete_at(struct dmarec_card *card, struct dmarec_buf *buf,
			     u64 timestamp_ns)
{
	spin_lock(&card->qlock);
	WARN_ON_ONCE(buf->state != DMAREC_BUF_ACTIVE);
	buf->timestamp_ns = timestamp_ns;
	buf->state = DMAREC_BUF_DONE;
	list_add_tail(&buf->list, &card->done);
	card->stats.filled++;
	spin_unlock(&card->qlock);
	wake_up_all(&card->done_wq);
}

/* As above, stamped with CLOCK_MONOTONIC when the fill ended. */
void dmarec_card_complete(struct dmarec_card *card, struct dmarec_buf *buf)
{
	dmarec_card_complete_at(card, buf, ktime_get_ns());
}

/*
 * An ACTIVE buffer the card stopped filling half way (STREAMOFF, suspend):
 * back to the head of the queue, unfilled. Its number and the loss it
 * carried go back to the card (it is the last buffer taken: a card fills
 * one at a time), so the buffer filled next carries them and no number is
 * skipped without being counted as lost.
 */
void dmarec_card_requeue(struct dmarec_card *card, struct dmarec_buf *buf)
{
	spin_lock(&card->qlock);
	WARN_ON_ONCE(buf->state != DMAREC_BUF_ACTIVE);
	if (!WARN_ON_ONCE(buf->seq + 1 != card->card_seq)) {
		card->card_seq = buf->seq;
		card->pending_gap += buf->gap;
	}
	buf->state = DMAREC_BUF_QUEUED;
	list_add(&buf->list, &card->queued);
	spin_unlock(&card->qlock);
}

static int __init dmarec_init(void)
{
	int ret;

	/* Header pages are whole pages; the layout needs 4 KiB pages. */
	BUILD_BUG_ON(DMAREC_HEADER_BYTES % PAGE_SIZE);
	BUILD_BUG_ON(DMAREC_MIN_PAYLOAD % PAGE_SIZE);

	if (cards > DMAREC_MAX_CARDS ||
	    channels < 1 || channels > DMAREC_MAX_CHANNELS)
		return -EINVAL;

	ret = dmarec_sim_init(cards, channels, rate);
	if (ret)
		return ret;
	ret = dmarec_edu_init();
	if (ret) {
		dmarec_sim_exit();
		return ret;
	}
	pr_info("dmarec: %u simulated card(s), uapi %u\n", cards,
		DMAREC_UAPI_VERSION);
	return 0;
}

static void __exit dmarec_exit(void)
{
	dmarec_edu_exit();
	dmarec_sim_exit();
}

module_init(dmarec_init);
module_exit(dmarec_exit);

MODULE_DESCRIPTION("DMA buffer ring driver for capture cards (simulated, QEMU edu)");
MODULE_AUTHOR("dmarec project");
MODULE_LICENSE("GPL");
