// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec - buffer memory: MMAP (driver pages), USERPTR (pinned user pages),
 * streaming DMA mappings and the mmap() of the ring.
 */
#include <linux/capability.h>
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/pci.h>
#include <linux/gfp.h>
#include <linux/iommu.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/sched/user.h>
#include <linux/sysfs.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/hugetlb.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/version.h>

#include "dmarec_drv.h"

#define DMAREC_HEADER_PAGES	(DMAREC_HEADER_BYTES >> PAGE_SHIFT)

static unsigned int max_mmap_mb;
module_param(max_mmap_mb, uint, 0444);
MODULE_PARM_DESC(max_mmap_mb, "MMAP ring memory of all cards together, MiB (0 = half of RAM)");

/* MMAP ring pages of all cards (module-wide limit) */
static atomic_long_t dmarec_mmap_pages = ATOMIC_LONG_INIT(0);

/*
 * Pages the driver holds a reference on (MMAP rings), counted at the
 * allocation and at the free call itself, so a leak check can ask for an
 * exact return to 0 (read-only parameter pages_held).
 */
static atomic_long_t dmarec_pages_held = ATOMIC_LONG_INIT(0);

static int dmarec_pages_held_get(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%ld\n", atomic_long_read(&dmarec_pages_held));
}

static const struct kernel_param_ops dmarec_pages_held_ops = {
	.get = dmarec_pages_held_get,
};
module_param_cb(pages_held, &dmarec_pages_held_ops, NULL, 0444);
MODULE_PARM_DESC(pages_held, "MMAP ring pages the driver holds now (read-only)");

/*
 * ------------------------------------------------------------------------
 * MMAP memory
 *
 * Payload memory comes from alloc_pages(__GFP_COMP) in the largest chunks
 * that are available (up to DMAREC_MAX_CHUNK_ORDER), falling back to smaller
 * orders, in the spirit of videobuf2-dma-sg. Compound pages are used rather
 * than split high-order pages because:
 *  - every page handed to vm_insert_pages() carries a valid refcount (the
 *    compound head's), so a reference taken on any page of the chunk by
 *    the page tables, by GUP/io_uring pins or by our ->fault keeps the whole
 *    chunk alive even after the driver frees the ring;
 *  - a pin of a compound chunk is one folio, and newer io_uring coalesces
 *    such registered buffers;
 *  - the sg table needs few entries.
 * Order-0 allocations are plain pages. All memory is zeroed (__GFP_ZERO)
 * before userspace can see it. The allocations are unmovable kernel memory,
 * so FOLL_LONGTERM pins by io_uring never need to migrate them.
 * ------------------------------------------------------------------------
 */

static struct page *dmarec_alloc_chunk(unsigned int *order)
{
	/* charged to the caller's memory cgroup, like any user memory */
	const gfp_t base = GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN;
	struct page *page;

	for (;;) {
		if (*order == 0)
			return alloc_page(base | __GFP_RETRY_MAYFAIL);
		page = alloc_pages(base | __GFP_COMP | __GFP_NORETRY, *order);
		if (page)
			return page;
		(*order)--;
	}
}

static void dmarec_free_page_array(struct page **pages, unsigned int nr)
{
	unsigned int i = 0;

	while (i < nr) {
		struct page *page = pages[i];
		unsigned int order = compound_order(page);

		__free_pages(page, order);
		atomic_long_sub(1L << order, &dmarec_pages_held);
		i += 1u << order;
	}
}

/* Fill pages[0..nr) with zeroed memory; chunk heads are at chunk starts. */
static int dmarec_alloc_page_array(struct page **pages, unsigned int nr,
				   unsigned int max_order)
{
	unsigned int done = 0;

	while (done < nr) {
		unsigned int order = min_t(unsigned int, max_order,
					   ilog2(nr - done));
		struct page *page = dmarec_alloc_chunk(&order);
		unsigned int i;

		if (!page) {
			dmarec_free_page_array(pages, done);
			return -ENOMEM;
		}
		atomic_long_add(1L << order, &dmarec_pages_held);
		for (i = 0; i < (1u << order); i++)
			pages[done + i] = nth_page(page, i);
		done += 1u << order;
		cond_resched();
	}
	return 0;
}

