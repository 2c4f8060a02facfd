// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec-test: userspace test of /dev/dmarecN, run inside a QEMU guest.
 *
 *   dmarec-test [-d /dev/dmarec0] caps|stream|overrun|errors|mmap|lifetime|
 *               fuzz|uring|quick|hold  [args]
 *   dmarec-test uring --disk /dev/vda --expect-mmap ok|eopnotsupp
 *
 * Every check prints "ok ..." or "FAIL ..."; the last line is
 * "dmarec-test <cmd>: N passed, M failed" and the exit status is 1 on any
 * failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../kmod/include/uapi/dmarec.h"

_Static_assert(sizeof(struct dmarec_caps) == 64, "caps");
_Static_assert(sizeof(struct dmarec_setup) == 64, "setup");
_Static_assert(sizeof(struct dmarec_userptr) == 40, "userptr");
_Static_assert(sizeof(struct dmarec_buffer) == 56, "buffer");
_Static_assert(sizeof(struct dmarec_stats) == 64, "stats");
_Static_assert(sizeof(struct dmarec_sim_config) == 32, "sim_config");

typedef unsigned long long u64;

#define PAGE 4096UL

static const char *dev_path = "/dev/dmarec0";
static bool use_hugetlb;	/* USERPTR rings in MAP_HUGETLB memory */
static unsigned long n_pass, n_fail;

static __attribute__((format(printf, 2, 3)))
void check(bool cond, const char *fmt, ...)
{
	va_list ap;

	if (cond)
		n_pass++;
	else
		n_fail++;
	/* keep the log short: print failures always, passes only as summary */
	if (!cond) {
		printf("FAIL ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		fflush(stdout);
	}
}

static __attribute__((format(printf, 1, 2)))
void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

#define CHECK(c) check((c), "%s:%d: %s (errno %d %s)", __func__, __LINE__, \
		       #c, errno, strerror(errno))
/* call must fail with errno e */
#define CHECK_ERR(call, e) do {						\
	errno = 0;							\
	long r_ = (long)(call);						\
	int e_ = errno;							\
	check(r_ == -1 && e_ == (e), "%s:%d: %s = %ld errno %d (%s), want %s", \
	      __func__, __LINE__, #call, r_, e_, strerror(e_), #e);	\
} while (0)
#define CHECK_OK(call) do {						\
	errno = 0;							\
	long r_ = (long)(call);						\
	int e_ = errno;							\
	check(r_ == 0, "%s:%d: %s = %ld errno %d (%s)", __func__, __LINE__, \
	      #call, r_, e_, strerror(e_));				\
} while (0)

static u64 now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u64)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- pattern (must match the driver and the Rust implementation) ---- */

static u64 splitmix64(u64 x)
{
	u64 z;

	x += 0x9E3779B97F4A7C15ull;
	z = x;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static u64 pattern_seed(u64 seq, uint32_t channel)
{
	return splitmix64(seq ^ ((u64)channel << 48) ^ 0xD1B54A32D192ED03ull);
}

/* returns the first bad word index, or -1 */
static long pattern_verify(const void *payload, size_t bytes, u64 seq,
			   uint32_t channel)
{
	const u64 *w = payload;
	u64 seed = pattern_seed(seq, channel);
	size_t i;

	for (i = 0; i < bytes / 8; i++)
		if (w[i] != (seed ^ (i * 0x9E3779B97F4A7C15ull)))
			return (long)i;
	return -1;
}

/* Known-answer test so a change of the formula on either side is caught. */
static void pattern_selftest(void)
{
	/* splitmix64(0) is the well-known first output of SplitMix64 seed 0 */
	/* literal words of formats/src/pattern.rs known_answers_as_literal_words */
	static const u64 seq0_ch0[3] = { 0x2D0F28C7E7E786B2ull,
		0xB338517E98ADFAA7ull, 0x1161DBB519737E98ull };
	static const u64 seq77_ch3[3] = { 0xAF9FC545AB9D900Eull,
		0x31A8BCFCD4D7EC1Bull, 0x93F1363755096824ull };

	check(splitmix64(0) == 0xE220A8397B1DCDAFull, "splitmix64(0)");
	check(pattern_verify(seq0_ch0, sizeof(seq0_ch0), 0, 0) == -1,
	      "pattern seq 0 channel 0");
	check(pattern_verify(seq77_ch3, sizeof(seq77_ch3), 77, 3) == -1,
	      "pattern seq 77 channel 3");
}

/* ---------------------------- device helpers ---------------------------- */

static int dev_open(int flags)
{
	int fd = open(dev_path, O_RDWR | O_CLOEXEC | flags);

	if (fd < 0) {
		printf("FAIL open %s: %s\n", dev_path, strerror(errno));
		exit(1);
	}
	return fd;
}

static int sim_config(int fd, uint32_t channels, u64 rate)
{
	struct dmarec_sim_config c = { .channels = channels,
				       .rate_bytes_per_s = rate };

	return ioctl(fd, DMAREC_IOC_SIM_CONFIG, &c);
}

static int setup(int fd, uint32_t memory, uint32_t count, uint32_t payload,
		 struct dmarec_setup *out)
{
	struct dmarec_setup s = { .memory = memory, .buffer_count = count,
				  .payload_bytes = payload };
	int r = ioctl(fd, DMAREC_IOC_SETUP, &s);

	if (out)
		*out = s;
	return r;
}

static int qbuf(int fd, uint32_t index)
{
	struct dmarec_buffer b = { .index = index };

	return ioctl(fd, DMAREC_IOC_QBUF, &b);
}

static int dqbuf(int fd, struct dmarec_buffer *b)
{
	memset(b, 0xa5, sizeof(*b));
	return ioctl(fd, DMAREC_IOC_DQBUF, b);
}

static int attach(int fd, uint32_t index, void *addr, u64 bytes)
{
	struct dmarec_userptr u = { .index = index,
				    .payload_addr = (uintptr_t)addr,
				    .payload_bytes = bytes };

	return ioctl(fd, DMAREC_IOC_ATTACH_USERPTR, &u);
}

static int attach_u64(int fd, uint32_t index, u64 addr, u64 bytes)
{
	struct dmarec_userptr u = { .index = index, .payload_addr = addr,
				    .payload_bytes = bytes };

	return ioctl(fd, DMAREC_IOC_ATTACH_USERPTR, &u);
}

static struct dmarec_stats stats(int fd)
{
	struct dmarec_stats st;

	memset(&st, 0xff, sizeof(st));
	if (ioctl(fd, DMAREC_IOC_STATS, &st))
		check(false, "STATS: %s", strerror(errno));
	return st;
}

static long vm_pin_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * A ring as userspace sees it: base of the header+payload area of each
 * buffer (MMAP: the device mapping; USERPTR: an anonymous region with a
 * header page before each payload).
 */
struct ring {
	int fd;
	uint32_t memory, count, payload;
	u64 stride;
	uint8_t *base;
	size_t size;
};

static uint8_t *ring_buf(struct ring *r, uint32_t i)
{
	return r->base + (size_t)i * r->stride;
}

static int ring_open(struct ring *r, int fd, uint32_t memory, uint32_t count,
		     uint32_t payload)
{
	struct dmarec_setup s;
	uint32_t i;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->memory = memory;
	r->count = count;
	r->payload = payload;
	if (setup(fd, memory, count, payload, &s)) {
		check(false, "SETUP mem %u count %u payload %u: %s", memory,
		      count, payload, strerror(errno));
		return -1;
	}
	check(s.buffer_stride_bytes == DMAREC_HEADER_BYTES + (u64)payload,
	      "stride %" "llu", s.buffer_stride_bytes);
	r->stride = s.buffer_stride_bytes;
	r->size = (size_t)r->stride * count;
	if (memory == DMAREC_MEMORY_MMAP) {
		check(s.mmap_size_bytes == r->size, "mmap_size %" "llu",
		      s.mmap_size_bytes);
		r->base = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);
		if (r->base == MAP_FAILED) {
			check(false, "mmap ring: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	check(s.mmap_size_bytes == 0, "userptr mmap_size %" "llu",
	      s.mmap_size_bytes);
	if (use_hugetlb)	/* 2 MiB pages; munmap needs the rounded size */
		r->size = (r->size + (2ul << 20) - 1) & ~((2ul << 20) - 1);
	r->base = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE |
		       (use_hugetlb ? MAP_HUGETLB : 0), -1, 0);
	if (r->base == MAP_FAILED) {
		check(false, "mmap anon%s: %s", use_hugetlb ? " hugetlb" : "",
		      strerror(errno));
		r->base = NULL;
		return -1;
	}
	for (i = 0; i < count; i++) {
		if (attach(fd, i, ring_buf(r, i) + DMAREC_HEADER_BYTES,
			   payload)) {
			check(false, "ATTACH %u: %s", i, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void ring_close(struct ring *r)
{
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->size);
	r->base = NULL;
	if (setup(r->fd, 0, 0, 0, NULL))
		check(false, "SETUP teardown: %s", strerror(errno));
}

static const char *mem_name(uint32_t m)
{
	return m == DMAREC_MEMORY_MMAP ? "mmap" : "userptr";
}

/* Check one dequeued buffer's metadata and payload. */
static void verify_buffer(struct ring *r, const struct dmarec_buffer *b,
			  uint32_t channels, const char *what)
{
	long bad;

	check(b->index < r->count, "%s: index %u", what, b->index);
	if (b->index >= r->count)
		return;
	check(b->bytes_used == r->payload, "%s: bytes_used %u", what,
	      b->bytes_used);
	check(b->channel == b->card_seq % channels,
	      "%s: channel %u seq %" "llu" " channels %u", what, b->channel,
	      b->card_seq, channels);
	check(((b->flags & DMAREC_BUF_FLAG_OVERRUN) != 0) == (b->gap_count > 0),
	      "%s: flags %#x gap %" "llu", what, b->flags, b->gap_count);
	check(b->reserved[0] == 0 && b->reserved[1] == 0, "%s: reserved", what);
	bad = pattern_verify(ring_buf(r, b->index) + DMAREC_HEADER_BYTES,
			     r->payload, b->card_seq, b->channel);
	check(bad < 0, "%s: buffer %u seq %" "llu" " pattern mismatch at word %ld",
	      what, b->index, b->card_seq, bad);
}

/* -------------------------------- caps -------------------------------- */

static void test_caps(void)
{
	struct dmarec_caps c;
	int fd = dev_open(0);

	memset(&c, 0xff, sizeof(c));
	CHECK_OK(ioctl(fd, DMAREC_IOC_QUERYCAP, &c));
	check(c.version == DMAREC_UAPI_VERSION, "version %u", c.version);
	check(c.caps == (DMAREC_CAP_MMAP | DMAREC_CAP_USERPTR | DMAREC_CAP_SIM),
	      "caps %#x", c.caps);
	check(c.max_buffers == 1024, "max_buffers %u", c.max_buffers);
	check(c.min_payload_bytes == 4096, "min_payload %u", c.min_payload_bytes);
	check(c.max_payload_bytes == 16u << 20, "max_payload %u",
	      c.max_payload_bytes);
	check(c.channels >= 1 && c.channels <= 64, "channels %u", c.channels);
	check(!c.reserved[0] && !c.reserved[1] && !c.reserved[2] && !c.reserved[3],
	      "caps reserved");
	CHECK_OK(sim_config(fd, 7, 123456));
	CHECK_OK(ioctl(fd, DMAREC_IOC_QUERYCAP, &c));
	check(c.channels == 7 && c.rate_bytes_per_s == 123456,
	      "caps after SIM_CONFIG: %u %" "llu", c.channels,
	      c.rate_bytes_per_s);
	CHECK_OK(sim_config(fd, 1, 0));
	note("caps: version %u caps %#x max_buffers %u payload %u..%u",
	     c.version, c.caps, c.max_buffers, c.min_payload_bytes,
	     c.max_payload_bytes);
	close(fd);
}

/* ------------------------------- stream ------------------------------- */

/*
 * Unlimited rate: every buffer is delivered, in order, no gaps. Verifies
 * every byte of every payload, that the card never touches the header
 * area, seq/channel/timestamp rules, poll(), and the STATS counters.
 */
static void stream_one(uint32_t memory, uint32_t count, uint32_t payload,
		       uint32_t channels, unsigned int total)
{
	struct dmarec_buffer b;
	struct dmarec_stats st;
	struct ring r;
	u64 t_on, last_ts = 0, expect_seq = 0;
	unsigned int n, requeued = 0;
	int fd = dev_open(0);
	uint32_t i;
	char what[64];

	snprintf(what, sizeof(what), "stream %s %ux%u", mem_name(memory), count,
		 payload);
	CHECK_OK(sim_config(fd, channels, 0));
	if (ring_open(&r, fd, memory, count, payload))
		goto out;

	if (memory == DMAREC_MEMORY_MMAP) {
		/* driver memory must be zeroed before userspace sees it */
		size_t k, nz = 0;

		for (k = 0; k < r.size; k++)
			nz += r.base[k] != 0;
		check(nz == 0, "%s: %zu nonzero bytes in fresh ring", what, nz);
	}
	/* userspace header: a marker the card must never overwrite */
	for (i = 0; i < count; i++)
		memset(ring_buf(&r, i), 0x40 + (i & 15), DMAREC_HEADER_BYTES);

	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	t_on = now_ns();
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));

	for (n = 0; n < total; n++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		u64 t_dq;
		size_t k, bad = 0;

		if (n % 16 == 0) {
			check(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN),
			      "%s: poll revents %#x", what, p.revents);
		}
		if (dqbuf(fd, &b)) {
			check(false, "%s: DQBUF %u: %s", what, n, strerror(errno));
			break;
		}
		t_dq = now_ns();
		verify_buffer(&r, &b, channels, what);
		check(b.card_seq == expect_seq && b.gap_count == 0,
		      "%s: seq %" "llu" " want %" "llu" " gap %" "llu", what,
		      b.card_seq, expect_seq, b.gap_count);
		expect_seq = b.card_seq + 1;
		check(b.card_timestamp_ns >= t_on && b.card_timestamp_ns <= t_dq &&
		      b.card_timestamp_ns >= last_ts,
		      "%s: timestamp %" "llu" " not in [%" "llu" ",%" "llu"
		      "] or < last %" "llu", what, b.card_timestamp_ns, t_on,
		      t_dq, last_ts);
		last_ts = b.card_timestamp_ns;
		for (k = 0; k < DMAREC_HEADER_BYTES; k++)
			bad += ring_buf(&r, b.index)[k] != 0x40 + (b.index & 15);
		check(bad == 0, "%s: header of buffer %u touched (%zu bytes)",
		      what, b.index, bad);
		/* the buffer is ours: QBUF of a user-owned buffer works, a
		 * second QBUF of the same (now card-owned) buffer does not */
		if (n + count < total) {
			CHECK_OK(qbuf(fd, b.index));
			CHECK_ERR(qbuf(fd, b.index), EINVAL);
			requeued++;
		}
	}
	/* all queued buffers consumed: nothing left, nonblocking -> EAGAIN */
	{
		int fl = fcntl(fd, F_GETFL);

		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		CHECK_ERR(dqbuf(fd, &b), EAGAIN);
		fcntl(fd, F_SETFL, fl);
	}
	st = stats(fd);
	check(st.queued == count + requeued && st.dequeued == total &&
	      st.filled == total && st.overruns == 0,
	      "%s: stats q %" "llu" " dq %" "llu" " filled %" "llu"
	      " ovr %" "llu", what, st.queued, st.dequeued, st.filled,
	      st.overruns);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	CHECK_ERR(dqbuf(fd, &b), EPIPE);
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		check(poll(&p, 1, 0) == 1 && (p.revents & POLLERR),
		      "%s: poll after STREAMOFF revents %#x", what, p.revents);
	}
	/* after STREAMOFF every buffer is user owned again */
	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	/* STREAMOFF returns queued buffers too */
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	/* second stream: seq restarts at 0 */
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(dqbuf(fd, &b));
	check(b.card_seq == 0, "%s: seq after restart %" "llu", what,
	      b.card_seq);
	verify_buffer(&r, &b, channels, what);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
	note("%s: %u buffers verified, last seq %" "llu", what, total,
	     expect_seq - 1);
out:
	close(fd);
}

