// SPDX-License-Identifier: GPL-2.0
/* Dereferences NULL in init: an oops ("BUG: kernel NULL pointer dereference"), insmod killed. */
#include <linux/module.h>

static int *kmh_null_ptr;	/* stays NULL; READ_ONCE keeps the compiler from folding it */

static noinline int kmh_null_read(void)
{
	return *READ_ONCE(kmh_null_ptr);
}

static int __init kmh_null_init(void)
{
	pr_info("kmh_null: about to dereference NULL\n");
	return kmh_null_read();
}

module_init(kmh_null_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh test: NULL pointer dereference in init");