/*
 * Zero copy needs every page of RAM reachable by the device without bounce
 * buffers: either an IOMMU translates for it (IOVAs are allocated below its
 * mask) or its mask covers all of RAM. Otherwise swiotlb would copy each
 * buffer behind our back, or the mapping would fail for some buffers only.
 */
static bool dmarec_iommu_translates(struct device *dev)
{
	struct iommu_domain *dom = iommu_get_domain_for_dev(dev);

	return dom && (dom->type & __IOMMU_DOMAIN_PAGING);
}

/*
 * Would DMA to this segment be copied by the CPU (bounce buffer) or need
 * cache maintenance? With a translating IOMMU the DMA layer bounces only
 * sub-page pieces for untrusted (external) devices, and our segments are
 * whole pages; what is left is coherency. (6.1's dma_need_sync() answers
 * true for every IOMMU mapping, so it cannot be asked there.) Without an
 * IOMMU dma_need_sync() tells a swiotlb bounce apart exactly.
 */
static bool dmarec_dma_copies(struct device *dev, dma_addr_t addr)
{
	if (dmarec_iommu_translates(dev))
		return !dev_is_dma_coherent(dev) ||
		       (dev_is_pci(dev) && to_pci_dev(dev)->untrusted);
	return dma_need_sync(dev, addr);
}

int dmarec_zero_copy_check(struct dmarec_card *card)
{
	struct device *dev = card->dma_dev;
	u64 mask = dma_get_mask(dev), need = dma_get_required_mask(dev);

	if (dmarec_iommu_translates(dev))
		return 0;
	if (mask >= need)
		return 0;
	dev_err_ratelimited(dev, "%s: zero copy refused: the card's DMA mask %#llx does not reach all RAM (%#llx) and no IOMMU translates for it, so DMA would be bounced through swiotlb; enable an IOMMU (intel_iommu=on) or give the card a wider DMA mask\n",
			    card->name, (unsigned long long)mask,
			    (unsigned long long)need);
	return -EOPNOTSUPP;
}

static int dmarec_dma_map(struct dmarec_ring *ring, struct dmarec_buf *buf)
{
	struct device *dev = ring->card->dma_dev;
	struct scatterlist *sg;
	unsigned int i;
	int ret;

	/* segments no longer than the device takes (dma_set_max_seg_size) */
	ret = sg_alloc_table_from_pages_segment(&buf->sgt, buf->payload,
						buf->nr_payload, 0,
						ring->payload_bytes,
						dma_get_max_seg_size(dev) &
						PAGE_MASK, GFP_KERNEL);
	if (ret)
		return ret;
	buf->sgt_allocated = true;

	ret = dma_map_sgtable(dev, &buf->sgt, DMA_FROM_DEVICE, 0);
	if (ret) {
		dev_err_ratelimited(dev, "%s: cannot map a buffer for DMA (%d): the device's DMA mask %#llx does not reach it and there is no IOMMU\n",
				    ring->card->name, ret,
				    (unsigned long long)dma_get_mask(dev));
		goto err_free_sgt;
	}

	/*
	 * Zero copy means the device writes the very pages userspace and the
	 * disk see. A mapping that needs syncs is bounced (swiotlb) or
	 * non-coherent: the data would be copied by the CPU behind our back
	 * (or, for the simulated card that writes through the CPU, lost).
	 * Refuse it with a message instead of copying silently.
	 */
	for_each_sgtable_dma_sg(&buf->sgt, sg, i) {
		if (dmarec_dma_copies(dev, sg_dma_address(sg))) {
			dev_err_ratelimited(dev, "%s: DMA to this buffer would be bounced (swiotlb) or needs cache maintenance: zero copy refused; give the device a wider DMA mask or enable an IOMMU\n",
					    ring->card->name);
			ret = -EOPNOTSUPP;
			goto err_unmap;
		}
	}
	buf->dma_mapped = true;
	return 0;

err_unmap:
	dma_unmap_sgtable(dev, &buf->sgt, DMA_FROM_DEVICE, 0);
err_free_sgt:
	sg_free_table(&buf->sgt);
	buf->sgt_allocated = false;
	return ret;
}

