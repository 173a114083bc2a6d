// SPDX-License-Identifier: GPL-2.0
/* Calls BUG() in init: "kernel BUG at ...", invalid opcode, insmod killed. */
#include <linux/module.h>

static noinline void kmh_bug_trigger(void)
{
	BUG();
}

static int __init kmh_bug_init(void)
{
	kmh_bug_trigger();
	return 0;
}

module_init(kmh_bug_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: BUG() in init");
