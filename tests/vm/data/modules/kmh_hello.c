// SPDX-License-Identifier: GPL-2.0
/* Loads and unloads cleanly: the control case and the benchmark's hello cycle. */
#include <linux/module.h>

static int __init kmh_hello_init(void)
{
	pr_info("kmh_hello: loaded\n");
	return 0;
}

static void __exit kmh_hello_exit(void)
{
	pr_info("kmh_hello: unloaded\n");
}

module_init(kmh_hello_init);
module_exit(kmh_hello_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: well-behaved module");
