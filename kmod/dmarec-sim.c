// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec - the simulated card backend: a kernel thread acting as the DMA
 * engine of a platform device, plus the payload pattern every card writes.
 *
 * The thread takes queued buffers in order and fills their payload with the
 * pattern through kernel mappings. With a rate, one buffer is due every
 * payload_bytes / rate seconds; when a buffer is due and none is queued the
 * card loses it (overrun): card_seq still advances and the next delivered
 * buffer reports the loss in gap_count. While nothing is queued the thread
 * sleeps and accounts the deadlines it slept through when it wakes. Without
 * a rate the card fills buffers as soon as they are queued and never loses
 * any. The thread is freezable (suspend/hibernate park it between buffers).
 *
 * Timestamps: with a rate the card's clock is its sample counter, started
 * on CLOCK_MONOTONIC when streaming starts: buffer card_seq k (lost ones
 * count) starts at epoch + k * payload_bytes / rate, exactly. Without a
 * rate, CLOCK_MONOTONIC when the fill ended.
 */
#include <linux/dma-mapping.h>
#include <linux/freezer.h>
#include <linux/highmem.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/math64.h>
#include <linux/platform_device.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "dmarec_drv.h"

struct dmarec_sim {
	struct dmarec_card *card;
	struct platform_device *pdev;
	struct task_struct *thread;	/* under card->lock */
	wait_queue_head_t wq;		/* thread waiting for a buffer */
	u64 period_ns;			/* 0 = as fast as buffers are queued */
	u64 epoch_ns;			/* paced: card time 0, CLOCK_MONOTONIC */
	u64 payload_bytes_x_nsec;		/* paced: payload_bytes * NSEC_PER_SEC */
	u64 rate;			/* paced: bytes per second */
};

static struct dmarec_sim **dmarec_sims;
static unsigned int dmarec_nr_sims;