static void test_stream(void)
{
	/*
	 * Twice the same geometry: the second ring very likely reuses pages
	 * the first one filled, so the zero check is meaningful (the guest
	 * boots with init_on_alloc=0 so the allocator does not zero them).
	 */
	stream_one(DMAREC_MEMORY_MMAP, 8, 65536, 3, 200);
	stream_one(DMAREC_MEMORY_MMAP, 8, 65536, 3, 16);
	stream_one(DMAREC_MEMORY_USERPTR, 8, 65536, 3, 200);
	stream_one(DMAREC_MEMORY_MMAP, 3, 4096, 1, 50);
	stream_one(DMAREC_MEMORY_USERPTR, 2, 4096, 64, 70);
	/* large buffers: multi-order compound chunks, long sg lists */
	stream_one(DMAREC_MEMORY_MMAP, 3, 4u << 20, 5, 6);
	stream_one(DMAREC_MEMORY_USERPTR, 2, 4u << 20, 2, 5);
}

/* ------------------------------- overrun ------------------------------ */

/*
 * Rate-limited card, consumer slower than the card: the card loses
 * buffers. Checks seq[k] = seq[k-1] + 1 + gap[k], that losses happened,
 * and that STATS.overruns equals the sum of gap_counts once every lost
 * buffer has been reported by a delivered one.
 */
static void overrun_one(uint32_t memory)
{
	const uint32_t count = 4, payload = 16384, channels = 4;
	const u64 rate = (u64)payload * 200;	/* 5 ms per buffer */
	const u64 period = 5000000;
	u64 t_on = 0, last_ts = 0;
	struct dmarec_buffer b;
	struct dmarec_stats st;
	struct ring r;
	u64 sum_gap = 0, last_seq = 0, n_deq = 0, n_ovr_bufs = 0;
	bool first = true, first_ts = true, exact = false;
	int fd = dev_open(0);
	unsigned int n;
	uint32_t i;
	char what[64];

	snprintf(what, sizeof(what), "overrun %s", mem_name(memory));
	CHECK_OK(sim_config(fd, channels, rate));
	if (ring_open(&r, fd, memory, count, payload))
		goto out;
	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	t_on = now_ns();
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_ERR(sim_config(fd, 1, 0), EBUSY);

	/* slow phase + fast phase; the fast phase requeues at once */
	for (n = 0; n < 400; n++) {
		bool slow = n < 30;

		if (dqbuf(fd, &b)) {
			check(false, "%s: DQBUF: %s", what, strerror(errno));
			break;
		}
		n_deq++;
		verify_buffer(&r, &b, channels, what);
		if (first)
			check(b.card_seq == b.gap_count, "%s: first seq %" "llu"
			      " gap %" "llu", what, b.card_seq, b.gap_count);
		else
			check(b.card_seq == last_seq + 1 + b.gap_count,
			      "%s: seq %" "llu" " after %" "llu" " gap %" "llu",
			      what, b.card_seq, last_seq, b.gap_count);
		first = false;
		/*
		 * The card's clock is its sample counter: buffer s starts at
		 * start + s * period exactly (start >= t_on), and is never
		 * delivered before its fill ended (start + (s + 1) * period).
		 */
		check(b.card_timestamp_ns >= t_on + b.card_seq * period &&
		      now_ns() >= b.card_timestamp_ns + period,
		      "%s: seq %llu stamped %llu ns after STREAMON, delivered before its fill ended",
		      what, b.card_seq, b.card_timestamp_ns - t_on);
		check(first_ts || b.card_timestamp_ns - last_ts ==
		      (b.card_seq - last_seq) * period,
		      "%s: seq %llu at %llu ns after seq %llu: not %llu buffer periods",
		      what, b.card_seq, b.card_timestamp_ns - last_ts, last_seq,
		      b.card_seq - last_seq);
		first_ts = false;
		last_ts = b.card_timestamp_ns;
		last_seq = b.card_seq;
		sum_gap += b.gap_count;
		n_ovr_bufs += b.gap_count > 0;
		if (slow)
			sleep_ms(25);
		CHECK_OK(qbuf(fd, b.index));
		if (slow)
			continue;
		/*
		 * Exact accounting holds when every filled buffer has been
		 * dequeued and no loss is pending after the last one.
		 */
		st = stats(fd);
		if (st.filled == n_deq && st.filled + st.overruns == last_seq + 1) {
			check(st.overruns == sum_gap,
			      "%s: stats.overruns %" "llu" " != sum gap %" "llu",
			      what, st.overruns, sum_gap);
			exact = true;
			break;
		}
	}
	check(exact, "%s: never reached a consistent stats snapshot", what);
	/* not much slower either: losses keep card_seq on the clock */
	check((last_seq + 1) * period * 2 >= last_ts - t_on,
	      "%s: %llu buffers in %llu ns, period %llu", what, last_seq + 1,
	      last_ts - t_on, period);
	check(sum_gap > 0 && n_ovr_bufs > 0, "%s: no overrun seen", what);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	st = stats(fd);
	check(st.overruns >= sum_gap, "%s: overruns after STREAMOFF", what);
	note("%s: %" "llu" " buffers dequeued, %" "llu" " with gaps, sum gap %"
	     "llu" ", stats overruns %" "llu" " filled %" "llu", what, n_deq,
	     n_ovr_bufs, sum_gap, st.overruns, st.filled);
	ring_close(&r);
out:
	CHECK_OK(sim_config(fd, 1, 0));
	close(fd);
}

/* Rate 0 and nothing queued: the card waits, no overrun. */
static void no_overrun_when_unlimited(void)
{
	struct dmarec_buffer b;
	struct ring r;
	int fd = dev_open(0);

	CHECK_OK(sim_config(fd, 2, 0));
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096))
		goto out;
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	sleep_ms(100);
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(dqbuf(fd, &b));
	check(b.card_seq == 0 && b.gap_count == 0 && b.index == 1,
	      "unlimited: seq %" "llu" " gap %" "llu", b.card_seq,
	      b.gap_count);
	check(stats(fd).overruns == 0, "unlimited: overruns");
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
out:
	close(fd);
}

static void test_overrun(void)
{
	overrun_one(DMAREC_MEMORY_MMAP);
	overrun_one(DMAREC_MEMORY_USERPTR);
	no_overrun_when_unlimited();
}

static void test_memlock(void);

/* ------------------------------- errors ------------------------------- */

static void *dq_thread(void *arg)
{
	struct dmarec_buffer b;
	long r;

	r = dqbuf(*(int *)arg, &b) ? errno : 0;
	return (void *)r;
}

/* A DQBUF whose answer cannot be written keeps the buffer for the next. */
static void dqbuf_efault_keeps_buffer(void)
{
	struct dmarec_buffer b;
	struct ring r;
	int fd = dev_open(0), i;
	void *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK_OK(sim_config(fd, 1, 0));
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096))
		goto out;
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	for (i = 0; i < 1000 && stats(fd).filled < 2; i++)
		sleep_ms(1);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_DQBUF, ro), EFAULT);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_DQBUF, NULL), EFAULT);
	/* a lost buffer must fail here, not hang the test */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	CHECK_OK(dqbuf(fd, &b));
	check(b.index == 0 && b.card_seq == 0, "DQBUF after EFAULT: index %u seq %"
	      "llu (the first buffer was lost)", b.index, b.card_seq);
	verify_buffer(&r, &b, 1, "dqbuf efault");
	CHECK_OK(dqbuf(fd, &b));
	check(b.card_seq == 1, "second DQBUF seq %" "llu", b.card_seq);
	check(stats(fd).dequeued == 2, "dequeued %" "llu", stats(fd).dequeued);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
out:
	munmap(ro, PAGE);
	close(fd);
}

/*
 * SIM_CONFIG from a file that owns nothing does not carry into another
 * file's ring: SETUP by another file restores the module's defaults. The
 * owner's own settings, made before its SETUP, are kept.
 */
static unsigned long long module_param_ull(const char *name)
{
	char path[96];
	unsigned long long v = ~0ull;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/dmarec/parameters/%s", name);
	f = fopen(path, "r");
	if (!f || fscanf(f, "%llu", &v) != 1)
		check(false, "read %s", path);
	if (f)
		fclose(f);
	return v;
}

static void sim_config_no_carry_over(void)
{
	struct dmarec_caps c0 = {}, c;
	struct dmarec_buffer b;
	struct ring r;
	int fda = dev_open(0), fdb = dev_open(0), i;

	/* the module's defaults */
	c0.channels = module_param_ull("channels");
	c0.rate_bytes_per_s = module_param_ull("rate");
	CHECK_OK(sim_config(fda, c0.channels % 64 + 1, 123456789));
	if (ring_open(&r, fdb, DMAREC_MEMORY_MMAP, 2, 4096))
		goto out;
	CHECK_OK(ioctl(fda, DMAREC_IOC_QUERYCAP, &c));
	check(c.channels == c0.channels && c.rate_bytes_per_s == c0.rate_bytes_per_s,
	      "another file's SIM_CONFIG carried over: channels %u rate %" "llu",
	      c.channels, c.rate_bytes_per_s);
	CHECK_OK(qbuf(fdb, 0));
	CHECK_OK(qbuf(fdb, 1));
	CHECK_OK(ioctl(fdb, DMAREC_IOC_STREAMON));
	for (i = 0; i < 2; i++) {
		CHECK_OK(dqbuf(fdb, &b));
		verify_buffer(&r, &b, c0.channels, "no carry-over");
	}
	CHECK_OK(ioctl(fdb, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
	/* the owner's own settings stay */
	CHECK_OK(sim_config(fdb, 5, 0));
	CHECK_OK(setup(fdb, DMAREC_MEMORY_MMAP, 1, 4096, NULL));
	CHECK_OK(ioctl(fdb, DMAREC_IOC_QUERYCAP, &c));
	check(c.channels == 5, "own SIM_CONFIG lost at SETUP: %u", c.channels);
	CHECK_OK(setup(fdb, 0, 0, 0, NULL));
out:
	close(fda);
	close(fdb);
}

/* voluntary + involuntary context switches of the thread named comm */
static long thread_switches(const char *comm)
{
	char path[64], line[128];
	long total = -1, v;
	FILE *f;
	int pid;

	for (pid = 2; pid < 65536 && total < 0; pid++) {
		snprintf(path, sizeof(path), "/proc/%d/comm", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f) && !strncmp(line, comm, strlen(comm)) &&
		    line[strlen(comm)] == '\n')
			total = 0;
		fclose(f);
		if (total < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
		f = fopen(path, "r");
		if (!f)
			return -1;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
				total += v;
		fclose(f);
	}
	return total;
}

/*
 * A paced card with nothing queued sleeps (no wake-up per period: at 1 us
 * per buffer that was a busy core) and accounts the buffers it missed when
 * a buffer is queued again.
 */
static void sim_sleeps_when_idle(void)
{
	struct dmarec_buffer b;
	struct ring r;
	char comm[32];
	long s0, s1;
	int fd = dev_open(0);

	snprintf(comm, sizeof(comm), "%s-card", strrchr(dev_path, '/') + 1);
	CHECK_OK(sim_config(fd, 1, 4096ull * 1000000000ull));	/* 1 us per buffer */
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096))
		goto out;
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	sleep_ms(50);
	s0 = thread_switches(comm);
	sleep_ms(500);
	s1 = thread_switches(comm);
	check(s0 >= 0 && s1 - s0 <= 5, "idle %s: %ld context switches in 500 ms",
	      comm, s1 - s0);
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(dqbuf(fd, &b));
	verify_buffer(&r, &b, 1, "idle card");
	check(b.gap_count > 1000 && b.card_seq == b.gap_count,
	      "losses while idle: seq %" "llu" " gap %" "llu", b.card_seq,
	      b.gap_count);
	check(stats(fd).overruns == b.gap_count, "overruns %" "llu" " gap %" "llu",
	      stats(fd).overruns, b.gap_count);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
	note("idle card: %ld context switches in 500 ms, %" "llu" " losses accounted",
	     s1 - s0, b.gap_count);
out:
	CHECK_OK(sim_config(fd, 1, 0));
	close(fd);
}