static void dmarec_dma_unmap(struct dmarec_ring *ring, struct dmarec_buf *buf)
{
	if (buf->dma_mapped)
		dma_unmap_sgtable(ring->card->dma_dev, &buf->sgt,
				  DMA_FROM_DEVICE, 0);
	buf->dma_mapped = false;
	if (buf->sgt_allocated)
		sg_free_table(&buf->sgt);
	buf->sgt_allocated = false;
}

static int dmarec_buf_alloc_mmap(struct dmarec_ring *ring,
				 struct dmarec_buf *buf)
{
	unsigned int nr = ring->pages_per_buf;
	int ret;

	buf->pages = kvcalloc(nr, sizeof(*buf->pages), GFP_KERNEL);
	if (!buf->pages)
		return -ENOMEM;

	/* Header pages: order 0, never DMA mapped. */
	ret = dmarec_alloc_page_array(buf->pages, DMAREC_HEADER_PAGES, 0);
	if (ret)
		goto err_free_array;
	ret = dmarec_alloc_page_array(buf->pages + DMAREC_HEADER_PAGES,
				      nr - DMAREC_HEADER_PAGES,
				      DMAREC_MAX_CHUNK_ORDER);
	if (ret)
		goto err_free_header;

	buf->nr_pages = nr;
	buf->payload = buf->pages + DMAREC_HEADER_PAGES;
	buf->nr_payload = nr - DMAREC_HEADER_PAGES;

	ret = dmarec_dma_map(ring, buf);
	if (ret)
		goto err_free_payload;
	buf->attached = true;
	return 0;

err_free_payload:
	dmarec_free_page_array(buf->payload, buf->nr_payload);
err_free_header:
	dmarec_free_page_array(buf->pages, DMAREC_HEADER_PAGES);
err_free_array:
	kvfree(buf->pages);
	buf->pages = NULL;
	buf->nr_pages = 0;
	buf->payload = NULL;
	buf->nr_payload = 0;
	return ret;
}

/*
 * ------------------------------------------------------------------------
 * USERPTR memory: long-term pins, charged to the pinning mm's pinned_vm
 * against RLIMIT_MEMLOCK (unless CAP_IPC_LOCK), as RDMA's ib_umem does.
 * ------------------------------------------------------------------------
 */

static int dmarec_charge_pinned(struct mm_struct *mm, unsigned long npages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	s64 pinned = atomic64_add_return(npages, &mm->pinned_vm);

	if (pinned > limit && !capable(CAP_IPC_LOCK)) {
		atomic64_sub(npages, &mm->pinned_vm);
		return -ENOMEM;
	}
	return 0;
}

static void dmarec_uncharge_pinned(struct mm_struct *mm, unsigned long npages)
{
	atomic64_sub(npages, &mm->pinned_vm);
}

/*
 * mmap_lock held. Long-term writable pins are only sound for memory that no
 * filesystem writes back behind the pin: anonymous, shmem/memfd and hugetlbfs.
 * A MAP_SHARED file on ext4/btrfs/a block device would have its pages
 * written back and cleaned while the card still writes them (newer kernels
 * refuse such pins in GUP; 6.1 does not), so refuse any other file here.
 */
static int dmarec_check_user_range(struct mm_struct *mm, unsigned long start,
				   unsigned long end)
{
	struct vm_area_struct *vma;

	while (start < end) {
		vma = find_vma(mm, start);
		if (!vma || vma->vm_start > start)
			return -EFAULT;
		if (vma->vm_file && !shmem_file(vma->vm_file) &&
		    !is_vm_hugetlb_page(vma))
			return -EFAULT;
		start = vma->vm_end;
	}
	return 0;
}

/* Pin nr pages at addr for the card, or fail with nothing pinned. */
static int dmarec_pin_user(struct mm_struct *mm, unsigned long addr,
			   unsigned int nr, struct page **pages)
{
	const unsigned int flags = FOLL_WRITE | FOLL_LONGTERM;
	long pinned;
	int ret;

	if (mmap_read_lock_killable(mm))
		return -EINTR;
	/* checked and pinned under one lock: the VMAs cannot change between */
	ret = dmarec_check_user_range(mm, addr, addr + ((unsigned long)nr << PAGE_SHIFT));
	if (ret)
		goto out;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	pinned = pin_user_pages(addr, nr, flags, pages);
#else
	pinned = pin_user_pages(addr, nr, flags, pages, NULL);
#endif
	if (pinned < 0) {
		ret = pinned;
	} else if (pinned != nr) {
		unpin_user_pages(pages, pinned);
		ret = -EFAULT;
	}
out:
	mmap_read_unlock(mm);
	return ret;
}

