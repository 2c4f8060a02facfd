// SPDX-License-Identifier: GPL-2.0
/*
 * dmarec - QEMU's "edu" PCI device (1234:11e8, docs/specs/edu.rst) as a
 * capture card: the worked example of a backend for real hardware.
 *
 * edu has a DMA engine between guest memory and its own 4 KiB buffer at
 * device address 0x40000 (registers 0x80 source, 0x88 destination, 0x90
 * count, 0x98 command: bit 0 start, bit 1 direction 1 = buffer to RAM,
 * bit 2 interrupt when done), interrupt status at 0x24 and acknowledge at
 * 0x64 (bit 8 = DMA), one MSI vector. A transfer takes ~100 ms (a QEMU
 * timer); QEMU 7.2 aborts on a transfer that ends at the buffer's last
 * byte, so transfers here are EDU_CHUNK_BYTES.
 *
 * The card's data is the payload pattern (dmarec_pattern_fill, as the
 * simulated card writes it), handed over the way a real card would: per
 * chunk of a queued buffer, the CPU writes the chunk's pattern into a
 * coherent "source" page, the device reads it into its buffer (RAM to
 * device) and then writes it to the chunk's DMA address from the buffer's
 * sg table (device to RAM). The threaded MSI handler reads the interrupt
 * status before it hands a buffer on: the read completes only after the
 * device's posted writes, so the data is in memory when DQBUF returns it.
 *
 * The card free-runs while streaming: when it starts a buffer and none is
 * queued, it writes that buffer's data into a scratch area and counts it as
 * lost (overrun), as a real card drops data nobody has room for.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>

#include "dmarec_drv.h"

#define EDU_REG_ID		0x00	/* 0xMMmm00ed: version, 0xed */
#define EDU_REG_IRQ_STATUS	0x24
#define EDU_REG_IRQ_ACK		0x64
#define EDU_REG_DMA_SRC		0x80
#define EDU_REG_DMA_DST		0x88
#define EDU_REG_DMA_COUNT	0x90
#define EDU_REG_DMA_CMD		0x98

#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2	/* device buffer -> RAM */
#define EDU_DMA_IRQ		0x4
#define EDU_IRQ_DMA		0x100
#define EDU_BUF_ADDR		0x40000	/* the device's 4 KiB buffer */

/* Below 4095 (QEMU 7.2's limit), a divisor of the page size. */
#define EDU_CHUNK_BYTES		2048u
/* Source pattern at offset 0 of the coherent page, scratch after it. */
#define EDU_SCRATCH_OFF		EDU_CHUNK_BYTES
/* Ten transfers: a stuck device, not a slow one. */
#define EDU_STOP_TIMEOUT_MS	1000

static unsigned int edu_dma_bits = 28;
module_param(edu_dma_bits, uint, 0444);
MODULE_PARM_DESC(edu_dma_bits, "address bits of the edu card's DMA (QEMU's dma_mask property; 28 by default, 64 for dma_mask=0xffffffffffffffff)");

enum edu_phase {
	EDU_IDLE,
	EDU_LOAD,	/* pattern page -> device buffer */
	EDU_STORE,	/* device buffer -> buffer chunk (or scratch) */
};

struct dmarec_edu {
	struct pci_dev *pdev;
	void __iomem *regs;
	struct dmarec_card *card;
	int irq;
	__le64 *page;			/* coherent: pattern + scratch */
	dma_addr_t page_dma;

	struct mutex eng_lock;		/* the engine state below */
	wait_queue_head_t idle_wq;
	enum edu_phase phase;
	bool stopping;
	bool suspended;			/* system sleep: no transfer allowed */
	struct dmarec_buf *cur;		/* NULL: dropping a lost buffer */
	struct scatterlist *sg;		/* current DMA segment of cur */
	unsigned int sg_left;		/* DMA segments left, sg included */
	u32 sg_off;
	u32 payload_bytes;
	u32 done_bytes;
	u32 chunk_bytes;
	dma_addr_t chunk_dma;
	u64 seed;
};

static void edu_dma(struct dmarec_edu *edu, u64 src, u64 dst, u32 count,
		    u32 dir)
{
	writeq(src, edu->regs + EDU_REG_DMA_SRC);
	writeq(dst, edu->regs + EDU_REG_DMA_DST);
	writeq(count, edu->regs + EDU_REG_DMA_COUNT);
	/* writeq orders the CPU's pattern writes before the device's read */
	writeq(EDU_DMA_RUN | EDU_DMA_IRQ | dir, edu->regs + EDU_REG_DMA_CMD);
}

