/* The oracle's module loader: finit_module(2) on each file, in order, and one parseable line per
 * file with the kernel's own answer (errno), so nothing is lost to a tool's wording of an error.
 *   ORACLE load <path> ok
 *   ORACLE load <path> errno=<n> <strerror>
 * Built static (gcc -static) by tests/oracle/artifacts.py; runs as root inside the booted VM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        long rc = fd < 0 ? -1 : syscall(SYS_finit_module, fd, "", 0);
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            printf("ORACLE load %s ok\n", argv[i]);
        else {
            printf("ORACLE load %s errno=%d %s\n", argv[i], err, strerror(err));
            failed = 1;
        }
        fflush(stdout);
    }
    return failed;
}
