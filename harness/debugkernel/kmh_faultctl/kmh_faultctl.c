// SPDX-License-Identifier: GPL-2.0
/*
 * kmh_faultctl: fail the Nth fault-injection point of one module's init, and nothing else.
 *
 * The kernel fires the initcall_start and initcall_finish tracepoints around a module's init
 * (do_one_initcall, in the loading task). At start, when the init function belongs to the
 * module named by the "target" parameter, the loading task's fail_nth (the counter behind
 * /proc/self/fail-nth) is set to "nth"; at finish, whatever is left of it is recorded and it is
 * reset, so the count starts exactly at init (the loader's own allocations before it never
 * count) and nothing after init is failed. failslab must count GFP_KERNEL allocations for this
 * (/sys/kernel/debug/failslab/ignore-gfp-wait = N); its probability stays 0.
 *
 * Parameters (/sys/module/kmh_faultctl/parameters/):
 *   target     module name whose init is failed (set at load)
 *   nth        N for the next init of target (0: off); one shot, reset at finish
 *   seen       inits of target seen since load
 *   fired      1 when the last armed init reached its Nth point (it was failed), else 0
 *   remaining  what was left of N at finish (N - points init reached, when it did not fire)
 *   ret        what the last armed init returned
 *   site       the caller of the allocation that was failed ("" when none was), as
 *              sprint_symbol names it: from the kmalloc/kmem_cache_alloc tracepoints, which
 *              report a NULL result; it names quiet failures too (__GFP_NOWARN ones print no stack)
 *   init       "<address> <symbol>" of the last armed init function: kmemleak prints a failed
 *              init's frames as raw addresses once the module is gone, this names them
 */
#include <linux/init.h>
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>

#if !defined(CONFIG_FAULT_INJECTION) || !defined(CONFIG_TRACEPOINTS)
#error "kmh_faultctl needs CONFIG_FAULT_INJECTION and CONFIG_TRACEPOINTS"
#endif

static char target[MODULE_NAME_LEN];
module_param_string(target, target, sizeof(target), 0644);
static unsigned int nth;
module_param(nth, uint, 0644);
static int seen;
module_param(seen, int, 0444);
static int fired;
module_param(fired, int, 0444);
static unsigned int remaining;
module_param(remaining, uint, 0444);
static int ret;
module_param(ret, int, 0444);

static char site[KSYM_SYMBOL_LEN];
module_param_string(site, site, sizeof(site), 0444);
static char init[KSYM_SYMBOL_LEN + 20];
module_param_string(init, init, sizeof(init), 0444);

static struct tracepoint *tp_start, *tp_finish, *tp_kmalloc, *tp_cache_alloc;
/* The task whose init was armed, and that init: the finish probe resets only its counter. */
static struct task_struct *armed;
static initcall_t armed_fn;

/* Does SYMBOL (sprint_symbol's "func+0x0/0x10 [name]" for an init function) lie in TARGET? */
static bool is_target(const char *symbol)
{
	const char *name;
	size_t len;

	if (!target[0])
		return false;
	name = strrchr(symbol, '[');
	if (!name)
		return false;
	name++;
	len = strcspn(name, "]");
	return len == strlen(target) && !strncmp(name, target, len);
}

static void probe_start(void *data, initcall_t fn)
{
	char symbol[KSYM_SYMBOL_LEN];
	unsigned int n = READ_ONCE(nth);

	if (!n)
		return;
	sprint_symbol(symbol, (unsigned long)fn);
	if (!is_target(symbol))
		return;
	/* Where init sits: kmemleak prints a failed init's frames as raw addresses later. */
	snprintf(init, sizeof(init), "%lx %s", (unsigned long)fn, symbol);
	site[0] = '\0';
	armed_fn = fn;
	WRITE_ONCE(armed, current);
	WRITE_ONCE(current->fail_nth, n);
}

static void probe_finish(void *data, initcall_t fn, int result)
{
	unsigned int left;

	if (READ_ONCE(armed) != current || fn != armed_fn)
		return;
	left = READ_ONCE(current->fail_nth);
	WRITE_ONCE(current->fail_nth, 0);
	WRITE_ONCE(armed, NULL);
	WRITE_ONCE(remaining, left);
	WRITE_ONCE(fired, left == 0);
	WRITE_ONCE(ret, result);
	WRITE_ONCE(seen, seen + 1);
	WRITE_ONCE(nth, 0);
}

/* The first NULL an armed task gets once its count reached 0 is the failure we injected. */
static void failed_at(const void *ptr, unsigned long call_site)
{
	if (ptr || READ_ONCE(armed) != current || READ_ONCE(current->fail_nth) || site[0])
		return;
	sprint_symbol(site, call_site);
}

static void probe_kmalloc(void *data, unsigned long call_site, const void *ptr, size_t bytes_req,
			  size_t bytes_alloc, gfp_t gfp_flags, int node)
{
	failed_at(ptr, call_site);
}

static void probe_cache_alloc(void *data, unsigned long call_site, const void *ptr,
			      struct kmem_cache *s, gfp_t gfp_flags, int node)
{
	failed_at(ptr, call_site);
}

static void find_tracepoints(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "initcall_start"))
		tp_start = tp;
	else if (!strcmp(tp->name, "initcall_finish"))
		tp_finish = tp;
	else if (!strcmp(tp->name, "kmalloc"))
		tp_kmalloc = tp;
	else if (!strcmp(tp->name, "kmem_cache_alloc"))
		tp_cache_alloc = tp;
}

static void unregister_all(void)
{
	if (tp_cache_alloc)
		tracepoint_probe_unregister(tp_cache_alloc, (void *)probe_cache_alloc, NULL);
	if (tp_kmalloc)
		tracepoint_probe_unregister(tp_kmalloc, (void *)probe_kmalloc, NULL);
	tracepoint_probe_unregister(tp_finish, (void *)probe_finish, NULL);
	tracepoint_probe_unregister(tp_start, (void *)probe_start, NULL);
	tracepoint_synchronize_unregister();
}

static int __init kmh_faultctl_init(void)
{
	int err;

	for_each_kernel_tracepoint(find_tracepoints, NULL);
	if (!tp_start || !tp_finish) {
		pr_err("kmh_faultctl: no initcall_start/initcall_finish tracepoints\n");
		return -ENOENT;
	}
	err = tracepoint_probe_register(tp_start, (void *)probe_start, NULL);
	if (err)
		return err;
	err = tracepoint_probe_register(tp_finish, (void *)probe_finish, NULL);
	if (err) {
		tracepoint_probe_unregister(tp_start, (void *)probe_start, NULL);
		tracepoint_synchronize_unregister();
		return err;
	}
	/* The allocation tracepoints only name the site: without them the stack still does. */
	if (tp_kmalloc && tracepoint_probe_register(tp_kmalloc, (void *)probe_kmalloc, NULL))
		tp_kmalloc = NULL;
	if (tp_cache_alloc && tracepoint_probe_register(tp_cache_alloc, (void *)probe_cache_alloc, NULL))
		tp_cache_alloc = NULL;
	return 0;
}

static void __exit kmh_faultctl_exit(void)
{
	unregister_all();
}

module_init(kmh_faultctl_init);
module_exit(kmh_faultctl_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kmh: fail the Nth allocation of one module's init (fault-injection sweep)");