static void test_errors(void)
{
	struct dmarec_setup s;
	struct dmarec_buffer b;
	struct dmarec_userptr u;
	struct dmarec_sim_config c;
	struct ring r;
	int fd = dev_open(0), fd2 = dev_open(0);
	uint8_t *mem;
	long pin0 = vm_pin_kb();

	/* nothing set up */
	CHECK_ERR(qbuf(fd, 0), EINVAL);
	CHECK_ERR(dqbuf(fd, &b), EINVAL);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_STREAMON), EINVAL);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_STREAMOFF), EINVAL);
	CHECK_ERR(ioctl(fd, _IO(DMAREC_IOC_MAGIC, 0x09)), ENOTTY);
	CHECK_ERR(ioctl(fd, _IOR(DMAREC_IOC_MAGIC, 0x00, uint32_t)), ENOTTY);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_QUERYCAP, (void *)8), EFAULT);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0,
		  EINVAL);

	/* SETUP validation */
	CHECK_ERR(setup(fd, 0, 1, 4096, NULL), EINVAL);
	CHECK_ERR(setup(fd, 3, 1, 4096, NULL), EINVAL);
	CHECK_ERR(setup(fd, 1, 1025, 4096, NULL), EINVAL);
	CHECK_ERR(setup(fd, 1, 1, 2048, NULL), EINVAL);
	CHECK_ERR(setup(fd, 1, 1, 12288, NULL), EINVAL);
	CHECK_ERR(setup(fd, 1, 1, 32u << 20, NULL), EINVAL);
	CHECK_ERR(setup(fd, 2, 1, 4097, NULL), EINVAL);
	memset(&s, 0, sizeof(s));
	s.memory = 1; s.buffer_count = 1; s.payload_bytes = 4096; s.flags = 1;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_SETUP, &s), EINVAL);
	s.flags = 0; s.reserved[3] = 1;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_SETUP, &s), EINVAL);
	/* a ring bigger than half of RAM is refused, not OOM */
	CHECK_ERR(setup(fd, 1, 1024, 16u << 20, NULL), ENOMEM);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_SETUP, (void *)1), EFAULT);

	/* SIM_CONFIG validation */
	CHECK_ERR(sim_config(fd, 0, 0), EINVAL);
	CHECK_ERR(sim_config(fd, 65, 0), EINVAL);
	memset(&c, 0, sizeof(c));
	c.channels = 1; c.flags = 2;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_SIM_CONFIG, &c), EINVAL);
	c.flags = 0; c.reserved[1] = 9;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_SIM_CONFIG, &c), EINVAL);

	/* USERPTR attach validation */
	CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 4, 8192, &s));
	check(s.buffer_stride_bytes == 4096 + 8192 && s.mmap_size_bytes == 0,
	      "userptr setup outs");
	mem = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_ERR(setup(fd2, DMAREC_MEMORY_MMAP, 1, 4096, NULL), EBUSY);
	CHECK_ERR(attach(fd2, 0, mem, 8192), EBUSY);
	CHECK_ERR(attach(fd, 4, mem, 8192), EINVAL);
	CHECK_ERR(attach(fd, 0xffffffffu, mem, 8192), EINVAL);
	CHECK_ERR(attach(fd, 0, mem + 1, 8192), EINVAL);
	CHECK_ERR(attach(fd, 0, mem + 2048, 8192), EINVAL);
	CHECK_ERR(attach(fd, 0, mem, 4096), EINVAL);
	CHECK_ERR(attach(fd, 0, mem, 8192 + 4096), EINVAL);
	CHECK_ERR(attach(fd, 0, NULL, 8192), EINVAL);
	/* 64-bit addresses also from a 32-bit process (the field is __u64) */
	CHECK_ERR(attach_u64(fd, 0, 0xfffffffffffff000ull, 8192), EINVAL);
	CHECK_ERR(attach_u64(fd, 0, 0xffff888000000000ull, 8192), EFAULT);
	CHECK_ERR(attach_u64(fd, 0, 0x7ffffffff000ull, 8192), EFAULT);
	memset(&u, 0, sizeof(u));
	u.payload_addr = (uintptr_t)mem; u.payload_bytes = 8192; u.flags = 1;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_ATTACH_USERPTR, &u), EINVAL);
	u.flags = 0; u.reserved[0] = 1;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_ATTACH_USERPTR, &u), EINVAL);
	{
		/* read-only memory cannot be pinned for writing */
		void *ro = mmap(NULL, 2 * PAGE, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		CHECK_ERR(attach(fd, 0, ro, 8192), EFAULT);
		munmap(ro, 2 * PAGE);
	}
	{
		/* half mapped range: pins are dropped again */
		uint8_t *h = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		munmap(h + PAGE, PAGE);
		CHECK_ERR(attach(fd, 0, h, 8192), EFAULT);
		munmap(h, PAGE);
	}
	check(vm_pin_kb() == pin0, "VmPin after failed attaches %ld", vm_pin_kb());
	CHECK_OK(attach(fd, 0, mem, 8192));
	check(vm_pin_kb() == pin0 + 8, "VmPin after attach %ld", vm_pin_kb());
	CHECK_ERR(attach(fd, 0, mem + 2 * PAGE, 8192), EBUSY);
	CHECK_OK(attach(fd, 1, mem + 2 * PAGE, 8192));
	/* unattached buffer cannot be queued */
	CHECK_ERR(qbuf(fd, 2), EINVAL);
	CHECK_ERR(qbuf(fd, 4), EINVAL);
	CHECK_ERR(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0,
		  EINVAL);
	memset(&b, 0, sizeof(b));
	b.index = 0; b.flags = 2;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_QBUF, &b), EINVAL);
	b.flags = 0; b.reserved[1] = 1;
	CHECK_ERR(ioctl(fd, DMAREC_IOC_QBUF, &b), EINVAL);
	CHECK_ERR(qbuf(fd2, 0), EBUSY);
	CHECK_ERR(ioctl(fd2, DMAREC_IOC_STREAMON), EBUSY);
	CHECK_ERR(sim_config(fd2, 2, 0), EBUSY);

	/* streaming: config/setup/attach refused, DQBUF semantics */
	CHECK_OK(sim_config(fd, 1, 0));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_ERR(ioctl(fd, DMAREC_IOC_STREAMON), EBUSY);
	CHECK_ERR(attach(fd, 2, mem + 4 * PAGE, 8192), EBUSY);
	CHECK_ERR(setup(fd, 0, 0, 0, NULL), EBUSY);
	CHECK_ERR(setup(fd, 1, 2, 4096, NULL), EBUSY);
	CHECK_ERR(sim_config(fd, 2, 0), EBUSY);
	{
		int fdn = dev_open(O_NONBLOCK);

		CHECK_ERR(dqbuf(fdn, &b), EBUSY);	/* not the owner */
		close(fdn);
	}
	{
		int fl = fcntl(fd, F_GETFL);

		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		CHECK_ERR(dqbuf(fd, &b), EAGAIN);
		fcntl(fd, F_SETFL, fl);
	}
	{
		/* a blocked DQBUF is woken by STREAMOFF with EPIPE */
		pthread_t t;
		void *res;

		pthread_create(&t, NULL, dq_thread, &fd);
		sleep_ms(200);
		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
		pthread_join(t, &res);
		check((long)res == EPIPE, "blocked DQBUF woke with %ld", (long)res);
	}
	/* QBUF of a filled-not-dequeued buffer */
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(qbuf(fd, 0));
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		check(poll(&p, 1, 10000) == 1, "poll filled");
	}
	CHECK_ERR(qbuf(fd, 0), EINVAL);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));	/* idempotent */
	CHECK_OK(qbuf(fd, 0));		/* returned to userspace */
	CHECK_OK(qbuf(fd, 1));		/* queued before STREAMON ... */
	CHECK_OK(setup(fd, 0, 0, 0, NULL));	/* ... and torn down */
	check(vm_pin_kb() == pin0, "VmPin after teardown %ld", vm_pin_kb());
	CHECK_ERR(qbuf(fd, 0), EINVAL);
	/* now fd2 may own the card */
	CHECK_OK(setup(fd2, DMAREC_MEMORY_MMAP, 1, 4096, NULL));
	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 1, 4096, NULL), EBUSY);
	close(fd2);	/* releasing the owner frees the card */
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 1, 4096, NULL));
	/* re-SETUP by the owner replaces the ring */
	if (!ring_open(&r, fd, DMAREC_MEMORY_USERPTR, 2, 4096)) {
		check(vm_pin_kb() == pin0 + 8, "VmPin ring %ld", vm_pin_kb());
		ring_close(&r);
	}
	munmap(mem, 8 * PAGE);
	close(fd);
	test_memlock();
	dqbuf_efault_keeps_buffer();
	sim_config_no_carry_over();
	sim_sleeps_when_idle();
}

/*
 * USERPTR pins are charged to RLIMIT_MEMLOCK like RDMA/io_uring pins
 * (unless CAP_IPC_LOCK). Runs in a child that drops CAP_IPC_LOCK.
 */
static void memlock_child(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	struct rlimit rl = { 64 << 10, 64 << 10 };
	int fd = dev_open(0);
	uint8_t *mem;

	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d)) {
		check(false, "memlock: capget: %s", strerror(errno));
		_exit(1);
	}
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	if (syscall(SYS_capset, &h, d) || setrlimit(RLIMIT_MEMLOCK, &rl)) {
		check(false, "memlock: drop CAP_IPC_LOCK / setrlimit: %s",
		      strerror(errno));
		_exit(1);
	}
	mem = mmap(NULL, 4 * 32768, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 4, 32768, NULL));
	CHECK_OK(attach(fd, 0, mem, 32768));
	CHECK_OK(attach(fd, 1, mem + 32768, 32768));
	CHECK_ERR(attach(fd, 2, mem + 65536, 32768), ENOMEM);
	check(vm_pin_kb() == 64, "memlock: VmPin %ld", vm_pin_kb());
	CHECK_OK(setup(fd, 0, 0, 0, NULL));
	check(vm_pin_kb() == 0, "memlock: VmPin after teardown %ld", vm_pin_kb());
	CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 4, 32768, NULL));
	CHECK_OK(attach(fd, 2, mem + 65536, 32768));
	close(fd);
	_exit(n_fail ? 1 : 0);
}

/*
 * MMAP rings are charged to the user's locked memory (RLIMIT_MEMLOCK) as
 * io_uring charges its rings: a non-root user (nobody, no capabilities)
 * with a 64 KiB limit gets one 4+32 KiB buffer, not two, over one or two
 * files; teardown returns the charge.
 */
static void memlock_mmap_child(void)
{
	struct rlimit rl = { 64 << 10, 64 << 10 };
	int fd = dev_open(0), fd2 = dev_open(0);

	if (setrlimit(RLIMIT_MEMLOCK, &rl) || setresgid(65534, 65534, 65534) ||
	    setresuid(65534, 65534, 65534)) {
		check(false, "memlock mmap: setuid nobody: %s", strerror(errno));
		_exit(1);
	}
	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 2, 32768, NULL), ENOMEM);
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 1, 32768, NULL));
	CHECK_OK(setup(fd, 0, 0, 0, NULL));
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 1, 32768, NULL));
	/* the same user on another file (the card is busy: a second ring
	 * would need a second card; re-setup on fd must first uncharge) */
	CHECK_ERR(setup(fd2, DMAREC_MEMORY_MMAP, 1, 32768, NULL), EBUSY);
	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 2, 32768, NULL), ENOMEM);
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 1, 32768, NULL));
	close(fd);
	close(fd2);
	_exit(n_fail ? 1 : 0);
}

static void test_memlock(void)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		memlock_child();
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "memlock child status %#x", status);
	pid = fork();
	if (pid == 0)
		memlock_mmap_child();
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "memlock mmap child status %#x", status);
}

/* -------------------------------- mmap -------------------------------- */

static bool map_fails(int fd, size_t len, off_t off, int flags, int want)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, off);

	if (p != MAP_FAILED) {
		munmap(p, len);
		return false;
	}
	return errno == want;
}

/*
 * 4 MiB payloads (order-9 compound chunks): every page keeps its identity
 * across MADV_DONTNEED and refault, through the whole ring and through a
 * second mapping at another offset, and the card's data is seen through
 * refaulted pages.
 */
static void mmap_refault_large(void)
{
	const uint32_t payload = 4u << 20, count = 2;
	struct dmarec_buffer b;
	struct ring r;
	size_t k, npages, bad = 0;
	uint8_t *second;
	int fd = dev_open(0);

	CHECK_OK(sim_config(fd, 1, 0));
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, count, payload))
		goto out;
	npages = r.size / PAGE;
	for (k = 0; k < npages; k++)
		*(u64 *)(r.base + k * PAGE) = k ^ 0xfeedface00000000ull;
	CHECK_OK(madvise(r.base, r.size, MADV_DONTNEED));
	/* and a 2 MiB-aligned piece in the middle of payload 0 again */
	CHECK_OK(madvise(r.base + DMAREC_HEADER_BYTES + (1u << 20), 2u << 20,
			 MADV_DONTNEED));
	for (k = 0; k < npages; k++)
		bad += *(u64 *)(r.base + k * PAGE) != (k ^ 0xfeedface00000000ull);
	check(bad == 0, "refault 4 MiB payloads: %zu of %zu pages moved", bad,
	      npages);
	second = mmap(NULL, r.stride, PROT_READ, MAP_SHARED, fd, r.stride);
	if (second != MAP_FAILED) {
		for (k = 0, bad = 0; k < r.stride / PAGE; k++)
			bad += *(u64 *)(second + k * PAGE) !=
			       ((k + r.stride / PAGE) ^ 0xfeedface00000000ull);
		check(bad == 0, "second mapping of buffer 1: %zu pages differ",
		      bad);
		munmap(second, r.stride);
	} else {
		check(false, "mmap buffer 1: %s", strerror(errno));
	}
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(dqbuf(fd, &b));
	verify_buffer(&r, &b, 1, "refault 4 MiB");
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
out:
	close(fd);
}

