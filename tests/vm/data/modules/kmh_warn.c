// SPDX-License-Identifier: GPL-2.0
/* WARN_ON(1) in init, then loads fine: a WARNING that taints but does not poison. */
#include <linux/module.h>

static noinline void kmh_warn_check(int value)
{
	WARN_ON(value != 0);
}

static int __init kmh_warn_init(void)
{
	kmh_warn_check(1);
	return 0;
}

static void __exit kmh_warn_exit(void)
{
}

module_init(kmh_warn_init);
module_exit(kmh_warn_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: WARN_ON in init");