/* eng_lock held: a new buffer (or a lost one when nothing is queued). */
static void edu_begin_buffer(struct dmarec_edu *edu)
{
	struct dmarec_buf *buf = dmarec_card_take(edu->card);

	edu->cur = buf;
	edu->done_bytes = 0;
	edu->sg_off = 0;
	edu->sg = buf ? buf->sgt.sgl : NULL;
	edu->sg_left = buf ? buf->sgt.nents : 0;
	edu->seed = buf ? dmarec_pattern_seed(buf->seq, buf->channel) : 0;
}

/* eng_lock held: where the next chunk goes; false if the buffer is done. */
static bool edu_next_chunk(struct dmarec_edu *edu)
{
	u32 left = edu->payload_bytes - edu->done_bytes;

	if (!left)
		return false;
	if (!edu->cur) {
		edu->chunk_dma = edu->page_dma + EDU_SCRATCH_OFF;
		edu->chunk_bytes = min(left, EDU_CHUNK_BYTES);
		return true;
	}
	if (edu->sg_off == sg_dma_len(edu->sg)) {
		edu->sg = sg_next(edu->sg);
		edu->sg_left--;
		edu->sg_off = 0;
	}
	/* the DMA segments add up to the payload: dmarec_dma_map() */
	if (WARN_ON_ONCE(!edu->sg_left || !edu->sg))
		return false;
	edu->chunk_dma = sg_dma_address(edu->sg) + edu->sg_off;
	edu->chunk_bytes = min3(left, EDU_CHUNK_BYTES,
				sg_dma_len(edu->sg) - edu->sg_off);
	return true;
}

/* eng_lock held: the engine stops; an unfinished buffer goes back. */
static void edu_park(struct dmarec_edu *edu)
{
	if (edu->cur)
		dmarec_card_requeue(edu->card, edu->cur);
	edu->cur = NULL;
	WRITE_ONCE(edu->phase, EDU_IDLE);
	wake_up_all(&edu->idle_wq);
}

/* eng_lock held: start the next chunk's first transfer. */
static void edu_issue(struct dmarec_edu *edu)
{
	if (!edu_next_chunk(edu)) {
		edu_park(edu);
		return;
	}
	if (!edu->cur) {
		/* dropped data: content does not matter */
		edu->phase = EDU_STORE;
		edu_dma(edu, EDU_BUF_ADDR, edu->chunk_dma, edu->chunk_bytes,
			EDU_DMA_TO_RAM);
		return;
	}
	dmarec_pattern_fill(edu->page, edu->seed,
			    edu->done_bytes / sizeof(u64),
			    edu->chunk_bytes / sizeof(u64));
	edu->phase = EDU_LOAD;
	edu_dma(edu, edu->page_dma, EDU_BUF_ADDR, edu->chunk_bytes, 0);
}

/* eng_lock held: a STORE completed. */
static void edu_stored(struct dmarec_edu *edu)
{
	edu->done_bytes += edu->chunk_bytes;
	edu->sg_off += edu->chunk_bytes;
	if (edu->done_bytes == edu->payload_bytes) {
		if (edu->cur)
			dmarec_card_complete(edu->card, edu->cur);
		else
			dmarec_card_lost(edu->card, 1);
		edu->cur = NULL;
		if (edu->stopping) {
			edu_park(edu);
			return;
		}
		edu_begin_buffer(edu);
	} else if (edu->stopping) {
		edu_park(edu);
		return;
	}
	edu_issue(edu);
}

/* Hard IRQ: is it our DMA interrupt? Acknowledge it. */
static irqreturn_t edu_irq(int irq, void *data)
{
	struct dmarec_edu *edu = data;
	u32 status = readl(edu->regs + EDU_REG_IRQ_STATUS);

	if (!(status & EDU_IRQ_DMA))
		return IRQ_NONE;
	writel(EDU_IRQ_DMA, edu->regs + EDU_REG_IRQ_ACK);
	return IRQ_WAKE_THREAD;
}

/* Thread: the transfer finished (the status read above flushed its data). */
static irqreturn_t edu_irq_thread(int irq, void *data)
{
	struct dmarec_edu *edu = data;

	mutex_lock(&edu->eng_lock);
	switch (edu->phase) {
	case EDU_LOAD:
		if (edu->stopping) {
			edu_park(edu);
			break;
		}
		edu->phase = EDU_STORE;
		edu_dma(edu, EDU_BUF_ADDR, edu->chunk_dma, edu->chunk_bytes,
			EDU_DMA_TO_RAM);
		break;
	case EDU_STORE:
		edu_stored(edu);
		break;
	case EDU_IDLE:
		break;	/* late interrupt after a forced stop */
	}
	mutex_unlock(&edu->eng_lock);
	return IRQ_HANDLED;
}

