// SPDX-License-Identifier: MIT
/*
 * lwreplay: replays a dm-log-writes log (drivers/md/dm-log-writes.c,
 * Documentation/admin-guide/device-mapper/log-writes.rst) as a power cut
 * with a volatile write cache would leave TWO disks, and runs a check at
 * every cut point.
 *
 * The logged device is split at --split (in log sectors): below it the
 * recording target, above it the index's filesystem. They model two disks
 * with their own caches, so a flush counts only for the region that sent it
 * (by the entry's sector: dm-linear remaps empty flushes to its start,
 * which --probe-mark checks once). At every FLUSH or FUA entry after
 * --from-mark the state written is the worst case for "the index never
 * names a slot that is not durable":
 *   target: only writes a target flush covered, and target FUA writes;
 *   index:  every index write logged so far (a cache may write back
 *           anything it holds).
 * The target state goes to --target (a block device of --split sectors,
 * zeroed before), the index region to the file --index-image, the byte
 * offsets of the slots whose every sector is durable to --complete-list;
 * then --exec CMD runs with LW_CUT, LW_ENTRY, LW_COMPLETE, LW_PARTIAL in
 * its environment and must exit 0.
 *
 * Log format: a super (magic, version, nr_entries, sectorsize) in sector
 * 0, then per entry one sector holding {sector, nr_sectors, flags,
 * data_len} (little endian u64; a MARK's name follows in the same sector)
 * and, unless DISCARD, nr_sectors sectors of data. Sectors are the logged
 * device's logical block size.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_FLUSH_FLAG (1 << 0)
#define LOG_FUA_FLAG (1 << 1)
#define LOG_DISCARD_FLAG (1 << 2)
#define LOG_MARK_FLAG (1 << 3)
#define LOG_METADATA_FLAG (1 << 4)
#define WRITE_LOG_VERSION 1ULL
#define WRITE_LOG_MAGIC 0x6a736677736872ULL
#define MAX_ENTRIES (1u << 22)
#define MAX_ENTRY_BYTES (64u << 20)

struct lw_entry {
	uint64_t sector, nr_sectors, flags, data_len;
	uint64_t data_off; /* byte offset of the data in the log */
	char mark[256];
};

struct pending {
	uint64_t data_off, sector, nr_sectors;
	int discard;
};

static struct {
	int log_fd, target_fd;
	uint32_t sectorsize;
	uint64_t split, index_sectors;
	const char *index_image, *complete_list, *exec_cmd;
	const char *from_mark, *probe_mark;
	uint64_t slot_first_bytes, slot_bytes;
	unsigned char *index;   /* index region image, index_sectors sectors */
	unsigned char *covered; /* per target sector: durable and written */
	struct pending *pend;
	size_t npend, cap_pend;
	/* counters */
	uint64_t cuts, marks, target_flushes, index_flushes, fua, discards;
	uint64_t max_complete;
	int started, probing, probed;
} g;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("lwreplay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("log read at byte %llu: %s", (unsigned long long)(off + done),
			    n ? strerror(errno) : "end of device (log truncated?)");
		done += n;
	}
}

static void write_at(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write at byte %llu: %s", (unsigned long long)(off + done),
			    strerror(errno));
		done += n;
	}
}

