// SPDX-License-Identifier: GPL-2.0
/* Sleeps uninterruptibly forever in init: a hung task; insmod cannot be killed. */
#include <linux/module.h>
#include <linux/sched.h>

static int __init kmh_hung_init(void)
{
	schedule_timeout_uninterruptible(MAX_SCHEDULE_TIMEOUT);
	return 0;
}

module_init(kmh_hung_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: uninterruptible sleep in init");
