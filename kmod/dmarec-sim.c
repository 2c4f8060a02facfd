// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec - the simulated card: a kernel thread acting as the DMA engine.
 *
 * It takes queued buffers in order and fills their payload with a
 * deterministic pattern. With a rate, one buffer is due every
 * payload_bytes / rate seconds; when a buffer is due and none is queued the
 * card loses it (overrun): card_seq still advances and the next delivered
 * buffer reports the loss in gap_count. Without a rate the card fills
 * buffers as soon as they are queued and never loses any.
 */
#include <linux/highmem.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/math64.h>
#include <linux/sched.h>
#include <linux/timekeeping.h>

#include "dmarec_drv.h"

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

/* payload u64 word i = seed ^ (i * golden), little endian */
static void dmarec_sim_fill(struct dmarec_buf *buf, u64 seed)
{
	const unsigned int words = PAGE_SIZE / sizeof(u64);
	u64 word = 0;
	unsigned int p, i;

	for (p = 0; p < buf->nr_payload; p++) {
		__le64 *dst = kmap_local_page(buf->payload[p]);

		for (i = 0; i < words; i++, word++)
			dst[i] = cpu_to_le64(seed ^ (word * DMAREC_GOLDEN));
		kunmap_local(dst);
		if ((p & 63) == 63)
			cond_resched();
	}
}

static bool dmarec_sim_has_queued(struct dmarec_card *card)
{
	bool ret;

	spin_lock(&card->qlock);
	ret = !list_empty(&card->queued);
	spin_unlock(&card->qlock);
	return ret;
}

/* Take the oldest queued buffer and number it, or NULL. */
static struct dmarec_buf *dmarec_sim_take(struct dmarec_card *card)
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
		buf->channel = do_div(seq, card->sim_channels);
		card->pending_gap = 0;
	}
	spin_unlock(&card->qlock);
	return buf;
}

static void dmarec_sim_lost(struct dmarec_card *card, u64 n)
{
	spin_lock(&card->qlock);
	card->card_seq += n;
	card->pending_gap += n;
	card->stats.overruns += n;
	spin_unlock(&card->qlock);
}

static void dmarec_sim_deliver(struct dmarec_card *card,
			       struct dmarec_buf *buf)
{
	dmarec_sim_fill(buf, dmarec_pattern_seed(buf->seq, buf->channel));

	spin_lock(&card->qlock);
	buf->timestamp_ns = ktime_get_ns();
	buf->state = DMAREC_BUF_DONE;
	list_add_tail(&buf->list, &card->done);
	card->stats.filled++;
	spin_unlock(&card->qlock);
	wake_up_all(&card->done_wq);
}

static void dmarec_sim_sleep_until(u64 deadline_ns)
{
	ktime_t deadline = ns_to_ktime(deadline_ns);

	set_current_state(TASK_INTERRUPTIBLE);
	if (!kthread_should_stop())
		schedule_hrtimeout(&deadline, HRTIMER_MODE_ABS);
	__set_current_state(TASK_RUNNING);
}

static void dmarec_sim_run_unlimited(struct dmarec_card *card)
{
	struct dmarec_buf *buf;

	while (!kthread_should_stop()) {
		wait_event_interruptible(card->card_wq,
					 kthread_should_stop() ||
					 dmarec_sim_has_queued(card));
		buf = dmarec_sim_take(card);
		if (buf)
			dmarec_sim_deliver(card, buf);
		cond_resched();
	}
}

static void dmarec_sim_run_paced(struct dmarec_card *card)
{
	const u64 period = card->sim_period_ns;
	u64 next = ktime_get_ns() + period;
	struct dmarec_buf *buf;
	u64 now, missed;

	while (!kthread_should_stop()) {
		now = ktime_get_ns();
		if (now < next) {
			dmarec_sim_sleep_until(next);
			continue;
		}
		buf = dmarec_sim_take(card);
		if (buf) {
			dmarec_sim_deliver(card, buf);
			next += period;
		} else {
			/* every deadline that passed with nothing queued */
			missed = div64_u64(now - next, period) + 1;
			dmarec_sim_lost(card, missed);
			next += missed * period;
		}
		cond_resched();
	}
}

static int dmarec_sim_thread(void *data)
{
	struct dmarec_card *card = data;

	if (card->sim_period_ns)
		dmarec_sim_run_paced(card);
	else
		dmarec_sim_run_unlimited(card);
	return 0;
}

/* Called with card->lock held, streaming already set. */
int dmarec_sim_start(struct dmarec_card *card)
{
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
	card->sim_channels = card->channels;
	card->sim_period_ns = period;

	t = kthread_run(dmarec_sim_thread, card, "dmarec%u-card", card->id);
	if (IS_ERR(t))
		return PTR_ERR(t);
	card->thread = t;
	return 0;
}

/* Called with card->lock held. Returns with no buffer ACTIVE. */
void dmarec_sim_stop(struct dmarec_card *card)
{
	if (!card->thread)
		return;
	kthread_stop(card->thread);
	card->thread = NULL;
}