static void test_mmap(void)
{
	const uint32_t count = 4, payload = 16384;
	const size_t stride = 4096 + payload, size = stride * count;
	struct dmarec_buffer b;
	struct ring r;
	int fd = dev_open(0), fd2 = dev_open(0);
	uint8_t *p, *q;

	CHECK_OK(sim_config(fd, 1, 0));
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, count, payload))
		goto out;
	check(map_fails(fd, size + PAGE, 0, MAP_SHARED, EINVAL), "len too big");
	check(map_fails(fd, PAGE, size, MAP_SHARED, EINVAL), "offset at end");
	check(map_fails(fd, 2 * PAGE, size - PAGE, MAP_SHARED, EINVAL),
	      "offset+len past end");
	check(map_fails(fd, PAGE, 0x7ffffffffffff000ll, MAP_SHARED, EINVAL),
	      "huge offset");
	check(map_fails(fd, PAGE, 100, MAP_SHARED, EINVAL), "unaligned offset");
	check(map_fails(fd, PAGE, 0, MAP_PRIVATE, EINVAL), "MAP_PRIVATE");
	check(map_fails(fd2, PAGE, 0, MAP_SHARED, EBUSY), "non-owner mmap");

	/* buffer 2 alone, at offset 2*stride */
	p = mmap(NULL, stride, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 2 * stride);
	check(p != MAP_FAILED, "map buffer 2: %s", strerror(errno));
	if (p != MAP_FAILED) {
		p[0] = 0x5a;
		check(ring_buf(&r, 2)[0] == 0x5a, "buffer 2 mapping aliases ring");
		/* mremap cannot grow it (VM_DONTEXPAND) */
		q = mremap(p, stride, stride + PAGE, MREMAP_MAYMOVE);
		check(q == MAP_FAILED, "mremap grow succeeded");
		/* MADV_DONTNEED zaps the PTEs; the fault handler restores */
		CHECK_OK(madvise(p, stride, MADV_DONTNEED));
		check(p[0] == 0x5a, "after MADV_DONTNEED %#x", p[0]);
		CHECK_OK(madvise(p, stride, MADV_DONTNEED));
		p[PAGE + 1] = 0x6b;	/* write fault through ->fault */
		check(ring_buf(&r, 2)[PAGE + 1] == 0x6b, "write after zap");
		/* unmap the middle: the VMA splits, both halves count */
		CHECK_OK(munmap(p + PAGE, PAGE));
		munmap(r.base, r.size);
		r.base = NULL;
		CHECK_ERR(setup(fd, 0, 0, 0, NULL), EBUSY);
		CHECK_OK(munmap(p, PAGE));
		CHECK_ERR(setup(fd, 0, 0, 0, NULL), EBUSY);
		CHECK_OK(munmap(p + 2 * PAGE, stride - 2 * PAGE));
	}
	CHECK_OK(setup(fd, 0, 0, 0, NULL));

	/* munmap early, while streaming: the card keeps working */
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, count, payload))
		goto out;
	for (uint32_t i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	munmap(r.base, r.size);
	r.base = NULL;
	for (int i = 0; i < 20; i++) {
		CHECK_OK(dqbuf(fd, &b));
		CHECK_OK(qbuf(fd, b.index));
	}
	/* map again while streaming and verify a fresh buffer */
	r.base = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	check(r.base != MAP_FAILED, "remap while streaming");
	if (r.base != MAP_FAILED) {
		CHECK_OK(dqbuf(fd, &b));
		verify_buffer(&r, &b, 1, "remapped");
	} else {
		r.base = NULL;
	}
	/* fork: the child inherits the mapping; teardown waits for it */
	{
		pid_t pid = fork();

		if (pid == 0) {
			sleep_ms(300);
			_exit(0);
		}
		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
		if (r.base)
			munmap(r.base, r.size);
		r.base = NULL;
		CHECK_ERR(setup(fd, 0, 0, 0, NULL), EBUSY);
		waitpid(pid, NULL, 0);
		CHECK_OK(setup(fd, 0, 0, 0, NULL));
	}
out:
	close(fd2);
	close(fd);
	mmap_refault_large();
}

/* ------------------------------ lifetime ------------------------------ */

/* Child: own the card, stream, tell the parent, keep streaming. */
static void child_stream(int wfd, uint32_t memory, bool share_map)
{
	struct dmarec_buffer b;
	struct ring r;
	int fd = dev_open(0);

	sim_config(fd, 2, 0);
	if (ring_open(&r, fd, memory, 4, 65536))
		_exit(2);
	for (uint32_t i = 0; i < 4; i++)
		qbuf(fd, i);
	if (ioctl(fd, DMAREC_IOC_STREAMON))
		_exit(3);
	(void)share_map;
	if (write(wfd, "R", 1) != 1)
		_exit(4);
	for (;;) {
		if (dqbuf(fd, &b) == 0)
			qbuf(fd, b.index);
	}
}

static void kill_child_while_streaming(uint32_t memory)
{
	int pfd[2], fd;
	char c;
	pid_t pid;
	int status;

	if (pipe(pfd))
		return;
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		child_stream(pfd[1], memory, false);
	}
	close(pfd[1]);
	check(read(pfd[0], &c, 1) == 1, "child %s did not start", mem_name(memory));
	close(pfd[0]);
	fd = dev_open(0);
	/* the child owns the card */
	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 1, 4096, NULL), EBUSY);
	sleep_ms(100);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	      "child status %#x", status);
	/* its release() stopped the card and dropped pins and pages */
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 2, 4096, NULL));
	CHECK_OK(setup(fd, 0, 0, 0, NULL));
	close(fd);
}

struct blocked {
	int fd;
	bool poll;			/* poll() instead of DQBUF */
	volatile int done;
	int err;			/* DQBUF errno, or poll revents */
};

static void on_sigusr1(int sig) { (void)sig; }

/* One blocking DQBUF or poll(-1) on b->fd. */
static void *blocked_thread(void *arg)
{
	struct blocked *b = arg;

	if (b->poll) {
		struct pollfd p = { .fd = b->fd, .events = POLLIN };

		b->err = poll(&p, 1, -1) == 1 ? p.revents : -errno;
	} else {
		struct dmarec_buffer buf;

		b->err = dqbuf(b->fd, &buf) ? errno : 0;
	}
	__atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* Wait (bounded: a lost wake-up must not hang the test) for it to return. */
static bool blocked_wait(struct blocked *b)
{
	int k;

	for (k = 0; k < 1000 && !__atomic_load_n(&b->done, __ATOMIC_SEQ_CST); k++)
		sleep_ms(10);
	return b->done;
}

/* Interrupt a blocked thread (SIGUSR1 without SA_RESTART) and join it. */
static void blocked_interrupt(pthread_t t, struct blocked *b)
{
	int k;

	for (k = 0; k < 500 && !__atomic_load_n(&b->done, __ATOMIC_SEQ_CST); k++) {
		pthread_kill(t, SIGUSR1);
		sleep_ms(10);
	}
	pthread_join(t, NULL);
}

/*
 * Threads blocked in DQBUF and poll() while the ring goes away under them:
 * STREAMOFF wakes both (EPIPE, POLLERR), a poll after the teardown answers
 * POLLERR at once. Then close() from a third thread while both block
 * again: the blocked calls keep the file, so the ring lives on (the driver
 * still holds its pages) until they are interrupted; then release frees
 * everything.
 */
static void close_vs_blocked(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	const unsigned long long held0 = module_param_ull("pages_held");
	struct blocked dq = { 0 }, pl = { .poll = true };
	struct pollfd p;
	pthread_t tdq, tpl;
	struct ring r;
	int fd = dev_open(0);

	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART: EINTR */
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096)) {
		close(fd);
		return;
	}
	dq.fd = pl.fd = fd;
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));	/* nothing queued */
	pthread_create(&tdq, NULL, blocked_thread, &dq);
	pthread_create(&tpl, NULL, blocked_thread, &pl);
	sleep_ms(200);
	check(!dq.done && !pl.done, "blocked: DQBUF or poll returned early");
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	check(blocked_wait(&dq) && blocked_wait(&pl),
	      "STREAMOFF did not wake a blocked DQBUF (%d) or poll (%d)",
	      dq.done, pl.done);
	blocked_interrupt(tdq, &dq);
	blocked_interrupt(tpl, &pl);
	check(dq.err == EPIPE, "blocked DQBUF woke by STREAMOFF with %d", dq.err);
	check(pl.err > 0 && (pl.err & POLLERR), "blocked poll woke by STREAMOFF with %#x",
	      pl.err);
	munmap(r.base, r.size);
	CHECK_OK(setup(fd, 0, 0, 0, NULL));
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	check(poll(&p, 1, 10000) == 1 && (p.revents & POLLERR),
	      "poll after teardown: revents %#x", p.revents);

	/* close() while DQBUF and poll block on the file */
	CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 2, 4096, NULL));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	dq.done = pl.done = 0;
	pthread_create(&tdq, NULL, blocked_thread, &dq);
	pthread_create(&tpl, NULL, blocked_thread, &pl);
	sleep_ms(200);
	close(fd);
	check(!dq.done && !pl.done, "close woke a blocked DQBUF or poll");
	check(module_param_ull("pages_held") == held0 + 2 * 2,
	      "ring freed under a blocked DQBUF: driver holds %llu pages",
	      module_param_ull("pages_held"));
	blocked_interrupt(tdq, &dq);
	blocked_interrupt(tpl, &pl);
	check(dq.err == EINTR, "blocked DQBUF after close: %d", dq.err);
	check(module_param_ull("pages_held") == held0,
	      "after the last user of a closed file: driver holds %llu pages",
	      module_param_ull("pages_held"));
}

static void test_lifetime(void)
{
	struct dmarec_buffer b;
	struct ring r;
	int fd, i;

	/* close while streaming (MMAP: unmap first, USERPTR: keep memory) */
	for (i = 0; i < 2; i++) {
		uint32_t mem = i ? DMAREC_MEMORY_USERPTR : DMAREC_MEMORY_MMAP;

		fd = dev_open(0);
		CHECK_OK(sim_config(fd, 1, 0));
		if (ring_open(&r, fd, mem, 4, 8192) == 0) {
			for (uint32_t k = 0; k < 4; k++)
				CHECK_OK(qbuf(fd, k));
			CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
			CHECK_OK(dqbuf(fd, &b));
			if (mem == DMAREC_MEMORY_MMAP)
				munmap(r.base, r.size);
		}
		close(fd);
		if (mem == DMAREC_MEMORY_USERPTR)
			munmap(r.base, r.size);
	}
	/* closing the fd while the mapping lives: release waits for munmap */
	fd = dev_open(0);
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096) == 0) {
		int fd2;

		CHECK_OK(qbuf(fd, 0));
		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
		close(fd);
		fd2 = dev_open(0);
		CHECK_ERR(setup(fd2, DMAREC_MEMORY_MMAP, 1, 4096, NULL), EBUSY);
		r.base[0] = 1;	/* still mapped and usable */
		munmap(r.base, r.size);
		CHECK_OK(setup(fd2, DMAREC_MEMORY_MMAP, 1, 4096, NULL));
		close(fd2);
	} else {
		close(fd);
	}
	/* pinned user memory unmapped by the process while streaming */
	fd = dev_open(0);
	if (ring_open(&r, fd, DMAREC_MEMORY_USERPTR, 4, 8192) == 0) {
		for (uint32_t k = 0; k < 4; k++)
			CHECK_OK(qbuf(fd, k));
		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
		munmap(r.base, r.size);
		r.base = NULL;
		for (int k = 0; k < 10; k++) {
			CHECK_OK(dqbuf(fd, &b));
			CHECK_OK(qbuf(fd, b.index));
		}
		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
		ring_close(&r);
	}
	close(fd);

	kill_child_while_streaming(DMAREC_MEMORY_USERPTR);
	kill_child_while_streaming(DMAREC_MEMORY_MMAP);
	close_vs_blocked();
}

/* -------------------------------- fuzz -------------------------------- */

static __thread u64 rng_state = 0x1234567;

static u64 rnd(void)
{
	return splitmix64(rng_state++);
}

static u64 interesting(void)
{
	static const u64 v[] = {
		0, 1, 2, 3, 4, 7, 8, 64, 65, 1023, 1024, 1025, 4095, 4096,
		4097, 8192, 65536, 1u << 20, 16u << 20, (16u << 20) + 1,
		32u << 20, 0x7fffffff, 0x80000000u, 0xffffffffu,
		0x100000000ull, 0x7fffffffffffffffull, 0xffffffffffffffffull,
		0xffff888000000000ull, 0x7ffffffff000ull,
	};

	if (rnd() % 4 == 0)
		return rnd();
	return v[rnd() % (sizeof(v) / sizeof(v[0]))];
}

#define FUZZ_POOL_PAGES 64

static u64 fuzz_small(unsigned int n)
{
	return rnd() % 8 ? rnd() % n : interesting();
}

static u64 fuzz_payload(void)
{
	switch (rnd() % 16) {
	case 0: return interesting();
	case 1: return 16u << 20;
	default: return 4096u << (rnd() % 5);
	}
}

static u64 fuzz_addr(uint8_t *pool)
{
	switch (rnd() % 8) {
	case 0: return interesting();
	case 1: return (uintptr_t)pool + rnd() % (FUZZ_POOL_PAGES * PAGE);
	default: return (uintptr_t)(pool + (rnd() % (FUZZ_POOL_PAGES - 32)) * PAGE);
	}
}

/* mostly-valid argument for a known command, or random bytes */
static void fuzz_arg(unsigned long cmd, void *arg, size_t len, uint8_t *pool)
{
	u64 *w = arg;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = rnd() % 3 ? interesting() : rnd();
	if (rnd() % 4 == 0)
		return;
	memset(arg, 0, len);
	/* occasionally one stray bit anywhere (flags, reserved, outputs) */
	if (rnd() % 8 == 0)
		((uint8_t *)arg)[rnd() % 64] |= 1u << (rnd() % 8);
	switch (cmd) {
	case DMAREC_IOC_SETUP: {
		struct dmarec_setup *s = arg;

		s->memory = fuzz_small(3);
		s->buffer_count = fuzz_small(9);
		s->payload_bytes = fuzz_payload();
		if (s->payload_bytes > (1u << 20) && s->buffer_count > 3)
			s->buffer_count = 3;
		break;
	}
	case DMAREC_IOC_ATTACH_USERPTR: {
		struct dmarec_userptr *u = arg;

		u->index = fuzz_small(9);
		u->payload_addr = fuzz_addr(pool);
		u->payload_bytes = fuzz_payload();
		break;
	}
	case DMAREC_IOC_QBUF:
	case DMAREC_IOC_DQBUF: {
		struct dmarec_buffer *b = arg;

		b->index = fuzz_small(9);
		b->flags |= rnd() % 4 ? 0 : (uint32_t)fuzz_small(3);
		break;
	}
	case DMAREC_IOC_SIM_CONFIG: {
		struct dmarec_sim_config *c = arg;

		c->channels = fuzz_small(66);
		c->rate_bytes_per_s = rnd() % 2 ? 0 : rnd() % 2 ?
			(rnd() % 100000) * 4096 : interesting();
		break;
	}
	default:
		break;
	}
}

struct fuzz_worker {
	pthread_t thread;
	u64 seed;
	unsigned long iters;
	int fd, fd2;
	uint8_t *pool;
	unsigned long ok, n_stream_ok, n_dq_ok, per_errno[256];
};

