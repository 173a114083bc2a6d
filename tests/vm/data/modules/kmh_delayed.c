// SPDX-License-Identifier: GPL-2.0
/* Loads fine, then its work item dereferences NULL half a second later: an oops that happens
 * between commands, in a kworker, not in insmod. */
#include <linux/module.h>
#include <linux/workqueue.h>

static int *kmh_delayed_ptr;	/* stays NULL */

static void kmh_delayed_fn(struct work_struct *work)
{
	pr_info("kmh_delayed: %d\n", *READ_ONCE(kmh_delayed_ptr));
}

static DECLARE_DELAYED_WORK(kmh_delayed_work, kmh_delayed_fn);

static int __init kmh_delayed_init(void)
{
	schedule_delayed_work(&kmh_delayed_work, HZ / 2);
	return 0;
}

static void __exit kmh_delayed_exit(void)
{
	cancel_delayed_work_sync(&kmh_delayed_work);
}

module_init(kmh_delayed_init);
module_exit(kmh_delayed_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: oops in a delayed work item");