static u64 dmarec_splitmix64(u64 x)
{
	u64 z;

	x += DMAREC_GOLDEN;
	z = x;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

u64 dmarec_pattern_seed(u64 card_seq, u32 channel)
{
	return dmarec_splitmix64(card_seq ^ ((u64)channel << 48) ^
				 DMAREC_SEED_SALT);
}

/*
 * The payload pattern, shared with formats/src/pattern.rs: u64 word i of a
 * payload is seed ^ (i * golden), little endian. Writes words
 * [first_word, first_word + words) of it to dst.
 */
void dmarec_pattern_fill(__le64 *dst, u64 seed, u64 first_word,
			 unsigned int words)
{
	unsigned int i;

	for (i = 0; i < words; i++)
		dst[i] = cpu_to_le64(seed ^ ((first_word + i) * DMAREC_GOLDEN));
}

static void dmarec_sim_fill(struct dmarec_buf *buf, u64 seed)
{
	const unsigned int words = PAGE_SIZE / sizeof(u64);
	unsigned int p;

	for (p = 0; p < buf->nr_payload; p++) {
		__le64 *dst = kmap_local_page(buf->payload[p]);

		dmarec_pattern_fill(dst, seed, (u64)p * words, words);
		kunmap_local(dst);
		if ((p & 63) == 63)
			cond_resched();
	}
}

static void dmarec_sim_deliver(struct dmarec_card *card,
			       struct dmarec_buf *buf)
{
	dmarec_sim_fill(buf, dmarec_pattern_seed(buf->seq, buf->channel));
	dmarec_card_complete(card, buf);
}

/* Paced: stamped by the sample counter, the time of the buffer's first byte. */
static void dmarec_sim_deliver_paced(struct dmarec_sim *sim,
				     struct dmarec_buf *buf)
{
	u64 start_ns = sim->epoch_ns +
		mul_u64_u64_div_u64(buf->seq, sim->payload_bytes_x_nsec, sim->rate);

	dmarec_sim_fill(buf, dmarec_pattern_seed(buf->seq, buf->channel));
	dmarec_card_complete_at(sim->card, buf, start_ns);
}

static void dmarec_sim_sleep_until(u64 deadline_ns)
{
	ktime_t deadline = ns_to_ktime(deadline_ns);

	set_current_state(TASK_INTERRUPTIBLE);
	if (!kthread_should_stop())
		schedule_hrtimeout(&deadline, HRTIMER_MODE_ABS);
	__set_current_state(TASK_RUNNING);
}

/* Sleep (freezable) until a buffer is queued or the thread must stop. */
static void dmarec_sim_wait_queued(struct dmarec_sim *sim)
{
	wait_event_freezable(sim->wq, kthread_should_stop() ||
			     dmarec_card_has_queued(sim->card));
}

static void dmarec_sim_run_unlimited(struct dmarec_sim *sim)
{
	struct dmarec_buf *buf;

	while (!kthread_should_stop()) {
		/* a queue that never empties must not keep suspend waiting */
		try_to_freeze();
		dmarec_sim_wait_queued(sim);
		buf = dmarec_card_take(sim->card);
		if (buf)
			dmarec_sim_deliver(sim->card, buf);
		cond_resched();
	}
}

static void dmarec_sim_run_paced(struct dmarec_sim *sim)
{
	const u64 period = sim->period_ns;
	u64 next, now, missed;
	struct dmarec_buf *buf;

	sim->epoch_ns = ktime_get_ns();
	next = sim->epoch_ns + period;

	while (!kthread_should_stop()) {
		try_to_freeze();
		now = ktime_get_ns();
		if (now < next) {
			dmarec_sim_sleep_until(next);
			continue;
		}
		buf = dmarec_card_take(sim->card);
		if (buf) {
			dmarec_sim_deliver_paced(sim, buf);
			next += period;
		} else {
			/*
			 * Nothing queued: sleep until something is, then
			 * count every deadline that passed meanwhile.
			 */
			dmarec_sim_wait_queued(sim);
			now = ktime_get_ns();
			missed = div64_u64(now - next, period) + 1;
			dmarec_card_lost(sim->card, missed);
			next += missed * period;
		}
		cond_resched();
	}
}

static int dmarec_sim_thread(void *data)
{
	struct dmarec_sim *sim = data;

	set_freezable();
	if (sim->period_ns)
		dmarec_sim_run_paced(sim);
	else
		dmarec_sim_run_unlimited(sim);
	return 0;
}

static int dmarec_sim_start(struct dmarec_card *card)
{
	struct dmarec_sim *sim = card->priv;
	struct task_struct *t;
	u64 period = 0;

	if (card->rate) {
		period = div64_u64((u64)card->ring->payload_bytes * NSEC_PER_SEC,
				   card->rate);
		/*
		 * At most one buffer per microsecond: keeps absurd rates
		 * from turning the card thread into a busy loop.
		 */
		period = max_t(u64, period, NSEC_PER_USEC);
	}
	sim->period_ns = period;
	sim->rate = card->rate;
	sim->payload_bytes_x_nsec = (u64)card->ring->payload_bytes * NSEC_PER_SEC;

	t = kthread_run(dmarec_sim_thread, sim, "dmarec%u-card", card->id);
	if (IS_ERR(t))
		return PTR_ERR(t);
	sim->thread = t;
	return 0;
}

/* Returns with no buffer ACTIVE: the thread finishes the one it fills. */
static void dmarec_sim_stop(struct dmarec_card *card)
{
	struct dmarec_sim *sim = card->priv;

	if (!sim->thread)
		return;
	kthread_stop(sim->thread);
	sim->thread = NULL;
}

static void dmarec_sim_queued(struct dmarec_card *card)
{
	struct dmarec_sim *sim = card->priv;

	wake_up(&sim->wq);
}

/*
 * The thread writes the pages through the CPU. That is what a cache-coherent
 * device writing the pages in place does; the core refuses mappings that
 * would need bouncing or cache maintenance for every backend.
 */
static const struct dmarec_card_ops dmarec_sim_ops = {
	.name = "sim",
	.caps = DMAREC_CAP_SIM,
	.start = dmarec_sim_start,
	.stop = dmarec_sim_stop,
	.queued = dmarec_sim_queued,
};

static struct dmarec_sim *dmarec_sim_create(unsigned int id,
					    unsigned int channels, u64 rate)
{
	struct platform_device_info info = {
		.name = "dmarec",
		.id = id,
		.dma_mask = DMA_BIT_MASK(64),
	};
	struct dmarec_sim *sim;
	int ret;

	sim = kzalloc(sizeof(*sim), GFP_KERNEL);
	if (!sim)
		return ERR_PTR(-ENOMEM);
	init_waitqueue_head(&sim->wq);

	sim->pdev = platform_device_register_full(&info);
	if (IS_ERR(sim->pdev)) {
		ret = PTR_ERR(sim->pdev);
		goto err_free;
	}
	ret = dma_set_mask_and_coherent(&sim->pdev->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_unregister_pdev;
	/* the thread writes whole buffers: no segment limit of its own */
	dma_set_max_seg_size(&sim->pdev->dev, DMAREC_MAX_PAYLOAD);

	sim->card = dmarec_card_alloc(&dmarec_sim_ops, &sim->pdev->dev, sim);
	if (IS_ERR(sim->card)) {
		ret = PTR_ERR(sim->card);
		goto err_unregister_pdev;
	}
	sim->card->channels = channels;
	sim->card->rate = rate;
	return sim;

err_unregister_pdev:
	platform_device_unregister(sim->pdev);
err_free:
	kfree(sim);
	return ERR_PTR(ret);
}

static void dmarec_sim_destroy(struct dmarec_sim *sim)
{
	dmarec_card_unregister(sim->card);
	WARN_ON(sim->thread);
	dmarec_card_put(sim->card);
	platform_device_unregister(sim->pdev);
	kfree(sim);
}

/*
 * Creates every card first and registers the device nodes only then, so no
 * node is ever opened while a later card can still fail.
 */
int dmarec_sim_init(unsigned int cards, unsigned int channels, u64 rate)
{
	unsigned int i;
	int ret;

	dmarec_sims = kcalloc(max(cards, 1u), sizeof(*dmarec_sims), GFP_KERNEL);
	if (!dmarec_sims)
		return -ENOMEM;
	for (i = 0; i < cards; i++) {
		dmarec_sims[i] = dmarec_sim_create(i, channels, rate);
		if (IS_ERR(dmarec_sims[i])) {
			ret = PTR_ERR(dmarec_sims[i]);
			goto err_destroy;
		}
		dmarec_nr_sims = i + 1;
	}
	for (i = 0; i < cards; i++) {
		ret = dmarec_card_register(dmarec_sims[i]->card);
		if (ret)
			goto err_destroy;
	}
	return 0;

err_destroy:
	dmarec_sim_exit();
	return ret;
}

void dmarec_sim_exit(void)
{
	while (dmarec_nr_sims)
		dmarec_sim_destroy(dmarec_sims[--dmarec_nr_sims]);
	kfree(dmarec_sims);
	dmarec_sims = NULL;
}