/* Reads entry header at byte pos; returns the byte position of the next. */
static uint64_t read_entry(uint64_t pos, struct lw_entry *e)
{
	unsigned char sec[4096];
	uint64_t v[4];
	size_t name_len;

	read_at(g.log_fd, sec, g.sectorsize, pos);
	memcpy(v, sec, sizeof(v));
	e->sector = le64toh(v[0]);
	e->nr_sectors = le64toh(v[1]);
	e->flags = le64toh(v[2]);
	e->data_len = le64toh(v[3]);
	e->data_off = pos + g.sectorsize;
	e->mark[0] = 0;
	if (e->flags & LOG_MARK_FLAG) {
		name_len = e->data_len;
		if (name_len > g.sectorsize - sizeof(v) || name_len >= sizeof(e->mark))
			die("mark at byte %llu: name of %zu bytes", (unsigned long long)pos, name_len);
		memcpy(e->mark, sec + sizeof(v), name_len);
		e->mark[name_len] = 0;
		return pos + g.sectorsize;
	}
	if (e->data_len)
		die("entry at byte %llu has inline data (%llu bytes): not written by this kernel's dm-log-writes for block I/O",
		    (unsigned long long)pos, (unsigned long long)e->data_len);
	if (e->nr_sectors * g.sectorsize > MAX_ENTRY_BYTES)
		die("entry at byte %llu: %llu sectors", (unsigned long long)pos,
		    (unsigned long long)e->nr_sectors);
	if (e->flags & LOG_DISCARD_FLAG)
		return pos + g.sectorsize;
	return pos + g.sectorsize * (1 + e->nr_sectors);
}

/* Copies (or zeroes, for a discard) a logged write into a buffer. */
static unsigned char *entry_data(uint64_t data_off, uint64_t nr_sectors, int discard)
{
	size_t len = nr_sectors * g.sectorsize;
	unsigned char *buf = calloc(1, len ? len : 1);

	if (!buf)
		die("out of memory for %zu bytes", len);
	if (!discard)
		read_at(g.log_fd, buf, len, data_off);
	return buf;
}

/* Makes a target write durable: onto the target device, sectors covered. */
static void apply_target(const struct pending *p)
{
	unsigned char *buf = entry_data(p->data_off, p->nr_sectors, p->discard);
	uint64_t s;

	if (p->sector + p->nr_sectors > g.split)
		die("target write at sector %llu + %llu crosses --split %llu",
		    (unsigned long long)p->sector, (unsigned long long)p->nr_sectors,
		    (unsigned long long)g.split);
	write_at(g.target_fd, buf, p->nr_sectors * g.sectorsize, p->sector * g.sectorsize);
	for (s = p->sector; s < p->sector + p->nr_sectors; s++)
		g.covered[s] = !p->discard;
	free(buf);
}

static void apply_index(const struct lw_entry *e)
{
	uint64_t first = e->sector - g.split;
	unsigned char *buf;

	if (first + e->nr_sectors > g.index_sectors)
		die("index write at sector %llu + %llu beyond --index-bytes",
		    (unsigned long long)e->sector, (unsigned long long)e->nr_sectors);
	buf = entry_data(e->data_off, e->nr_sectors, !!(e->flags & LOG_DISCARD_FLAG));
	memcpy(g.index + first * g.sectorsize, buf, e->nr_sectors * g.sectorsize);
	free(buf);
}

static void flush_target(void)
{
	size_t i;

	for (i = 0; i < g.npend; i++)
		apply_target(&g.pend[i]);
	g.npend = 0;
}

static void add_pending(const struct lw_entry *e)
{
	if (g.npend == g.cap_pend) {
		g.cap_pend = g.cap_pend ? 2 * g.cap_pend : 1024;
		g.pend = realloc(g.pend, g.cap_pend * sizeof(*g.pend));
		if (!g.pend)
			die("out of memory for %zu pending writes", g.cap_pend);
	}
	g.pend[g.npend++] = (struct pending){ e->data_off, e->sector, e->nr_sectors,
					      !!(e->flags & LOG_DISCARD_FLAG) };
}

/* Slots whose every sector is durable, and those only partly so. */
static void count_slots(uint64_t *complete, uint64_t *partial)
{
	uint64_t ss = g.sectorsize, region = g.split * ss, k, s, n, have;
	uint64_t nslots = region > g.slot_first_bytes ?
				  (region - g.slot_first_bytes) / g.slot_bytes : 0;
	FILE *f = fopen(g.complete_list, "w");

	if (!f)
		die("%s: %s", g.complete_list, strerror(errno));
	*complete = *partial = 0;
	for (k = 0; k < nslots; k++) {
		uint64_t first = (g.slot_first_bytes + k * g.slot_bytes) / ss;

		n = g.slot_bytes / ss;
		for (have = 0, s = first; s < first + n; s++)
			have += g.covered[s];
		if (have == n) {
			fprintf(f, "%llu\n", (unsigned long long)(first * ss));
			(*complete)++;
		} else if (have) {
			(*partial)++;
		}
	}
	if (fclose(f))
		die("%s: %s", g.complete_list, strerror(errno));
}