static void *fuzz_worker(void *data)
{
	static const unsigned long cmds[] = {
		DMAREC_IOC_QUERYCAP, DMAREC_IOC_SETUP, DMAREC_IOC_ATTACH_USERPTR,
		DMAREC_IOC_QBUF, DMAREC_IOC_DQBUF, DMAREC_IOC_STREAMON,
		DMAREC_IOC_STREAMOFF, DMAREC_IOC_STATS, DMAREC_IOC_SIM_CONFIG,
	};
	struct fuzz_worker *w = data;
	uint8_t arg[128] __attribute__((aligned(8)));
	unsigned long i;

	rng_state = w->seed;
	for (i = 0; i < w->iters; i++) {
		unsigned long cmd;
		void *a = arg;
		int f = rnd() % 8 ? w->fd : w->fd2;
		long r;

		switch (rnd() % 10) {
		case 0:		/* any number at all */
			cmd = (uint32_t)rnd();
			break;
		case 1:		/* our type, random nr/size/dir */
			cmd = _IOC(rnd() % 4, DMAREC_IOC_MAGIC, rnd() % 16, rnd() % 128);
			break;
		case 2:
		case 3:		/* the stream state machine, more often */
			cmd = rnd() % 2 ? DMAREC_IOC_STREAMON : DMAREC_IOC_DQBUF;
			break;
		default:
			cmd = cmds[rnd() % (sizeof(cmds) / sizeof(cmds[0]))];
		}
		fuzz_arg(cmd, arg, sizeof(arg), w->pool);
		switch (rnd() % 16) {
		case 0:
			a = NULL;
			break;
		case 1:
			a = (void *)0xffff888000000000ull;
			break;
		case 2:
			a = (void *)(uintptr_t)rnd();
			break;
		case 3:		/* straddles the end of the mapping */
			a = w->pool + (FUZZ_POOL_PAGES + 1) * PAGE - 8;
			break;
		default:
			break;
		}
		r = ioctl(f, cmd, a);
		if (r == 0 && cmd == DMAREC_IOC_STREAMON)
			w->n_stream_ok++;
		if (r == 0 && cmd == DMAREC_IOC_DQBUF)
			w->n_dq_ok++;
		if (r == 0)
			w->ok++;
		else
			w->per_errno[errno & 255]++;
		if (rnd() % 64 == 0) {
			/* random mmaps of the ring */
			size_t len = (rnd() % 64 + 1) * PAGE;
			off_t off = (off_t)((rnd() % 64) * PAGE);
			void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
				       rnd() & 1 ? MAP_SHARED : MAP_PRIVATE,
				       f, off);

			if (p != MAP_FAILED) {
				((volatile uint8_t *)p)[0];
				munmap(p, len);
			}
		}
	}
	return NULL;
}

/*
 * Rounds of two threads issuing random ioctls/mmaps on the same two files
 * (so the calls race each other), then both files are closed in whatever
 * state they are in (often streaming with pinned memory) and reopened.
 */
static void edu_stream_one(uint32_t memory, uint32_t count, unsigned int total);

/* a simulated card (SIM_CONFIG works), not a real one like edu */
static bool dev_has_sim(void)
{
	struct dmarec_caps c = {};
	int fd = dev_open(0);

	CHECK_OK(ioctl(fd, DMAREC_IOC_QUERYCAP, &c));
	close(fd);
	return c.caps & DMAREC_CAP_SIM;
}

static void test_fuzz(unsigned long iters)
{
	enum { THREADS = 2, ROUNDS = 10 };
	struct fuzz_worker w[THREADS];
	uint8_t *pool = mmap(NULL, (FUZZ_POOL_PAGES + 1) * PAGE,
			     PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	unsigned long i, ok = 0, per_errno[256] = { 0 };
	unsigned long n_stream_ok = 0, n_dq_ok = 0;
	char *env = getenv("DMAREC_FUZZ_SEED");
	u64 seed = env ? strtoull(env, NULL, 0) : 0x1234567;
	bool sim = dev_has_sim();
	int t, round;

	note("fuzz: seed %#llx, %lu iterations x %d threads", seed, iters,
	     THREADS);
	memset(w, 0, sizeof(w));
	for (round = 0; round < ROUNDS; round++) {
		int fd = dev_open(O_NONBLOCK), fd2 = dev_open(O_NONBLOCK);

		for (t = 0; t < THREADS; t++) {
			w[t].seed = seed + (u64)(round * THREADS + t) * 0x100000000ull;
			w[t].iters = iters / ROUNDS;
			w[t].fd = fd;
			w[t].fd2 = fd2;
			w[t].pool = pool;
			pthread_create(&w[t].thread, NULL, fuzz_worker, &w[t]);
		}
		for (t = 0; t < THREADS; t++)
			pthread_join(w[t].thread, NULL);
		close(fd);
		close(fd2);
	}
	for (t = 0; t < THREADS; t++) {
		ok += w[t].ok;
		n_stream_ok += w[t].n_stream_ok;
		n_dq_ok += w[t].n_dq_ok;
		for (i = 0; i < 256; i++)
			per_errno[i] += w[t].per_errno[i];
	}
	note("fuzz: STREAMON ok %lu, DQBUF ok %lu", n_stream_ok, n_dq_ok);
	note("fuzz: %lu ok, EINVAL %lu EBUSY %lu ENOTTY %lu EFAULT %lu EAGAIN %lu"
	     " EPIPE %lu ENOMEM %lu", ok, per_errno[EINVAL], per_errno[EBUSY],
	     per_errno[ENOTTY], per_errno[EFAULT], per_errno[EAGAIN],
	     per_errno[EPIPE], per_errno[ENOMEM]);
	check(per_errno[ENOTTY] > 0 && per_errno[EINVAL] > 0 && ok > 0 &&
	      per_errno[EBUSY] > 0 && per_errno[EAGAIN] > 0 &&
	      per_errno[EPIPE] > 0 && n_stream_ok > 0,
	      "fuzz did not reach the handlers (streamon ok %lu, dqbuf ok %lu)",
	      n_stream_ok, n_dq_ok);
	for (i = 0; i < 256; i++) {
		if (i == EINVAL || i == EBUSY || i == ENOTTY || i == EFAULT ||
		    i == EAGAIN || i == EPIPE || i == ENOMEM)
			continue;
		if (i == EOPNOTSUPP && !sim)	/* SIM_CONFIG of a real card */
			continue;
		check(per_errno[i] == 0, "fuzz: unexpected errno %lu (%s) x%lu",
		      i, strerror((int)i), per_errno[i]);
	}
	munmap(pool, (FUZZ_POOL_PAGES + 1) * PAGE);
	/* the device must still work */
	if (!sim) {
		edu_stream_one(DMAREC_MEMORY_MMAP, 2, 4);
		edu_stream_one(DMAREC_MEMORY_USERPTR, 2, 4);
		return;
	}
	stream_one(DMAREC_MEMORY_MMAP, 2, 8192, 2, 10);
	stream_one(DMAREC_MEMORY_USERPTR, 2, 8192, 2, 10);
}

/* -------------------------------- uring ------------------------------- */

struct uring {
	int fd;
	void *sq, *cq;
	size_t sq_sz, cq_sz, sqes_sz;
	struct io_uring_sqe *sqes;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
};

static int uring_init(struct uring *u, unsigned entries)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	memset(u, 0, sizeof(*u));
	u->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
	if (u->fd < 0)
		return -1;
	u->sq_sz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	u->cq_sz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	u->sqes_sz = p.sq_entries * sizeof(struct io_uring_sqe);
	u->sq = mmap(NULL, u->sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED |
		     MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	u->cq = mmap(NULL, u->cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED |
		     MAP_POPULATE, u->fd, IORING_OFF_CQ_RING);
	u->sqes = mmap(NULL, u->sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED |
		       MAP_POPULATE, u->fd, IORING_OFF_SQES);
	if (u->sq == MAP_FAILED || u->cq == MAP_FAILED || u->sqes == MAP_FAILED)
		return -1;
	u->sq_tail = (unsigned *)((char *)u->sq + p.sq_off.tail);
	u->sq_mask = (unsigned *)((char *)u->sq + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)((char *)u->sq + p.sq_off.array);
	u->cq_head = (unsigned *)((char *)u->cq + p.cq_off.head);
	u->cq_tail = (unsigned *)((char *)u->cq + p.cq_off.tail);
	u->cq_mask = (unsigned *)((char *)u->cq + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)((char *)u->cq + p.cq_off.cqes);
	return 0;
}

static void uring_exit(struct uring *u)
{
	munmap(u->sq, u->sq_sz);
	munmap(u->cq, u->cq_sz);
	munmap(u->sqes, u->sqes_sz);
	close(u->fd);
}

/* one WRITE_FIXED/READ_FIXED, waited for; returns cqe res */
static int uring_rw_fixed(struct uring *u, int op, int fd, void *addr,
			  unsigned len, u64 off, unsigned buf_index)
{
	unsigned tail = __atomic_load_n(u->sq_tail, __ATOMIC_RELAXED);
	unsigned idx = tail & *u->sq_mask, head;
	struct io_uring_sqe *sqe = &u->sqes[idx];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = op;
	sqe->fd = fd;
	sqe->addr = (uintptr_t)addr;
	sqe->len = len;
	sqe->off = off;
	sqe->buf_index = buf_index;
	sqe->user_data = 42;
	u->sq_array[idx] = idx;
	__atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, u->fd, 1, 1, IORING_ENTER_GETEVENTS,
		    NULL, 0) < 0)
		return -errno;
	head = __atomic_load_n(u->cq_head, __ATOMIC_RELAXED);
	if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE))
		return -EIO;
	res = u->cqes[head & *u->cq_mask].res;
	__atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
	return res;
}

/*
 * Register the ring's buffers (header+payload each) with io_uring, then
 * for several dequeued buffers: write a slot header into the header area,
 * O_DIRECT WRITE_FIXED header+payload to the disk, read it back and
 * compare.
 */
static void uring_one(uint32_t memory, const char *disk, const char *expect_reg)
{
	const uint32_t count = 4, payload = 65536;
	struct iovec iov[4];
	struct dmarec_buffer b;
	struct uring u;
	struct ring r;
	int fd = dev_open(0), dfd, reg, k;
	uint8_t *rb = NULL;
	char what[64];

	snprintf(what, sizeof(what), "uring %s", mem_name(memory));
	dfd = open(disk, O_RDWR | O_DIRECT | O_CLOEXEC);
	check(dfd >= 0, "%s: open %s: %s", what, disk, strerror(errno));
	if (dfd < 0)
		goto out_fd;
	CHECK_OK(sim_config(fd, 2, 0));
	if (ring_open(&r, fd, memory, count, payload))
		goto out_disk;
	if (uring_init(&u, 8)) {
		check(false, "%s: io_uring_setup: %s", what, strerror(errno));
		goto out_ring;
	}
	for (uint32_t i = 0; i < count; i++) {
		iov[i].iov_base = ring_buf(&r, i);
		iov[i].iov_len = r.stride;
	}
	reg = (int)syscall(__NR_io_uring_register, u.fd,
			   IORING_REGISTER_BUFFERS, iov, count);
	reg = reg < 0 ? errno : 0;
	note("%s: IORING_REGISTER_BUFFERS of %u x %" "llu" " bytes: %s",
	     what, count, r.stride, reg ? strerrorname_np(reg) : "OK");
	if (strcmp(expect_reg, "ok") == 0)
		check(reg == 0, "%s: register: %s, expected OK", what,
		      strerror(reg));
	else
		check(reg == EOPNOTSUPP, "%s: register: %s, expected EOPNOTSUPP",
		      what, reg ? strerror(reg) : "OK");
	if (reg)
		goto out_uring;

	if (posix_memalign((void **)&rb, 4096, r.stride))
		goto out_uring;
	for (uint32_t i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	for (k = 0; k < 16; k++) {
		uint8_t *buf;
		u64 off;
		int res;

		if (dqbuf(fd, &b)) {
			check(false, "%s: DQBUF: %s", what, strerror(errno));
			break;
		}
		buf = ring_buf(&r, b.index);
		/* slot header written by userspace into the header area */
		memset(buf, 0, DMAREC_HEADER_BYTES);
		snprintf((char *)buf, 64, "DMARECSLOT seq=%" "llu" " ch=%u",
			 b.card_seq, b.channel);
		memcpy(buf + 64, &b, sizeof(b));
		off = (u64)k * r.stride;
		res = uring_rw_fixed(&u, IORING_OP_WRITE_FIXED, dfd, buf,
				     r.stride, off, b.index);
		check(res == (int)r.stride, "%s: WRITE_FIXED res %d (%s)", what,
		      res, res < 0 ? strerror(-res) : "");
		memset(rb, 0, r.stride);
		check(pread(dfd, rb, r.stride, off) == (ssize_t)r.stride,
		      "%s: pread: %s", what, strerror(errno));
		check(memcmp(rb, buf, r.stride) == 0, "%s: read-back differs", what);
		check(pattern_verify(rb + DMAREC_HEADER_BYTES, r.payload,
				     b.card_seq, b.channel) < 0,
		      "%s: pattern on disk", what);
		check(strncmp((char *)rb, "DMARECSLOT", 10) == 0,
		      "%s: header on disk", what);
		/* the write completed: the buffer may go back to the card */
		CHECK_OK(qbuf(fd, b.index));
	}
	{
		/* READ_FIXED back into a registered buffer the user owns */
		int res;

		CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
		memset(ring_buf(&r, 0), 0, r.stride);
		res = uring_rw_fixed(&u, IORING_OP_READ_FIXED, dfd,
				     ring_buf(&r, 0), r.stride, 0, 0);
		check(res == (int)r.stride, "%s: READ_FIXED res %d", what, res);
		pread(dfd, rb, r.stride, 0);
		check(memcmp(rb, ring_buf(&r, 0), r.stride) == 0,
		      "%s: READ_FIXED data", what);
	}
	note("%s: %d O_DIRECT WRITE_FIXED of header+payload verified", what, k);
	if (memory == DMAREC_MEMORY_MMAP) {
		/*
		 * Tear the ring down while io_uring still pins its pages: the
		 * pages must outlive the driver's reference.
		 */
		munmap(r.base, r.size);
		r.base = NULL;
		CHECK_OK(setup(fd, 0, 0, 0, NULL));
		uring_exit(&u);
		free(rb);
		close(dfd);
		close(fd);
		return;
	}
out_uring:
	free(rb);
	uring_exit(&u);
out_ring:
	ioctl(fd, DMAREC_IOC_STREAMOFF);
	ring_close(&r);
out_disk:
	close(dfd);
out_fd:
	close(fd);
}

/*
 * FOLL_PIN pages held system-wide now: /proc/vmstat's nr_foll_pin_acquired
 * minus nr_foll_pin_released, after vm.stat_refresh folded the per-cpu
 * deltas, so the figure is exact (no other pinner runs in the guest).
 */
static long long pins_held(void)
{
	long long acq = -1, rel = -1, v;
	char name[64];
	FILE *f;
	int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);

	check(fd >= 0 && write(fd, "1", 1) == 1, "vm.stat_refresh: %s",
	      strerror(errno));
	if (fd >= 0)
		close(fd);
	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", name, &v) == 2) {
		if (!strcmp(name, "nr_foll_pin_acquired"))
			acq = v;
		else if (!strcmp(name, "nr_foll_pin_released"))
			rel = v;
	}
	fclose(f);
	check(acq >= 0 && rel >= 0, "nr_foll_pin_* in /proc/vmstat");
	return acq - rel;
}

/*
 * The registered buffers outlive the ring (and, with rmmod, the driver):
 * io_uring's pins keep the pages, so WRITE_FIXED still writes what the card
 * left there and READ_FIXED lands in the same pages. A page the driver
 * freed under io_uring reads back zeroed (init_on_free=1) or poisoned.
 * Disk layout: [0] the saved buffer written out, [1] data for READ_FIXED,
 * [2] that data written back out of the buffer.
 */
