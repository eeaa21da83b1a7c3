/* The few helpers of rpm's system.h that lib/backend/ndb/rpmpkg.c uses (allocation that aborts
 * on failure, gettext's _()), so rpm's own file compiles alone.  Written for the tests. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

static inline void *ndbtool_check(void *p) { if (!p) { perror("ndbtool"); abort(); } return p; }
#define xmalloc(n) ndbtool_check(malloc(n))
#define xcalloc(n, s) ndbtool_check(calloc((n), (s)))
#define xrealloc(p, n) ndbtool_check(realloc((p), (n)))
#define xstrdup(s) ((char *)ndbtool_check(strdup(s)))
#define _(text) text
