// A kABI-tracking kernel module, built once (against one kernel's headers) and linked into
// other kernels by weak-modules when their symbol versions match: the kmod-NAME packages of
// ELRepo or a vendor.  It uses a few exported symbols so that __versions names them.
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/crc32.h>
#include <linux/slab.h>

static int __init kabidemo_init(void)
{
	char *buf = kmalloc(16, GFP_KERNEL);

	if (!buf)
		return -ENOMEM;
	buf[0] = 'x';
	pr_info("kabidemo: crc32 %08x\n", crc32_le(0, buf, 1));
	kfree(buf);
	return 0;
}

static void __exit kabidemo_exit(void)
{
}

module_init(kabidemo_init);
module_exit(kabidemo_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION("1.0");
MODULE_DESCRIPTION("dkms-exporter test module: a kABI-tracking kmod");