static void uring_io_after(struct uring *u, int dfd, uint8_t *addr,
			   unsigned buf_index, const uint8_t *saved,
			   unsigned len, const char *what)
{
	uint8_t *rb = NULL, *data = NULL;
	int res;

	if (posix_memalign((void **)&rb, 4096, len) ||
	    posix_memalign((void **)&data, 4096, len)) {
		check(false, "%s: posix_memalign", what);
		goto out;
	}
	res = uring_rw_fixed(u, IORING_OP_WRITE_FIXED, dfd, addr, len, 0,
			     buf_index);
	check(res == (int)len, "%s: WRITE_FIXED res %d", what, res);
	check(pread(dfd, rb, len, 0) == (ssize_t)len &&
	      memcmp(rb, saved, len) == 0,
	      "%s: WRITE_FIXED did not write the card's data (page freed?)",
	      what);
	for (unsigned i = 0; i < len; i++)
		data[i] = (uint8_t)(0x5a ^ i ^ (i >> 12));
	check(pwrite(dfd, data, len, len) == (ssize_t)len, "%s: pwrite", what);
	res = uring_rw_fixed(u, IORING_OP_READ_FIXED, dfd, addr, len, len,
			     buf_index);
	check(res == (int)len, "%s: READ_FIXED res %d", what, res);
	res = uring_rw_fixed(u, IORING_OP_WRITE_FIXED, dfd, addr, len,
			     2ull * len, buf_index);
	check(res == (int)len, "%s: WRITE_FIXED after READ_FIXED res %d",
	      what, res);
	check(pread(dfd, rb, len, 2ull * len) == (ssize_t)len &&
	      memcmp(rb, data, len) == 0,
	      "%s: READ_FIXED data did not stay in the buffer", what);
out:
	free(rb);
	free(data);
}

/* a ring of 2 x 64 KiB registered with io_uring, one buffer filled */
static int uring_teardown_one(uint32_t memory, int dfd, bool do_rmmod,
			      const char *expect_reg)
{
	struct dmarec_buffer b;
	struct iovec iov[2];
	struct uring u;
	struct ring r;
	uint8_t *saved = NULL, *addr;
	int fd = dev_open(0), reg;
	char what[64];

	snprintf(what, sizeof(what), "uring after %s %s",
		 do_rmmod ? "rmmod" : "teardown", mem_name(memory));
	CHECK_OK(sim_config(fd, 1, 0));
	if (ring_open(&r, fd, memory, 2, 65536) || uring_init(&u, 4)) {
		check(false, "%s: ring/io_uring setup: %s", what, strerror(errno));
		close(fd);
		return -1;
	}
	for (uint32_t i = 0; i < 2; i++) {
		iov[i].iov_base = ring_buf(&r, i);
		iov[i].iov_len = r.stride;
	}
	reg = (int)syscall(__NR_io_uring_register, u.fd,
			   IORING_REGISTER_BUFFERS, iov, 2) < 0 ? errno : 0;
	check(reg == (strcmp(expect_reg, "ok") ? EOPNOTSUPP : 0),
	      "%s: register: %s, expected %s", what, strerror(reg), expect_reg);
	saved = malloc(r.stride);
	if (reg || !saved)
		goto out;
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(dqbuf(fd, &b));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	addr = ring_buf(&r, b.index);
	memset(addr, 0xc3, DMAREC_HEADER_BYTES);	/* the user's header */
	memcpy(saved, addr, r.stride);
	check(pattern_verify(saved + DMAREC_HEADER_BYTES, r.payload, b.card_seq,
			     b.channel) < 0, "%s: card data", what);
	ring_close(&r);		/* munmap + SETUP teardown */
	close(fd);
	fd = -1;
	if (do_rmmod)
		check(syscall(__NR_delete_module, "dmarec", O_NONBLOCK) == 0,
		      "%s: rmmod dmarec with only io_uring holding pages: %s",
		      what, strerror(errno));
	uring_io_after(&u, dfd, addr, b.index, saved, r.stride, what);
	note("%s: WRITE_FIXED/READ_FIXED of %" "llu" " bytes checked", what,
	     r.stride);
out:
	free(saved);
	/* synchronous unpin; the ring's own exit releases them in a worker */
	if (!reg)
		check(syscall(__NR_io_uring_register, u.fd,
			      IORING_UNREGISTER_BUFFERS, NULL, 0) == 0,
		      "%s: IORING_UNREGISTER_BUFFERS: %s", what, strerror(errno));
	uring_exit(&u);
	if (fd >= 0) {
		ring_close(&r);
		close(fd);
	}
	return reg;
}

/*
 * USERPTR then MMAP (expect_mmap: "ok" or "eopnotsupp" as for uring), each
 * ring torn down and closed before the I/O; with do_rmmod the module is
 * removed after the last ring (the script loads it again). Every pin is
 * released once io_uring unregisters.
 */
static void test_uring_teardown(const char *disk, const char *expect_mmap,
				bool do_rmmod)
{
	const long long pins0 = pins_held();
	int dfd = open(disk, O_RDWR | O_DIRECT | O_CLOEXEC);
	char cmdline[512] = "";
	FILE *f = fopen("/proc/cmdline", "r");

	if (f) {
		if (!fgets(cmdline, sizeof(cmdline), f))
			cmdline[0] = 0;
		fclose(f);
	}
	check(strstr(cmdline, "init_on_free=1") != NULL,
	      "uring teardown: boot with init_on_free=1 (a freed page must read zero)");
	check(dfd >= 0, "open %s: %s", disk, strerror(errno));
	if (dfd < 0)
		return;
	uring_teardown_one(DMAREC_MEMORY_USERPTR, dfd, false, "ok");
	if (!strcmp(expect_mmap, "ok"))
		uring_teardown_one(DMAREC_MEMORY_MMAP, dfd, do_rmmod, "ok");
	else if (uring_teardown_one(DMAREC_MEMORY_MMAP, dfd, false,
				    expect_mmap) == EOPNOTSUPP && do_rmmod)
		uring_teardown_one(DMAREC_MEMORY_USERPTR, dfd, true, "ok");
	close(dfd);
	check(pins_held() == pins0, "uring teardown: %lld pins not released",
	      pins_held() - pins0);
}

static void test_uring(const char *disk, const char *expect_mmap)
{
	uring_one(DMAREC_MEMORY_USERPTR, disk, "ok");
	uring_one(DMAREC_MEMORY_MMAP, disk, expect_mmap);
}

/* ------------------------------- group -------------------------------- */

/*
 * A non-root user reaching the nodes through their group, as the udev rule
 * sets them up (the script made them root:GROUP 0660). Each scenario runs
 * in a child that becomes uid with gid (and GROUP as its only supplementary
 * group when in_group) after setting RLIMIT_MEMLOCK, so it has no
 * capability (no CAP_IPC_LOCK).
 */
static gid_t group_gid;

static void become(uid_t uid, bool in_group, unsigned long memlock_bytes)
{
	struct rlimit rl = { memlock_bytes, memlock_bytes };
	gid_t groups[1] = { group_gid };

	n_fail = 0;	/* the child's exit status is its own checks */
	if (setrlimit(RLIMIT_MEMLOCK, &rl) ||
	    setgroups(in_group ? 1 : 0, groups) ||
	    setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
		check(false, "group: become uid %u: %s", uid, strerror(errno));
		_exit(1);
	}
}

static int group_open(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	check(fd >= 0, "group: uid %u open %s: %s", getuid(), path,
	      strerror(errno));
	return fd;
}

static void group_wait(pid_t pid, const char *what)
{
	int status = -1;
	pid_t got = waitpid(pid, &status, 0);

	check(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "group: %s: child status %#x", what, status);
}

/* run fn(arg) as uid in a child, wait for it */
static void group_child(uid_t uid, bool in_group, unsigned long memlock_bytes,
			void (*fn)(const char *), const char *arg,
			const char *what)
{
	pid_t pid = fork();

	if (pid == 0) {
		become(uid, in_group, memlock_bytes);
		fn(arg);
		_exit(n_fail ? 1 : 0);
	}
	group_wait(pid, what);
}

/* one MMAP buffer of 32 KiB payload: 36 KiB locked; want: 0 or an errno */
static void group_setup_one(const char *path, int want)
{
	int fd = group_open(path);

	if (fd < 0)
		return;
	errno = 0;
	check((setup(fd, DMAREC_MEMORY_MMAP, 1, 32768, NULL) ? errno : 0) == want,
	      "group: uid %u: MMAP 1 x 32 KiB on %s: %s, want %s", getuid(),
	      path, strerror(errno), strerror(want));
	close(fd);
}

static void group_setup_ok(const char *path) { group_setup_one(path, 0); }
static void group_setup_enomem(const char *path) { group_setup_one(path, ENOMEM); }

static void group_no_access(const char *path)
{
	check(open(path, O_RDWR) < 0 && errno == EACCES,
	      "group: uid %u outside the group opens %s (%s)", getuid(), path,
	      strerror(errno));
}

/*
 * max_mmap_mb=4 (module-wide, all cards): 3 x 1 MiB on card 0 fit, then
 * 1 x 1 MiB on card 1 does not (ENOMEM) until card 0's ring is gone.
 */
static void group_module_limit(const char *path1)
{
	int fd0 = group_open(dev_path), fd1 = group_open(path1);

	if (fd0 < 0 || fd1 < 0)
		return;
	CHECK_OK(setup(fd0, DMAREC_MEMORY_MMAP, 3, 1u << 20, NULL));
	CHECK_ERR(setup(fd1, DMAREC_MEMORY_MMAP, 1, 1u << 20, NULL), ENOMEM);
	CHECK_OK(setup(fd0, 0, 0, 0, NULL));
	CHECK_OK(setup(fd1, DMAREC_MEMORY_MMAP, 1, 1u << 20, NULL));
	check(module_param_ull("pages_held") == 257,
	      "group: pages_held %llu, want 257", module_param_ull("pages_held"));
	close(fd0);
	close(fd1);
}

/*
 * The locked-memory charge is per user, not per process: while uid 1000
 * holds 36 KiB on card 0 (limit 64 KiB), another process of uid 1000 is
 * refused a second 36 KiB on card 1, uid 1001 (same group) is not, a uid
 * outside the group cannot open the node; once the holder closed, uid 1000
 * gets it.
 */
static void test_group(const char *path1, unsigned long gid)
{
	int sync_pipe[2], done_pipe[2];
	char c = 0;
	pid_t holder;

	group_gid = (gid_t)gid;
	check(module_param_ull("max_mmap_mb") == 4,
	      "group: load the module with max_mmap_mb=4");
	if (pipe(sync_pipe) || pipe(done_pipe))
		return;
	holder = fork();
	if (holder == 0) {
		int fd;

		close(sync_pipe[0]);
		close(done_pipe[1]);
		become(1000, true, 64 << 10);
		fd = group_open(dev_path);
		CHECK_OK(setup(fd, DMAREC_MEMORY_MMAP, 1, 32768, NULL));
		check(write(sync_pipe[1], "r", 1) == 1, "group: sync");
		check(read(done_pipe[0], &c, 1) == 1, "group: wait");
		close(fd);
		_exit(n_fail ? 1 : 0);
	}
	close(sync_pipe[1]);	/* a holder that dies early reads as EOF */
	close(done_pipe[0]);
	check(read(sync_pipe[0], &c, 1) == 1, "group: holder ready");
	group_child(1000, true, 64 << 10, group_setup_enomem, path1,
		    "same user, second process");
	group_child(1001, true, 64 << 10, group_setup_ok, path1,
		    "other user in the group");
	group_child(1002, false, 64 << 10, group_no_access, path1,
		    "user outside the group");
	check(write(done_pipe[1], "d", 1) == 1, "group: release holder");
	group_wait(holder, "holder");
	close(sync_pipe[0]);
	close(done_pipe[1]);
	group_child(1000, true, 64 << 10, group_setup_ok, path1,
		    "same user after the holder closed");
	group_child(1000, true, 64 << 20, group_module_limit, path1,
		    "module-wide max_mmap_mb");
	check(module_param_ull("pages_held") == 0, "group: pages_held %llu after",
	      module_param_ull("pages_held"));
	note("group: per-user locked memory and max_mmap_mb=4 enforced for "
	     "non-root users of group %lu", gid);
}

/* -------------------------------- leak -------------------------------- */


static long mem_available_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * Set up, stream and drop 32 MiB rings many times, half by teardown, half
 * by close(). While a ring lives the driver holds exactly its pages (MMAP:
 * pages_held = count x stride pages; USERPTR: count x payload pages more
 * pinned); after each ring exactly as many as before.
 */
static void leak_round(void)
{
	const uint32_t count = 32, payload = 1u << 20;
	const long long pins0 = pins_held();
	int i;

	for (i = 0; i < 16; i++) {
		uint32_t mem = i & 1 ? DMAREC_MEMORY_USERPTR : DMAREC_MEMORY_MMAP;
		struct dmarec_buffer b;
		struct ring r;
		int fd = dev_open(0);

		CHECK_OK(sim_config(fd, 1, 0));
		if (ring_open(&r, fd, mem, count, payload) == 0) {
			unsigned long long want = mem == DMAREC_MEMORY_MMAP ?
				count * (r.stride / 4096) : 0;
			long long pins = pins_held() - pins0;

			check(module_param_ull("pages_held") == want,
			      "leak: %s ring: driver holds %llu pages, not %llu",
			      mem_name(mem), module_param_ull("pages_held"), want);
			want = mem == DMAREC_MEMORY_USERPTR ?
				count * (payload / 4096) : 0;
			check(pins == (long long)want,
			      "leak: %s ring: %lld pages pinned, not %llu",
			      mem_name(mem), pins, want);
			for (uint32_t k = 0; k < 4; k++)
				CHECK_OK(qbuf(fd, k));
			CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
			CHECK_OK(dqbuf(fd, &b));
			if (i & 2) {
				CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
				ring_close(&r);
			} else {
				munmap(r.base, r.size);	/* release() frees */
			}
		}
		close(fd);
		check(module_param_ull("pages_held") == 0 &&
		      pins_held() == pins0,
		      "leak: after %s ring %d: driver holds %llu pages, %lld pins not released",
		      mem_name(mem), i, module_param_ull("pages_held"),
		      pins_held() - pins0);
	}
}

static long settled_mem_available_kb(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "3", 1) != 1)
			perror("drop_caches");
		close(fd);
	}
	sleep_ms(200);
	return mem_available_kb();
}

/*
 * Set up, stream and drop 32 MiB rings many times, half by teardown, half
 * by close(): every page (driver-allocated or pinned user memory) must
 * come back, so a leak of pages or pins shows in MemAvailable. One warm-up
 * round first, so per-cpu page lists and slab caches are filled.
 */
