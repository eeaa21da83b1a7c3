/* The oracle's module loader: load each file, in order, the way kmod (libkmod-module.c
 * do_finit_module / do_init_module) does, and print one parseable line per file with the kernel's
 * own answer (errno), so nothing is lost to a tool's wording of an error.
 *   ORACLE loadvia <path> <how>          plain | kernel-xz | kernel-zstd | kernel-gzip | user-xz | user-gzip
 *   ORACLE load <path> ok
 *   ORACLE load <path> errno=<n> <strerror>
 * A compressed file (Debian 13's .ko.xz) goes to finit_module with MODULE_INIT_COMPRESSED_FILE
 * when the kernel decompresses that format itself (/sys/module/compression, present with
 * CONFIG_MODULE_DECOMPRESS): the kernel then checks the signature of the decompressed image.
 * Otherwise it is decompressed here (busybox) and given to init_module, as kmod falls back to.
 * Without either, the signature check would look for the marker at the end of the compressed
 * file and call every module unsigned.
 * Built static (gcc -static) by tests/oracle/artifacts.py; runs as root inside the booted VM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif
#define BUSYBOX "/oracle/bin/busybox"

/* The file's compression by its magic: "xz", "zstd", "gzip" or NULL (an ELF, or anything else). */
static const char *compression(int fd) {
    unsigned char m[6] = {0};
    ssize_t n = pread(fd, m, sizeof m, 0);
    if (n >= 6 && memcmp(m, "\xfd" "7zXZ\0", 6) == 0)
        return "xz";
    if (n >= 4 && memcmp(m, "\x28\xb5\x2f\xfd", 4) == 0)
        return "zstd";
    if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
        return "gzip";
    return NULL;
}

/* What the kernel decompresses itself: the first word of /sys/module/compression, or "". */
static void kernel_compression(char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen("/sys/module/compression", "r");
    if (f == NULL)
        return;
    if (fgets(out, (int)size, f) == NULL)
        out[0] = 0;
    out[strcspn(out, " \n")] = 0;
    fclose(f);
}

/* busybox's decompressor (xzcat, zcat) of `path` into a malloc'd buffer; NULL on failure. */
static char *decompress(const char *applet, const char *path, size_t *len) {
    int p[2];
    if (pipe(p) != 0)
        return NULL;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(BUSYBOX, applet, path, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 20, used = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf != NULL && (n = read(p[0], buf + used, cap - used)) > 0) {
        used += (size_t)n;
        if (used == cap)
            buf = realloc(buf, cap *= 2);
    }
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (buf == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(buf);
        return NULL;
    }
    *len = used;
    return buf;
}

static long load(const char *path, int fd) {
    const char *format = compression(fd);
    char kernel[32];
    kernel_compression(kernel, sizeof kernel);
    if (format == NULL || strcmp(format, kernel) == 0) {
        printf("ORACLE loadvia %s %s%s\n", path, format ? "kernel-" : "plain", format ? format : "");
        fflush(stdout);
        return syscall(SYS_finit_module, fd, "", format ? MODULE_INIT_COMPRESSED_FILE : 0);
    }
    const char *applet = strcmp(format, "xz") == 0 ? "xzcat" : strcmp(format, "gzip") == 0 ? "zcat" : NULL;
    printf("ORACLE loadvia %s user-%s\n", path, format);
    fflush(stdout);
    size_t len = 0;
    char *image = applet ? decompress(applet, path, &len) : NULL;
    if (image == NULL) {
        errno = ENOEXEC; /* kmod cannot read it either: "could not insert ...: Exec format error" */
        return -1;
    }
    long rc = syscall(SYS_init_module, image, (unsigned long)len, "");
    int err = errno;
    free(image);
    errno = err;
    return rc;
}

int main(int argc, char **argv) {
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
        long rc = fd < 0 ? -1 : load(argv[i], fd);
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
