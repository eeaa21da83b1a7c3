// A module akmods builds from its source rpm for every kernel.  Its source, like many
// out-of-tree drivers, follows a kernel API that changed: before 6.1.192 it calls a helper that
// does not exist there, so the build for an older kernel fails the way such builds fail
// ("implicit declaration of function").
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/version.h>

static int __init akdemo_init(void)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 1, 192)
	akdemo_new_api_helper();
#endif
	pr_info("akdemo: loaded\n");
	return 0;
}

static void __exit akdemo_exit(void)
{
}

module_init(akdemo_init);
module_exit(akdemo_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION("2.0");
MODULE_DESCRIPTION("dkms-exporter test module: an akmod");
