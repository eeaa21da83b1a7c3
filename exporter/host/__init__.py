"""Reading the host: one path root (rootfs), one bounded reader, the identity cache, the context."""