static int edu_start(struct dmarec_card *card)
{
	struct dmarec_edu *edu = card->priv;

	mutex_lock(&edu->eng_lock);
	WARN_ON(edu->phase != EDU_IDLE);
	edu->stopping = false;
	edu->payload_bytes = card->ring->payload_bytes;
	/* while suspended edu_resume() starts the engine */
	if (!edu->suspended) {
		edu_begin_buffer(edu);
		edu_issue(edu);
	}
	mutex_unlock(&edu->eng_lock);
	return 0;
}

static bool edu_idle(struct dmarec_edu *edu)
{
	/* no lock: called as a wait condition (task not running) */
	return READ_ONCE(edu->phase) == EDU_IDLE;
}

/* Waits for the transfer in flight (edu cannot abort one). */
static void edu_stop(struct dmarec_card *card)
{
	struct dmarec_edu *edu = card->priv;

	mutex_lock(&edu->eng_lock);
	edu->stopping = true;
	mutex_unlock(&edu->eng_lock);
	if (wait_event_timeout(edu->idle_wq, edu_idle(edu),
			       msecs_to_jiffies(EDU_STOP_TIMEOUT_MS)))
		return;
	mutex_lock(&edu->eng_lock);
	if (edu->phase != EDU_IDLE) {
		dev_err(&edu->pdev->dev, "%s: DMA engine still busy after %d ms (command %#x); stopping anyway\n",
			card->name, EDU_STOP_TIMEOUT_MS,
			readl(edu->regs + EDU_REG_DMA_CMD));
		edu_park(edu);
	}
	mutex_unlock(&edu->eng_lock);
}

/*
 * System sleep (suspend, hibernation). After this callback the PCI core
 * turns the device's bus mastering off (and back on before edu_resume), so
 * a transfer started or in flight then would write nowhere and its MSI
 * would be lost: the engine stops here as for STREAMOFF, the buffer it was
 * filling goes back to the queue with its number, and the stream itself
 * stays on. Userspace is frozen (no ioctl holds or waits for card->lock in
 * a freezable sleep), so taking it cannot wait for a frozen task.
 */
static int edu_suspend(struct device *dev)
{
	struct dmarec_edu *edu = dev_get_drvdata(dev);
	struct dmarec_card *card = edu->card;

	mutex_lock(&card->lock);
	if (card->streaming && !edu->suspended)
		edu_stop(card);
	mutex_lock(&edu->eng_lock);
	edu->suspended = true;
	mutex_unlock(&edu->eng_lock);
	mutex_unlock(&card->lock);
	return 0;
}

/* Bus mastering is back: a stream that was on goes on where it stopped. */
static int edu_resume(struct device *dev)
{
	struct dmarec_edu *edu = dev_get_drvdata(dev);
	struct dmarec_card *card = edu->card;

	mutex_lock(&card->lock);
	mutex_lock(&edu->eng_lock);
	edu->suspended = false;
	mutex_unlock(&edu->eng_lock);
	if (card->streaming && !card->dead)
		edu_start(card);
	mutex_unlock(&card->lock);
	return 0;
}

static DEFINE_SIMPLE_DEV_PM_OPS(edu_pm_ops, edu_suspend, edu_resume);

static const struct dmarec_card_ops dmarec_edu_ops = {
	.name = "edu",
	.start = edu_start,
	.stop = edu_stop,
};

/* Bus mastering, the DMA mask the card has, its segment limit. */
static int edu_setup_dma(struct dmarec_edu *edu)
{
	struct device *dev = &edu->pdev->dev;
	int ret;

	if (edu_dma_bits < 24 || edu_dma_bits > 64) {
		dev_err(dev, "edu_dma_bits=%u: must be 24..64\n", edu_dma_bits);
		return -EINVAL;
	}
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(edu_dma_bits));
	if (ret) {
		dev_err(dev, "no usable %u-bit DMA: %d\n", edu_dma_bits, ret);
		return ret;
	}
	/* the engine splits segments itself: any length is fine */
	dma_set_max_seg_size(dev, DMAREC_MAX_PAYLOAD);
	pci_set_master(edu->pdev);
	edu->page = dma_alloc_coherent(dev, PAGE_SIZE, &edu->page_dma,
				       GFP_KERNEL);
	if (!edu->page) {
		pci_clear_master(edu->pdev);
		return -ENOMEM;
	}
	return 0;
}

static void edu_teardown_dma(struct dmarec_edu *edu)
{
	dma_free_coherent(&edu->pdev->dev, PAGE_SIZE, edu->page,
			  edu->page_dma);
	pci_clear_master(edu->pdev);
}

