/* runner.c - runs the registered unit tests; prints "N passed, N failed".
 * Usage: unit_tests [--only SUBSTRING] [--list] */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define MAX_TESTS 2048

static struct {
    const char *file, *name;
    ackd_test_fn fn;
} tests[MAX_TESTS];
static int ntests, failed_now;

void ackd_test_register(const char *file, const char *name, ackd_test_fn fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    tests[ntests].file = file;
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void ackd_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    failed_now = 1;
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            list = 1;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < ntests; i++) {
        char full[512];
        snprintf(full, sizeof full, "%s:%s", tests[i].file, tests[i].name);
        if (only && !strstr(full, only))
            continue;
        if (list) {
            puts(full);
            continue;
        }
        failed_now = 0;
        tests[i].fn();
        if (failed_now) {
            printf("FAIL %s\n", full);
            failed++;
        } else {
            printf("ok   %s\n", full);
            passed++;
        }
    }
    if (!list)
        printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