static void test_leak(void)
{
	long before, after;

	leak_round();
	before = settled_mem_available_kb();
	leak_round();
	leak_round();
	after = settled_mem_available_kb();
	note("memcheck: MemAvailable %ld kB before, %ld kB after 32 x 32 MiB rings",
	     before, after);
	check(before > 0 && after > before - 64 * 1024,
	      "memcheck: %ld kB of memory not returned", before - after);
}

/* ------------------------------- hugetlb ------------------------------ */

/* USERPTR payloads inside 2 MiB hugetlb pages (pins of tail pages). */
static void test_hugetlb(const char *disk)
{
	use_hugetlb = true;
	stream_one(DMAREC_MEMORY_USERPTR, 4, 1u << 20, 3, 40);
	stream_one(DMAREC_MEMORY_USERPTR, 8, 65536, 2, 40);
	uring_one(DMAREC_MEMORY_USERPTR, disk, "ok");
	use_hugetlb = false;
}

/* ------------------------------- userptr ------------------------------ */

/* Stream 3 buffers into a USERPTR ring whose payloads live at mem. */
static void userptr_stream_in(int fd, uint8_t *mem, const char *what)
{
	struct dmarec_buffer b;
	struct ring r = { .fd = fd, .memory = DMAREC_MEMORY_USERPTR, .count = 2,
			  .payload = 8192, .stride = DMAREC_HEADER_BYTES + 8192,
			  .base = mem };
	int i;

	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	for (i = 0; i < 3; i++) {
		CHECK_OK(dqbuf(fd, &b));
		verify_buffer(&r, &b, 1, what);
		CHECK_OK(qbuf(fd, b.index));
	}
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
}

/*
 * One address attached to two buffers: allowed (as V4L2 USERPTR allows it;
 * the data is then whichever buffer the card filled last), pinned and
 * charged twice, and both pins dropped at teardown.
 */
static void userptr_same_address_twice(int fd)
{
	long pin0 = vm_pin_kb();
	uint8_t *mem = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 2, 8192, NULL));
	CHECK_OK(attach(fd, 0, mem, 8192));
	CHECK_OK(attach(fd, 1, mem, 8192));
	check(vm_pin_kb() == pin0 + 16, "same address twice: VmPin %ld, want %ld",
	      vm_pin_kb(), pin0 + 16);
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	CHECK_OK(setup(fd, 0, 0, 0, NULL));
	check(vm_pin_kb() == pin0, "same address twice: VmPin %ld after teardown",
	      vm_pin_kb());
	munmap(mem, 8192);
}

/*
 * Which memory USERPTR accepts: anonymous (private and shared), memfd and
 * tmpfs files (shmem) stream; a MAP_SHARED or MAP_PRIVATE mapping of a
 * block device (a file the kernel writes back) is refused with EFAULT on
 * every kernel, before anything is pinned.
 */
static void test_userptr_sources(const char *disk)
{
	const size_t len = 2 * (DMAREC_HEADER_BYTES + 8192);
	const char *names[] = { "anon private", "anon shared", "memfd", "tmpfs file",
				"block device shared", "block device private" };
	int fd = dev_open(0), i;

	CHECK_OK(sim_config(fd, 1, 0));
	for (i = 0; i < 6; i++) {
		int mfd = -1, flags = MAP_SHARED;
		long pin_before = vm_pin_kb();
		uint8_t *mem;
		bool refused = i >= 4;

		if (i == 0)
			flags = MAP_PRIVATE | MAP_ANONYMOUS;
		else if (i == 1)
			flags = MAP_SHARED | MAP_ANONYMOUS;
		else if (i == 2)
			mfd = memfd_create("dmarec", MFD_CLOEXEC);
		else if (i == 3)
			mfd = open("/tmp/dmarec-userptr", O_RDWR | O_CREAT | O_TRUNC, 0600);
		else
			mfd = open(disk, O_RDWR);
		if (i == 5)
			flags = MAP_PRIVATE;
		if (i >= 2 && (mfd < 0 || (i < 4 && ftruncate(mfd, len)))) {
			check(false, "%s: %s", names[i], strerror(errno));
			continue;
		}
		mem = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_POPULATE,
			   mfd, 0);
		if (mem == MAP_FAILED) {
			check(false, "mmap %s: %s", names[i], strerror(errno));
			close(mfd);
			continue;
		}
		CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 2, 8192, NULL));
		if (refused) {
			CHECK_ERR(attach(fd, 0, mem + DMAREC_HEADER_BYTES, 8192), EFAULT);
			check(vm_pin_kb() == pin_before, "%s: VmPin %ld kB after refusal",
			      names[i], vm_pin_kb());
		} else {
			CHECK_OK(attach(fd, 0, mem + DMAREC_HEADER_BYTES, 8192));
			CHECK_OK(attach(fd, 1, mem + 2 * DMAREC_HEADER_BYTES + 8192, 8192));
			userptr_stream_in(fd, mem, names[i]);
		}
		CHECK_OK(setup(fd, 0, 0, 0, NULL));
		munmap(mem, len);
		if (mfd >= 0)
			close(mfd);
		note("userptr %s: %s", names[i], refused ? "refused" : "streamed");
	}
	unlink("/tmp/dmarec-userptr");
	userptr_same_address_twice(fd);
	close(fd);
}

/* --------------------------------- edu -------------------------------- */

/*
 * QEMU's edu PCI card behind /dev/dmarecN (kmod/dmarec-edu.c): real bus
 * master DMA, ~100 ms per 2 KiB transfer pair, so small rings of 4 KiB
 * payloads. The card free-runs: it loses buffers while nothing is queued.
 */
static void edu_caps(int fd)
{
	struct dmarec_caps c;

	CHECK_OK(ioctl(fd, DMAREC_IOC_QUERYCAP, &c));
	check(c.caps == (DMAREC_CAP_MMAP | DMAREC_CAP_USERPTR),
	      "edu caps %#x (no simulated card)", c.caps);
	check(c.channels == 1, "edu channels %u", c.channels);
	CHECK_ERR(sim_config(fd, 2, 0), EOPNOTSUPP);
}

/* Every byte of every buffer, in order, no gaps: the queue never empties. */
static void edu_stream_one(uint32_t memory, uint32_t count, unsigned int total)
{
	const uint32_t payload = 4096;
	struct dmarec_buffer b;
	struct dmarec_stats st;
	struct ring r;
	u64 t_on, last_ts = 0, expect_seq = 0;
	unsigned int n;
	int fd = dev_open(0);
	uint32_t i;
	char what[64];

	snprintf(what, sizeof(what), "edu %s %ux%u", mem_name(memory), count,
		 payload);
	edu_caps(fd);
	if (ring_open(&r, fd, memory, count, payload))
		goto out;
	for (i = 0; i < count; i++) {
		/* header: a marker; payload: garbage the card must replace */
		memset(ring_buf(&r, i), 0x40 + (i & 15), DMAREC_HEADER_BYTES);
		memset(ring_buf(&r, i) + DMAREC_HEADER_BYTES, 0x5a, payload);
		CHECK_OK(qbuf(fd, i));
	}
	t_on = now_ns();
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	for (n = 0; n < total; n++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		size_t k, bad = 0;

		check(poll(&p, 1, 30000) == 1 && (p.revents & POLLIN),
		      "%s: poll revents %#x", what, p.revents);
		if (dqbuf(fd, &b)) {
			check(false, "%s: DQBUF %u: %s", what, n, strerror(errno));
			break;
		}
		verify_buffer(&r, &b, 1, what);
		check(b.card_seq == expect_seq && b.gap_count == 0,
		      "%s: seq %" "llu" " want %" "llu" " gap %" "llu", what,
		      b.card_seq, expect_seq, b.gap_count);
		expect_seq = b.card_seq + 1;
		check(b.card_timestamp_ns >= t_on && b.card_timestamp_ns >= last_ts &&
		      b.card_timestamp_ns <= now_ns(), "%s: timestamp", what);
		last_ts = b.card_timestamp_ns;
		for (k = 0; k < DMAREC_HEADER_BYTES; k++)
			bad += ring_buf(&r, b.index)[k] != 0x40 + (b.index & 15);
		check(bad == 0, "%s: header of buffer %u touched (%zu bytes)",
		      what, b.index, bad);
		memset(ring_buf(&r, b.index) + DMAREC_HEADER_BYTES, 0x5a, payload);
		CHECK_OK(qbuf(fd, b.index));
	}
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	st = stats(fd);
	check(st.overruns == 0 && st.dequeued == total && st.filled >= total &&
	      st.queued == count + total,
	      "%s: stats q %" "llu" " dq %" "llu" " filled %" "llu" " ovr %" "llu",
	      what, st.queued, st.dequeued, st.filled, st.overruns);
	/* STREAMOFF gave every buffer back, the one being filled included */
	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	CHECK_OK(dqbuf(fd, &b));
	check(b.card_seq == 0, "%s: seq after restart %" "llu", what, b.card_seq);
	verify_buffer(&r, &b, 1, what);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	ring_close(&r);
	note("%s: %u buffers verified (every byte), %.1f ms per buffer", what,
	     total, (last_ts - t_on) / 1e6 / total);
out:
	close(fd);
}

/* Nobody dequeues: the card loses buffers and says so. */
static void edu_overrun(uint32_t memory)
{
	struct dmarec_buffer b;
	struct dmarec_stats st;
	struct ring r;
	int fd = dev_open(0), i;
	char what[64];

	snprintf(what, sizeof(what), "edu overrun %s", mem_name(memory));
	if (ring_open(&r, fd, memory, 2, 4096))
		goto out;
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(qbuf(fd, 1));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	/* bounded wait for three losses (the card's own pace) */
	for (i = 0; i < 600 && stats(fd).overruns < 3; i++)
		sleep_ms(100);
	st = stats(fd);
	check(st.overruns >= 3 && st.filled == 2, "%s: overruns %" "llu"
	      " filled %" "llu", what, st.overruns, st.filled);
	for (i = 0; i < 2; i++) {
		CHECK_OK(dqbuf(fd, &b));
		check(b.card_seq == (u64)i && b.gap_count == 0, "%s: seq %" "llu"
		      " gap %" "llu", what, b.card_seq, b.gap_count);
		verify_buffer(&r, &b, 1, what);
	}
	CHECK_OK(qbuf(fd, 0));
	CHECK_OK(dqbuf(fd, &b));
	verify_buffer(&r, &b, 1, what);
	check(b.card_seq == 2 + b.gap_count && b.gap_count >= 3,
	      "%s: after losses seq %" "llu" " gap %" "llu", what, b.card_seq,
	      b.gap_count);
	check(stats(fd).overruns >= b.gap_count, "%s: stats below gap", what);
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	note("%s: seq %" "llu" " after %" "llu" " lost, stats overruns %" "llu",
	     what, b.card_seq, b.gap_count, stats(fd).overruns);
	ring_close(&r);
out:
	close(fd);
}

/* Zero copy refused (bounce buffers would be needed): a clear EOPNOTSUPP. */
static void test_edu_refuse(void)
{
	struct dmarec_setup s;
	int fd = dev_open(0);
	void *mem;

	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 2, 4096, &s), EOPNOTSUPP);
	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (setup(fd, DMAREC_MEMORY_USERPTR, 1, 4096, &s) == 0) {
		/* known at ATTACH only: the mapping itself is bounced */
		CHECK_ERR(attach(fd, 0, mem, 4096), EOPNOTSUPP);
		CHECK_OK(setup(fd, 0, 0, 0, NULL));
	} else {
		check(errno == EOPNOTSUPP, "USERPTR SETUP: %s", strerror(errno));
	}
	munmap(mem, 4096);
	close(fd);
}

/* poll() until the card says POLLERR (it went away), bounded. */
static void *edu_poll_thread(void *arg)
{
	struct blocked *b = arg;
	int k;

	for (k = 0; k < 100000; k++) {
		struct pollfd p = { .fd = b->fd, .events = POLLIN };

		/* a minute without any event: nobody woke the poll */
		if (poll(&p, 1, 60000) != 1) {
			b->err = -errno;
			break;
		}
		b->err = p.revents;
		if (p.revents & POLLERR)
			break;
		sleep_ms(5);	/* the main thread dequeues it */
	}
	return NULL;
}

/*
 * Streams until the card goes away (sysfs unbind by the caller after
 * "ready"; a second thread blocked in poll() must wake with POLLERR), then
 * checks the dead card: ENODEV for everything that needs the
 * device, STATS still answers, the mapping stays readable.
 */
static void test_edu_unbind(uint32_t memory)
{
	struct blocked pl = { .poll = true };
	pthread_t tpl;
	struct dmarec_buffer b;
	struct ring r;
	size_t k;
	unsigned int n = 0;
	volatile uint8_t sum = 0;
	int fd = dev_open(0), err;

	if (ring_open(&r, fd, memory, 4, 4096))
		exit(1);
	for (uint32_t i = 0; i < 4; i++)
		CHECK_OK(qbuf(fd, i));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	pl.fd = fd;
	pthread_create(&tpl, NULL, edu_poll_thread, &pl);
	note("edu-unbind %s: ready", mem_name(memory));
	while (dqbuf(fd, &b) == 0 && n < 100000) {
		verify_buffer(&r, &b, 1, "edu-unbind");
		qbuf(fd, b.index);
		n++;
	}
	err = errno;
	pthread_join(tpl, NULL);
	check(pl.err > 0 && (pl.err & POLLERR),
	      "poll across unbind: revents %#x", pl.err);
	check(err == EPIPE || err == ENODEV, "DQBUF after unbind: %s",
	      strerror(err));
	CHECK_ERR(qbuf(fd, 0), ENODEV);
	CHECK_ERR(ioctl(fd, DMAREC_IOC_STREAMON), ENODEV);
	CHECK_ERR(dqbuf(fd, &b), ENODEV);
	CHECK_ERR(setup(fd, DMAREC_MEMORY_MMAP, 1, 4096, NULL), ENODEV);
	check(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED &&
	      errno == ENODEV, "mmap of a dead card: %s", strerror(errno));
	check(stats(fd).filled >= n, "STATS of a dead card");
	for (k = 0; k < r.size; k += PAGE)
		sum += r.base[k];
	munmap(r.base, r.size);
	close(fd);
	note("edu-unbind %s: %u buffers before the unbind, dead card checked",
	     mem_name(memory), n);
}

/*
 * USERPTR from a regular file on a disk file system (ext4 in the disks
 * boot), MAP_SHARED and MAP_PRIVATE, pages populated and dirtied: refused
 * with EFAULT and nothing pinned (the file system would write the pages
 * back and clean them under the card's pin; 6.1's GUP allows the pin).
 */