/*
 * Pin nr pages at addr for a buffer, without any card lock held: the pin
 * may fault in memory, take mmap_lock and sleep for as long as userspace
 * (userfaultfd, a slow file system) makes it. On success pin owns the
 * pages, the pinned_vm charge and a reference on the mm until it is
 * installed (dmarec_buf_install_userptr) or undone (dmarec_unpin_userptr).
 */
int dmarec_pin_userptr(struct dmarec_pin *pin, unsigned long addr,
		       unsigned int nr)
{
	struct mm_struct *mm = current->mm;
	int ret;

	memset(pin, 0, sizeof(*pin));
	if (!mm)
		return -EFAULT;
	ret = dmarec_charge_pinned(mm, nr);
	if (ret)
		return ret;
	pin->pages = kvcalloc(nr, sizeof(*pin->pages), GFP_KERNEL);
	if (!pin->pages) {
		ret = -ENOMEM;
		goto err_uncharge;
	}
	ret = dmarec_pin_user(mm, addr, nr, pin->pages);
	if (ret)
		goto err_free_array;
	mmgrab(mm);
	pin->mm = mm;
	pin->nr = nr;
	return 0;

err_free_array:
	kvfree(pin->pages);
	pin->pages = NULL;
err_uncharge:
	dmarec_uncharge_pinned(mm, nr);
	return ret;
}

/* Undo a pin that was never installed. No card lock needed (or wanted). */
void dmarec_unpin_userptr(struct dmarec_pin *pin)
{
	if (!pin->pages)
		return;
	/* never given to the device: the pages are as userspace left them */
	unpin_user_pages(pin->pages, pin->nr);
	dmarec_uncharge_pinned(pin->mm, pin->nr);
	mmdrop(pin->mm);
	kvfree(pin->pages);
	memset(pin, 0, sizeof(*pin));
}

/*
 * card->lock held, the card alive, the buffer not attached: map the pinned
 * pages for the card's DMA and hand them to the buffer. On success the
 * buffer owns what pin held and pin is empty; on failure pin still owns it
 * all (the caller unpins after dropping the lock).
 */
int dmarec_buf_install_userptr(struct dmarec_ring *ring, struct dmarec_buf *buf,
			       struct dmarec_pin *pin)
{
	int ret;

	if (WARN_ON_ONCE(buf->attached || !pin->pages ||
			 pin->nr != ring->payload_bytes >> PAGE_SHIFT))
		return -EINVAL;
	buf->pages = pin->pages;
	buf->nr_pages = pin->nr;
	buf->payload = pin->pages;
	buf->nr_payload = pin->nr;
	ret = dmarec_dma_map(ring, buf);
	if (ret) {
		buf->pages = NULL;
		buf->payload = NULL;
		buf->nr_pages = 0;
		buf->nr_payload = 0;
		return ret;
	}
	buf->pin_mm = pin->mm;
	buf->attached = true;
	memset(pin, 0, sizeof(*pin));
	return 0;
}

static void dmarec_buf_release(struct dmarec_ring *ring, struct dmarec_buf *buf)
{
	if (!buf->attached)
		return;

	dmarec_dma_unmap(ring, buf);
	if (ring->memory == DMAREC_MEMORY_MMAP) {
		dmarec_free_page_array(buf->pages, buf->nr_pages);
	} else {
		/* The card may have written every page: mark them dirty. */
		unpin_user_pages_dirty_lock(buf->pages, buf->nr_pages, true);
		dmarec_uncharge_pinned(buf->pin_mm, buf->nr_pages);
		mmdrop(buf->pin_mm);
		buf->pin_mm = NULL;
	}
	kvfree(buf->pages);
	buf->pages = NULL;
	buf->payload = NULL;
	buf->nr_pages = 0;
	buf->nr_payload = 0;
	buf->attached = false;
}

/*
 * ------------------------------------------------------------------------
 * Ring
 * ------------------------------------------------------------------------
 */

