// SPDX-License-Identifier: GPL-2.0
/* Reads through a non-canonical pointer in init: a general protection fault. */
#include <linux/module.h>

static unsigned long kmh_gpf_addr = 0xdead000000000000UL;

static noinline int kmh_gpf_read(void)
{
	return *(volatile int *)READ_ONCE(kmh_gpf_addr);
}

static int __init kmh_gpf_init(void)
{
	return kmh_gpf_read();
}

module_init(kmh_gpf_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: general protection fault in init");