static void test_userptr_file(const char *path)
{
	const size_t len = DMAREC_HEADER_BYTES + 8192;
	int fd = dev_open(0), ffd, i;

	ffd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ffd < 0 || ftruncate(ffd, len)) {
		check(false, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (i = 0; i < 2; i++) {
		int flags = i ? MAP_PRIVATE : MAP_SHARED;
		long pin0 = vm_pin_kb(), pins0 = pins_held();
		uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
				    flags | MAP_POPULATE, ffd, 0);

		if (mem == MAP_FAILED) {
			check(false, "mmap %s: %s", path, strerror(errno));
			continue;
		}
		memset(mem, 0x5a, len);
		CHECK_OK(setup(fd, DMAREC_MEMORY_USERPTR, 1, 8192, NULL));
		CHECK_ERR(attach(fd, 0, mem + DMAREC_HEADER_BYTES, 8192), EFAULT);
		check(vm_pin_kb() == pin0 && pins_held() == pins0,
		      "%s %s: VmPin %ld kB, %lld pins after the refusal", path,
		      i ? "private" : "shared", vm_pin_kb(), pins_held() - pins0);
		CHECK_OK(setup(fd, 0, 0, 0, NULL));
		munmap(mem, len);
		note("userptr-file %s %s: refused", path, i ? "MAP_PRIVATE" : "MAP_SHARED");
	}
	close(ffd);
	unlink(path);
out:
	close(fd);
}

/* ---------------------------- suspend (pm_test) ---------------------- */

/*
 * Streams (every byte checked) until the file `until` exists, then 3 more
 * buffers: the caller runs a suspend cycle (/sys/power/pm_test) meanwhile.
 * The stream must survive it, and every card sequence number must be
 * either dequeued or counted as lost (gap_count, stats.overruns). The sim
 * card is paced (its thread sleeps through the freeze and accounts what
 * it missed); the edu card free-runs.
 */
static void test_suspend_stream(const char *until)
{
	const uint32_t count = 4, payload = 4096;
	u64 sum_gap = 0, n_dq = 0, last_seq = 0, seen_after = 0;
	struct dmarec_buffer b;
	struct dmarec_stats st;
	struct ring r;
	int fd = dev_open(0);
	uint32_t i;

	if (dev_has_sim())
		CHECK_OK(sim_config(fd, 1, (u64)payload * 20));
	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, count, payload))
		exit(1);
	for (i = 0; i < count; i++)
		CHECK_OK(qbuf(fd, i));
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMON));
	note("suspend-stream %s: ready", dev_path);
	/* bounded: 100 s of the sim card, more of the edu card */
	while (n_dq < 2000 && seen_after < 3) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, 60000);

		if (pr < 0 && errno == EINTR)
			continue;	/* the freezer's fake signal */
		if (pr != 1 || !(p.revents & POLLIN) || dqbuf(fd, &b)) {
			check(false, "suspend-stream %s: no buffer after %" "llu"
			      " (poll %d revents %#x): %s", dev_path, n_dq, pr,
			      p.revents, strerror(errno));
			break;
		}
		verify_buffer(&r, &b, 1, "suspend-stream");
		check(b.card_seq == (n_dq ? last_seq + 1 : 0) + b.gap_count,
		      "suspend-stream %s: seq %" "llu" " after %" "llu" " gap %" "llu",
		      dev_path, b.card_seq, last_seq, b.gap_count);
		last_seq = b.card_seq;
		sum_gap += b.gap_count;
		n_dq++;
		if (access(until, F_OK) == 0)
			seen_after++;
		CHECK_OK(qbuf(fd, b.index));
	}
	CHECK_OK(ioctl(fd, DMAREC_IOC_STREAMOFF));
	st = stats(fd);
	check(seen_after == 3, "suspend-stream %s: %" "llu" " buffers after resume",
	      dev_path, seen_after);
	check(n_dq + sum_gap == last_seq + 1 && st.overruns >= sum_gap &&
	      st.dequeued == n_dq && st.filled >= n_dq,
	      "suspend-stream %s: %" "llu" " dequeued + %" "llu" " lost != seq %" "llu"
	      " + 1 (stats filled %" "llu" " overruns %" "llu" ")", dev_path,
	      n_dq, sum_gap, last_seq, st.filled, st.overruns);
	note("suspend-stream %s: %" "llu" " buffers, %" "llu" " lost (counted), %" "llu"
	     " after resume, stats overruns %" "llu", dev_path, n_dq, sum_gap,
	     seen_after, st.overruns);
	ring_close(&r);
	close(fd);
}

/* ------------------------- ATTACH vs. unbind -------------------------- */

#define RACE_COUNT	8u
#define RACE_PAYLOAD	(4u << 20)

struct attach_race {
	int fd;
	volatile int next;		/* index the thread attaches next */
	unsigned int attached, refused_before, refused_after;
};

/* Is any page of [addr, addr + len) resident (faulted in by a pin)? */
static bool any_resident(void *addr, size_t len)
{
	unsigned char vec[RACE_PAYLOAD / PAGE];
	size_t k;

	if (mincore(addr, len, vec))
		return false;
	for (k = 0; k < len / PAGE; k++)
		if (vec[k] & 1)
			return true;
	return false;
}

/*
 * ATTACH every buffer of the ring, each from fresh never-touched memory,
 * until the card dies. An ENODEV whose memory is resident was refused
 * after the pin (the card went away while the pages were being pinned
 * without the card lock); one whose memory is untouched, before it.
 */
static void *attach_race_thread(void *arg)
{
	struct attach_race *a = arg;
	uint32_t i;

	for (i = 0; i < RACE_COUNT; i++) {
		void *mem = mmap(NULL, RACE_PAYLOAD, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int r, err;

		if (mem == MAP_FAILED) {
			check(false, "attach race: mmap: %s", strerror(errno));
			break;
		}
		__atomic_store_n(&a->next, (int)i, __ATOMIC_SEQ_CST);
		r = attach(a->fd, i, mem, RACE_PAYLOAD);
		err = errno;
		if (r == 0)
			a->attached++;
		else if (err == ENODEV && any_resident(mem, RACE_PAYLOAD))
			a->refused_after++;
		else if (err == ENODEV)
			a->refused_before++;
		else
			check(false, "attach race: ATTACH %u: %s", i, strerror(err));
		munmap(mem, RACE_PAYLOAD);	/* the pins keep attached pages */
		if (r)
			break;
	}
	__atomic_store_n(&a->next, (int)RACE_COUNT, __ATOMIC_SEQ_CST);
	return NULL;
}

static void sysfs_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);

	check(fd >= 0 && write(fd, val, strlen(val)) == (ssize_t)strlen(val),
	      "write %s to %s: %s", val, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* /dev/dmarecN of the card bound to bdf (waits up to 5 s for the node). */
static bool edu_node_of(const char *bdf, char *node, size_t len)
{
	char dir[128];
	int i;

	snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/misc", bdf);
	for (i = 0; i < 50; i++) {
		FILE *p;
		char name[32] = "";
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "ls %s 2>/dev/null", dir);
		p = popen(cmd, "r");
		if (p && fscanf(p, "%31s", name) == 1) {
			snprintf(node, len, "/dev/%s", name);
			if (access(node, F_OK) == 0) {
				pclose(p);
				return true;
			}
		}
		if (p)
			pclose(p);
		sleep_ms(100);
	}
	return false;
}

/*
 * One round: a thread ATTACHes buffer after buffer while this one unbinds
 * the card through sysfs as the thread starts its k-th ATTACH. Whatever
 * the interleaving, every pin must come back once the file is closed: the
 * process's VmPin and the system's FOLL_PIN count return to where they
 * were, and the driver holds no page.
 */
static void attach_race_round(const char *bdf, int k, const long long pins0,
			      struct attach_race *sum)
{
	struct attach_race a = { .next = -1 };
	char node[64];
	pthread_t t;

	if (!edu_node_of(bdf, node, sizeof(node))) {
		check(false, "attach race: no node for %s", bdf);
		return;
	}
	dev_path = node;
	a.fd = dev_open(0);
	if (setup(a.fd, DMAREC_MEMORY_USERPTR, RACE_COUNT, RACE_PAYLOAD, NULL)) {
		check(false, "attach race: SETUP: %s", strerror(errno));
		close(a.fd);
		return;
	}
	if (pthread_create(&t, NULL, attach_race_thread, &a)) {
		check(false, "attach race: pthread_create");
		close(a.fd);
		return;
	}
	while (__atomic_load_n(&a.next, __ATOMIC_SEQ_CST) < k)
		sched_yield();
	sysfs_write("/sys/bus/pci/drivers/dmarec/unbind", bdf);
	pthread_join(t, NULL);
	CHECK_ERR(attach(a.fd, 0, (void *)PAGE, RACE_PAYLOAD), ENODEV);
	close(a.fd);
	check(vm_pin_kb() == 0, "attach race: VmPin %ld kB after close",
	      vm_pin_kb());
	check(pins_held() == pins0, "attach race: %lld pins not released",
	      pins_held() - pins0);
	check(module_param_ull("pages_held") == 0,
	      "attach race: driver holds %llu pages",
	      module_param_ull("pages_held"));
	sum->attached += a.attached;
	sum->refused_before += a.refused_before;
	sum->refused_after += a.refused_after;
	sysfs_write("/sys/bus/pci/drivers/dmarec/bind", bdf);
}

/*
 * ATTACH (which pins user memory) racing PCI unbind. The pin runs without
 * the card lock, so the unbind completes while a pin is under way and the
 * ATTACH then finds the card dead and unpins: such refusals after the pin
 * must happen (with the lock held across the pin, the unbind waits for it
 * and they never do) and must leak nothing.
 */
static void test_edu_attach_race(const char *bdf)
{
	const long long pins0 = pins_held();
	struct attach_race sum = { 0 };
	int round;

	for (round = 0; round < 12 && sum.refused_after < 3; round++)
		attach_race_round(bdf, 1 + round % (RACE_COUNT - 2), pins0, &sum);
	note("edu attach race: %d rounds, %u attached, %u refused before the pin, %u after it",
	     round, sum.attached, sum.refused_before, sum.refused_after);
	check(sum.refused_after > 0,
	      "attach race: no ATTACH was refused after its pin in %d rounds: either the unbind waited for the pins (card lock held across pinning) or ATTACH installed pins on a card unbound meanwhile (no re-check after the pin)",
	      round);
}

/* SIGKILL of a process whose buffer the card is writing (2 KiB steps). */
static void test_edu_kill(void)
{
	kill_child_while_streaming(DMAREC_MEMORY_MMAP);
	kill_child_while_streaming(DMAREC_MEMORY_USERPTR);
}

static void test_edu(void)
{
	edu_stream_one(DMAREC_MEMORY_MMAP, 4, 24);
	edu_stream_one(DMAREC_MEMORY_USERPTR, 3, 16);
	edu_overrun(DMAREC_MEMORY_MMAP);
	edu_overrun(DMAREC_MEMORY_USERPTR);
	test_edu_kill();
}

/* ------------------------------ helpers ------------------------------- */

/* quick smoke run used by the insmod/rmmod loop */
static void test_quick(void)
{
	stream_one(DMAREC_MEMORY_MMAP, 2, 4096, 2, 4);
	stream_one(DMAREC_MEMORY_USERPTR, 2, 4096, 2, 4);
}

/* keep a mapping of a streaming ring (and the module) alive until killed */
static void test_hold(void)
{
	struct ring r;
	int fd = dev_open(0);

	if (ring_open(&r, fd, DMAREC_MEMORY_MMAP, 2, 4096))
		exit(1);
	qbuf(fd, 0);
	ioctl(fd, DMAREC_IOC_STREAMON);
	close(fd);
	note("hold: ready");
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	const char *cmd, *disk = "/dev/vda", *expect = "ok";
	int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-d") && i + 1 < argc)
			dev_path = argv[++i];
		else if (!strcmp(argv[i], "--disk") && i + 1 < argc)
			disk = argv[++i];
		else if (!strcmp(argv[i], "--expect-mmap") && i + 1 < argc)
			expect = argv[++i];
		else
			break;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: %s [-d DEV] [--disk DEV] [--expect-mmap ok|eopnotsupp]"
			" caps|stream|overrun|errors|mmap|lifetime|leak|hugetlb|fuzz [N]|uring|uring-teardown|uring-rmmod|quick|hold|\n"
			"  group DEV1 GID|\n"
			"  edu|edu-refuse|edu-unbind [mmap|userptr]|edu-attach-race BDF|\n"
			"  suspend-stream UNTIL_FILE|userptr-file PATH\n",
			argv[0]);
		return 2;
	}
	cmd = argv[i];
	pattern_selftest();
	if (!strcmp(cmd, "caps"))
		test_caps();
	else if (!strcmp(cmd, "stream"))
		test_stream();
	else if (!strcmp(cmd, "overrun"))
		test_overrun();
	else if (!strcmp(cmd, "errors"))
		test_errors();
	else if (!strcmp(cmd, "mmap"))
		test_mmap();
	else if (!strcmp(cmd, "lifetime"))
		test_lifetime();
	else if (!strcmp(cmd, "fuzz"))
		test_fuzz(i + 1 < argc ? strtoul(argv[i + 1], NULL, 0) : 5000);
	else if (!strcmp(cmd, "uring"))
		test_uring(disk, expect);
	else if (!strcmp(cmd, "uring-teardown") || !strcmp(cmd, "uring-rmmod"))
		test_uring_teardown(disk, expect, !strcmp(cmd, "uring-rmmod"));
	else if (!strcmp(cmd, "hugetlb"))
		test_hugetlb(disk);
	else if (!strcmp(cmd, "leak"))
		test_leak();
	else if (!strcmp(cmd, "group") && i + 2 < argc)
		test_group(argv[i + 1], strtoul(argv[i + 2], NULL, 0));
	else if (!strcmp(cmd, "quick"))
		test_quick();
	else if (!strcmp(cmd, "hold"))
		test_hold();
	else if (!strcmp(cmd, "userptr"))
		test_userptr_sources(disk);
	else if (!strcmp(cmd, "edu"))
		test_edu();
	else if (!strcmp(cmd, "edu-refuse"))
		test_edu_refuse();
	else if (!strcmp(cmd, "userptr-file") && i + 1 < argc)
		test_userptr_file(argv[i + 1]);
	else if (!strcmp(cmd, "suspend-stream") && i + 1 < argc)
		test_suspend_stream(argv[i + 1]);
	else if (!strcmp(cmd, "edu-attach-race") && i + 1 < argc)
		test_edu_attach_race(argv[i + 1]);
	else if (!strcmp(cmd, "edu-unbind"))
		test_edu_unbind(i + 1 < argc && !strcmp(argv[i + 1], "userptr") ?
				DMAREC_MEMORY_USERPTR : DMAREC_MEMORY_MMAP);
	else {
		fprintf(stderr, "unknown command %s\n", cmd);
		return 2;
	}
	printf("dmarec-test %s: %lu passed, %lu failed\n", cmd, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