/*
 * MMAP memory is locked kernel memory handed to a user: charge it to the
 * user's locked_vm against RLIMIT_MEMLOCK unless CAP_IPC_LOCK (as io_uring
 * charges its rings and registered buffers), and to a module-wide limit
 * (like udmabuf's size_limit_mb), since the node may be opened by a group.
 */
static int dmarec_charge_mmap(struct dmarec_ring *ring, unsigned long npages)
{
	unsigned long limit = max_mmap_mb ?
		(unsigned long)max_mmap_mb << (20 - PAGE_SHIFT) :
		totalram_pages() / 2;
	unsigned long user_limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	struct user_struct *user;

	if (atomic_long_add_return(npages, &dmarec_mmap_pages) > limit) {
		atomic_long_sub(npages, &dmarec_mmap_pages);
		return -ENOMEM;
	}
	user = get_uid(current_user());
	if (atomic_long_add_return(npages, &user->locked_vm) > user_limit &&
	    !capable(CAP_IPC_LOCK)) {
		atomic_long_sub(npages, &user->locked_vm);
		atomic_long_sub(npages, &dmarec_mmap_pages);
		free_uid(user);
		return -ENOMEM;
	}
	ring->user = user;
	ring->charged_pages = npages;
	return 0;
}

static void dmarec_uncharge_mmap(struct dmarec_ring *ring)
{
	if (!ring->user)
		return;
	atomic_long_sub(ring->charged_pages, &ring->user->locked_vm);
	atomic_long_sub(ring->charged_pages, &dmarec_mmap_pages);
	free_uid(ring->user);
	ring->user = NULL;
}

struct dmarec_ring *dmarec_ring_alloc(struct dmarec_card *card, u32 memory,
				      u32 count, u32 payload_bytes)
{
	struct dmarec_ring *ring;
	u32 i;
	int ret;

	ring = kvzalloc(struct_size(ring, bufs, count), GFP_KERNEL);
	if (!ring)
		return ERR_PTR(-ENOMEM);

	ring->card = card;
	ring->memory = memory;
	ring->count = count;
	ring->payload_bytes = payload_bytes;
	ring->stride = (u64)DMAREC_HEADER_BYTES + payload_bytes;
	ring->pages_per_buf = ring->stride >> PAGE_SHIFT;

	for (i = 0; i < count; i++) {
		INIT_LIST_HEAD(&ring->bufs[i].list);
		ring->bufs[i].index = i;
		ring->bufs[i].state = DMAREC_BUF_USER;
	}

	if (memory != DMAREC_MEMORY_MMAP)
		return ring;

	ret = dmarec_charge_mmap(ring, (unsigned long)count * ring->pages_per_buf);
	if (ret)
		goto err_free;
	for (i = 0; i < count; i++) {
		ret = dmarec_buf_alloc_mmap(ring, &ring->bufs[i]);
		if (ret)
			goto err_free;
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto err_free;
		}
	}
	return ring;

err_free:
	dmarec_ring_free(ring);
	return ERR_PTR(ret);
}

/*
 * The device is going away: drop every DMA mapping now, keep the memory
 * (userspace may still map or pin it) until the ring is freed.
 * Caller guarantees: card stopped.
 */
void dmarec_ring_unmap_dma(struct dmarec_ring *ring)
{
	u32 i;

	for (i = 0; i < ring->count; i++)
		dmarec_dma_unmap(ring, &ring->bufs[i]);
}

/* Caller guarantees: card stopped, no VMA maps the ring. */
void dmarec_ring_free(struct dmarec_ring *ring)
{
	u32 i;

	if (!ring)
		return;
	for (i = 0; i < ring->count; i++) {
		dmarec_buf_release(ring, &ring->bufs[i]);
		cond_resched();
	}
	dmarec_uncharge_mmap(ring);
	kvfree(ring);
}

void dmarec_buf_sync_for_device(struct dmarec_ring *ring,
				struct dmarec_buf *buf)
{
	if (!buf->dma_mapped)
		return;
	dma_sync_sgtable_for_device(ring->card->dma_dev, &buf->sgt,
				    DMA_FROM_DEVICE);
}

void dmarec_buf_sync_for_cpu(struct dmarec_ring *ring, struct dmarec_buf *buf)
{
	if (!buf->dma_mapped)
		return;
	dma_sync_sgtable_for_cpu(ring->card->dma_dev, &buf->sgt,
				 DMA_FROM_DEVICE);
}

