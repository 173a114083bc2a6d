// SPDX-License-Identifier: GPL-2.0
/* A module of your own: what kmh's pytest plugin builds, loads and unloads in a VM. */
#include <linux/init.h>
#include <linux/module.h>

static int __init mymodule_init(void)
{
	pr_info("mymodule: loaded\n");
	return 0;
}

static void __exit mymodule_exit(void)
{
	pr_info("mymodule: unloaded\n");
}

module_init(mymodule_init);
module_exit(mymodule_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh example: a module tested from its own project");