static int edu_map_regs(struct dmarec_edu *edu)
{
	struct pci_dev *pdev = edu->pdev;
	u32 id;
	int ret;

	ret = pci_request_region(pdev, 0, KBUILD_MODNAME);
	if (ret)
		return ret;
	edu->regs = pci_iomap(pdev, 0, 0);
	if (!edu->regs) {
		ret = -ENOMEM;
		goto err_release;
	}
	id = readl(edu->regs + EDU_REG_ID);
	if ((id & 0xff) != 0xed) {
		dev_err(&pdev->dev, "identification register %#x: not an edu device\n",
			id);
		ret = -ENODEV;
		goto err_unmap;
	}
	return 0;

err_unmap:
	pci_iounmap(pdev, edu->regs);
err_release:
	pci_release_region(pdev, 0);
	return ret;
}

static void edu_unmap_regs(struct dmarec_edu *edu)
{
	pci_iounmap(edu->pdev, edu->regs);
	pci_release_region(edu->pdev, 0);
}

static int edu_setup_irq(struct dmarec_edu *edu)
{
	struct pci_dev *pdev = edu->pdev;
	int ret;

	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI);
	if (ret < 0) {
		dev_err(&pdev->dev, "no MSI vector: %d\n", ret);
		return ret;
	}
	edu->irq = pci_irq_vector(pdev, 0);
	ret = request_threaded_irq(edu->irq, edu_irq, edu_irq_thread, 0,
				   KBUILD_MODNAME "-edu", edu);
	if (ret) {
		pci_free_irq_vectors(pdev);
		return ret;
	}
	return 0;
}

static void edu_teardown_irq(struct dmarec_edu *edu)
{
	free_irq(edu->irq, edu);
	pci_free_irq_vectors(edu->pdev);
}

static const char *edu_iommu_name(struct device *dev)
{
	struct iommu_domain *dom = iommu_get_domain_for_dev(dev);

	if (!dom)
		return "no IOMMU";
	return (dom->type & __IOMMU_DOMAIN_PAGING) ? "IOMMU translation" :
						       "IOMMU passthrough";
}

static int edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct dmarec_edu *edu;
	int ret;

	edu = kzalloc(sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	edu->pdev = pdev;
	mutex_init(&edu->eng_lock);
	init_waitqueue_head(&edu->idle_wq);

	ret = pci_enable_device(pdev);
	if (ret)
		goto err_free;
	ret = edu_map_regs(edu);
	if (ret)
		goto err_disable;
	ret = edu_setup_dma(edu);
	if (ret)
		goto err_unmap;
	ret = edu_setup_irq(edu);
	if (ret)
		goto err_dma;
	edu->card = dmarec_card_alloc(&dmarec_edu_ops, &pdev->dev, edu);
	if (IS_ERR(edu->card)) {
		ret = PTR_ERR(edu->card);
		goto err_irq;
	}
	pci_set_drvdata(pdev, edu);
	ret = dmarec_card_register(edu->card);
	if (ret)
		goto err_card;
	dev_info(&pdev->dev, "%s: edu card, %u-bit DMA, %s\n", edu->card->name,
		 edu_dma_bits, edu_iommu_name(&pdev->dev));
	return 0;

err_card:
	dmarec_card_put(edu->card);
err_irq:
	edu_teardown_irq(edu);
err_dma:
	edu_teardown_dma(edu);
err_unmap:
	edu_unmap_regs(edu);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(edu);
	return ret;
}

/* Unbind or module exit: open files keep the card, never the device. */
static void edu_remove(struct pci_dev *pdev)
{
	struct dmarec_edu *edu = pci_get_drvdata(pdev);

	dmarec_card_unregister(edu->card);	/* stops the engine */
	edu_teardown_irq(edu);
	edu_teardown_dma(edu);
	edu_unmap_regs(edu);
	pci_disable_device(pdev);
	dmarec_card_put(edu->card);
	mutex_destroy(&edu->eng_lock);
	kfree(edu);
}

static const struct pci_device_id edu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};
MODULE_DEVICE_TABLE(pci, edu_ids);

static struct pci_driver dmarec_edu_driver = {
	.name = KBUILD_MODNAME,
	.id_table = edu_ids,
	.probe = edu_probe,
	.remove = edu_remove,
	.driver.pm = pm_sleep_ptr(&edu_pm_ops),
};

int dmarec_edu_init(void)
{
	return pci_register_driver(&dmarec_edu_driver);
}

void dmarec_edu_exit(void)
{
	pci_unregister_driver(&dmarec_edu_driver);
}
