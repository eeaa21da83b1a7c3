/* ndbtool: rpm's own ndb package store (lib/backend/ndb/rpmpkg.c from Debian's rpm source,
 * compiled beside this file by tests/ndbtools.py) driven from the command line, so the tests
 * write and read SUSE's Packages.db with rpm's code rather than with the exporter's idea of it.
 *
 *   ndbtool FILE put HNUM BLOBFILE   store a header blob under header number HNUM
 *   ndbtool FILE del HNUM            erase it (its slot becomes free, its blocks a hole)
 *   ndbtool FILE list                the header numbers, one a line, in rpmpkgList's order
 *   ndbtool FILE get HNUM            the blob on stdout
 *   ndbtool FILE verify              rpmpkgVerify: every blob's head, tail and Adler-32
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rpmpkg.h"

static unsigned char *slurp(const char *path, unsigned int *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *len = (unsigned int)n;
    return buf;
}

int main(int argc, char **argv)
{
    rpmpkgdb db;
    if (argc < 3) { fprintf(stderr, "usage: ndbtool FILE put|del|list|get|verify ...\n"); return 2; }
    int writing = !strcmp(argv[2], "put") || !strcmp(argv[2], "del");
    if (rpmpkgOpen(&db, argv[1], writing ? O_RDWR | O_CREAT : O_RDONLY, 0644)) {
        fprintf(stderr, "ndbtool: rpmpkgOpen %s failed\n", argv[1]);
        return 1;
    }
    int rc = 0;
    if (!strcmp(argv[2], "put") && argc == 5) {
        unsigned int len;
        unsigned char *blob = slurp(argv[4], &len);
        rc = rpmpkgPut(db, (unsigned int)strtoul(argv[3], 0, 10), blob, len);
    } else if (!strcmp(argv[2], "del") && argc == 4) {
        rc = rpmpkgDel(db, (unsigned int)strtoul(argv[3], 0, 10));
    } else if (!strcmp(argv[2], "list")) {
        unsigned int *list, n;
        rc = rpmpkgList(db, &list, &n);
        for (unsigned int i = 0; !rc && i < n; i++)
            printf("%u\n", list[i]);
    } else if (!strcmp(argv[2], "get") && argc == 4) {
        unsigned char *blob;
        unsigned int len;
        rc = rpmpkgGet(db, (unsigned int)strtoul(argv[3], 0, 10), &blob, &len);
        if (!rc)
            fwrite(blob, 1, len, stdout);
    } else if (!strcmp(argv[2], "verify")) {
        rc = rpmpkgVerify(db);
    } else {
        fprintf(stderr, "ndbtool: bad command\n");
        rc = 2;
    }
    rpmpkgClose(db);
    if (rc)
        fprintf(stderr, "ndbtool: %s failed (%d)\n", argv[2], rc);
    return rc;
}
