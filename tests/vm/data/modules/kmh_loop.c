// SPDX-License-Identifier: GPL-2.0
/* Spins forever in init without scheduling: a soft lockup; insmod never returns. */
#include <linux/module.h>

static int __init kmh_loop_init(void)
{
	for (;;)
		cpu_relax();
	return 0;
}

module_init(kmh_loop_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: endless loop in init");