/*
 * ------------------------------------------------------------------------
 * mmap of an MMAP ring: real struct pages inserted with vm_insert_pages(),
 * never a PFN map, so GUP (O_DIRECT, io_uring buffer registration) works
 * on it wherever the core kernel allows file-backed long-term pins.
 * ------------------------------------------------------------------------
 */

static struct page *dmarec_ring_page(struct dmarec_ring *ring,
				     unsigned long pgoff)
{
	unsigned long total = (unsigned long)ring->count * ring->pages_per_buf;

	if (pgoff >= total)
		return NULL;
	return ring->bufs[pgoff / ring->pages_per_buf]
		.pages[pgoff % ring->pages_per_buf];
}

static void dmarec_vm_open(struct vm_area_struct *vma)
{
	struct dmarec_ring *ring = vma->vm_private_data;

	atomic_inc(&ring->card->mmap_count);
}

static void dmarec_vm_close(struct vm_area_struct *vma)
{
	struct dmarec_ring *ring = vma->vm_private_data;

	atomic_dec(&ring->card->mmap_count);
}

/*
 * Pages are inserted up front; this only runs if userspace zapped them
 * (e.g. MADV_DONTNEED). The ring cannot be freed while a VMA exists.
 * The page is inserted here, one PTE, rather than returned in vmf->page:
 * a tail page of a compound chunk handed to the core's fault path may be
 * mapped as part of a large folio (whole-PMD on newer kernels), shifted
 * against the VMA. VM_MIXEDMAP is already set by vm_insert_pages().
 */
static vm_fault_t dmarec_vm_fault(struct vm_fault *vmf)
{
	struct dmarec_ring *ring = vmf->vma->vm_private_data;
	struct page *page = dmarec_ring_page(ring, vmf->pgoff);

	if (!page)
		return VM_FAULT_SIGBUS;
	return vmf_insert_page(vmf->vma, vmf->address, page);
}

static const struct vm_operations_struct dmarec_vm_ops = {
	.open = dmarec_vm_open,
	.close = dmarec_vm_close,
	.fault = dmarec_vm_fault,
};

static int dmarec_insert_range(struct vm_area_struct *vma,
			       struct dmarec_ring *ring)
{
	unsigned long pgoff = vma->vm_pgoff;
	unsigned long left = vma_pages(vma);
	unsigned long addr = vma->vm_start;

	while (left) {
		struct dmarec_buf *buf = &ring->bufs[pgoff / ring->pages_per_buf];
		unsigned long off = pgoff % ring->pages_per_buf;
		unsigned long n = min_t(unsigned long, left,
					ring->pages_per_buf - off);
		unsigned long num = n;
		int ret;

		ret = vm_insert_pages(vma, addr, buf->pages + off, &num);
		if (ret)
			return ret;
		if (num)
			return -EFAULT;
		addr += n << PAGE_SHIFT;
		pgoff += n;
		left -= n;
	}
	return 0;
}

int dmarec_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct miscdevice *misc = file->private_data;
	struct dmarec_card *card = container_of(misc, struct dmarec_card, misc);
	struct dmarec_ring *ring;
	unsigned long total;
	int ret;

	mutex_lock(&card->ring_lock);
	ring = card->ring;
	ret = -ENODEV;
	if (card->dead)
		goto out;
	ret = -EINVAL;
	if (!ring || ring->memory != DMAREC_MEMORY_MMAP)
		goto out;
	ret = -EBUSY;
	if (card->owner != file)
		goto out;
	ret = -EINVAL;
	if (!(vma->vm_flags & VM_SHARED))
		goto out;
	total = (unsigned long)ring->count * ring->pages_per_buf;
	if (vma->vm_pgoff >= total || vma_pages(vma) > total - vma->vm_pgoff)
		goto out;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
#else
	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP;
#endif
	ret = dmarec_insert_range(vma, ring);
	if (ret)
		goto out;	/* the core unmaps the VMA on failure */

	vma->vm_private_data = ring;
	vma->vm_ops = &dmarec_vm_ops;
	atomic_inc(&card->mmap_count);
out:
	mutex_unlock(&card->ring_lock);
	return ret;
}
