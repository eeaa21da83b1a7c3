/* rpmlog() for rpm's rpmpkg.c compiled alone: messages go to stderr.  Written for the tests. */
#include <stdio.h>
#define RPMLOG_ERR 3
#define RPMLOG_WARNING 4
#define rpmlog(level, ...) fprintf(stderr, __VA_ARGS__)
