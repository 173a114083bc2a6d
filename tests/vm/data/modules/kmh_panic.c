// SPDX-License-Identifier: GPL-2.0
/* Calls panic() in init: the guest is gone, QEMU exits through pvpanic. */
#include <linux/module.h>
#include <linux/panic.h>

static int __init kmh_panic_init(void)
{
	panic("kmh_panic: deliberate panic from module init");
	return 0;
}

module_init(kmh_panic_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: panic() in init");