static void setenv_u64(const char *name, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	setenv(name, buf, 1);
}

/* A power cut right after entry `entry`: write the state, run the check. */
static void cut(uint64_t entry)
{
	uint64_t complete, partial;
	int fd, rc;

	if (fdatasync(g.target_fd))
		die("fdatasync of --target: %s", strerror(errno));
	fd = open(g.index_image, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("%s: %s", g.index_image, strerror(errno));
	write_at(fd, g.index, g.index_sectors * g.sectorsize, 0);
	close(fd);
	count_slots(&complete, &partial);
	g.cuts++;
	if (complete > g.max_complete)
		g.max_complete = complete;
	setenv_u64("LW_CUT", g.cuts);
	setenv_u64("LW_ENTRY", entry);
	setenv_u64("LW_COMPLETE", complete);
	setenv_u64("LW_PARTIAL", partial);
	rc = system(g.exec_cmd);
	if (rc != 0)
		die("cut %llu (after log entry %llu, %llu slots durable): check '%s' failed (status %d)",
		    (unsigned long long)g.cuts, (unsigned long long)entry,
		    (unsigned long long)complete, g.exec_cmd, WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
}

static void on_mark(const struct lw_entry *e)
{
	g.marks++;
	if (g.from_mark && !strcmp(e->mark, g.from_mark))
		g.started = 1;
	if (g.probe_mark && !strcmp(e->mark, g.probe_mark))
		g.probing = 1;
}

static void process(uint64_t i, const struct lw_entry *e)
{
	int target = e->sector < g.split;

	if (e->flags & LOG_MARK_FLAG) {
		on_mark(e);
		return;
	}
	if (e->flags & LOG_FLUSH_FLAG) {
		if (g.probing && !g.probed) {
			if (target)
				die("the first flush after mark '%s' (sent to the index region) is logged at sector %llu, below --split %llu: this kernel does not remap empty flushes, so they cannot be told apart",
				    g.probe_mark, (unsigned long long)e->sector, (unsigned long long)g.split);
			g.probed = 1;
		}
		if (target) {
			g.target_flushes++;
			flush_target();
		} else {
			g.index_flushes++;
		}
	}
	if (e->flags & LOG_DISCARD_FLAG)
		g.discards++;
	if (e->nr_sectors) {
		if (!target)
			apply_index(e);
		else if (e->flags & LOG_FUA_FLAG)
			apply_target(&(struct pending){ e->data_off, e->sector, e->nr_sectors,
							!!(e->flags & LOG_DISCARD_FLAG) });
		else
			add_pending(e);
	}
	if (e->flags & LOG_FUA_FLAG)
		g.fua++;
	if ((e->flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG)) && g.started)
		cut(i);
}

static void usage(void)
{
	fputs("usage: lwreplay --log DEV --split SECTORS --index-bytes N --target DEV\n"
	      "         --index-image FILE --complete-list FILE --slot-first BYTES\n"
	      "         --slot-bytes BYTES --exec CMD [--from-mark NAME] [--probe-mark NAME]\n",
	      stderr);
	exit(2);
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	if (!*s || *end)
		die("'%s' is not a number", s);
	return v;
}

static void parse_args(int argc, char **argv, const char **log, const char **target,
		       uint64_t *index_bytes)
{
	static const struct option opts[] = {
		{ "log", 1, 0, 'l' },	     { "split", 1, 0, 's' },
		{ "index-bytes", 1, 0, 'b' }, { "target", 1, 0, 't' },
		{ "index-image", 1, 0, 'i' }, { "complete-list", 1, 0, 'c' },
		{ "slot-first", 1, 0, 'f' },  { "slot-bytes", 1, 0, 'z' },
		{ "exec", 1, 0, 'e' },	     { "from-mark", 1, 0, 'm' },
		{ "probe-mark", 1, 0, 'p' },  { 0, 0, 0, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': *log = optarg; break;
		case 's': g.split = num(optarg); break;
		case 'b': *index_bytes = num(optarg); break;
		case 't': *target = optarg; break;
		case 'i': g.index_image = optarg; break;
		case 'c': g.complete_list = optarg; break;
		case 'f': g.slot_first_bytes = num(optarg); break;
		case 'z': g.slot_bytes = num(optarg); break;
		case 'e': g.exec_cmd = optarg; break;
		case 'm': g.from_mark = optarg; break;
		case 'p': g.probe_mark = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || !*log || !*target || !g.split || !*index_bytes ||
	    !g.index_image || !g.complete_list || !g.slot_bytes || !g.exec_cmd)
		usage();
}

int main(int argc, char **argv)
{
	const char *log = NULL, *target = NULL;
	uint64_t index_bytes = 0, super[3], nr_entries, i, pos;
	uint32_t ss;
	unsigned char head[512];
	struct lw_entry e;

	parse_args(argc, argv, &log, &target, &index_bytes);
	g.log_fd = open(log, O_RDONLY);
	if (g.log_fd < 0)
		die("%s: %s", log, strerror(errno));
	g.target_fd = open(target, O_WRONLY);
	if (g.target_fd < 0)
		die("%s: %s", target, strerror(errno));
	read_at(g.log_fd, head, sizeof(head), 0);
	memcpy(super, head, sizeof(super));
	memcpy(&ss, head + sizeof(super), sizeof(ss));
	g.sectorsize = le32toh(ss);
	nr_entries = le64toh(super[2]);
	if (le64toh(super[0]) != WRITE_LOG_MAGIC || le64toh(super[1]) != WRITE_LOG_VERSION)
		die("%s: no dm-log-writes super (magic %llx, version %llu)", log,
		    (unsigned long long)le64toh(super[0]), (unsigned long long)le64toh(super[1]));
	if (g.sectorsize < 512 || g.sectorsize > 4096 || (g.sectorsize & (g.sectorsize - 1)))
		die("%s: log sector size %u", log, g.sectorsize);
	if (nr_entries > MAX_ENTRIES)
		die("%s: %llu entries (at most %u)", log, (unsigned long long)nr_entries, MAX_ENTRIES);
	if (index_bytes % g.sectorsize || g.slot_bytes % g.sectorsize ||
	    g.slot_first_bytes % g.sectorsize)
		die("--index-bytes, --slot-bytes and --slot-first must be multiples of %u", g.sectorsize);
	g.index_sectors = index_bytes / g.sectorsize;
	g.index = calloc(g.index_sectors, g.sectorsize);
	g.covered = calloc(g.split, 1);
	if (!g.index || !g.covered)
		die("out of memory");
	g.started = !g.from_mark;
	for (i = 0, pos = g.sectorsize; i < nr_entries; i++) {
		pos = read_entry(pos, &e);
		process(i, &e);
	}
	if (g.from_mark && !g.started)
		die("mark '%s' not in the log", g.from_mark);
	if (g.probe_mark && !g.probed)
		die("no flush after mark '%s' (the probe of flush attribution)", g.probe_mark);
	printf("lwreplay: %llu entries, %llu marks, %llu cuts checked, %llu target flushes, %llu index flushes, %llu FUA, %llu discards, at most %llu slots durable\n",
	       (unsigned long long)nr_entries, (unsigned long long)g.marks,
	       (unsigned long long)g.cuts, (unsigned long long)g.target_flushes,
	       (unsigned long long)g.index_flushes, (unsigned long long)g.fua,
	       (unsigned long long)g.discards, (unsigned long long)g.max_complete);
	return 0;
}
