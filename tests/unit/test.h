/* test.h - the unit test harness: register with TEST(), assert with CHECK*().
 *
 * Tests register themselves before main (constructor attribute); the runner
 * (runner.c) runs all of them, or those whose name contains --only's value,
 * in-process, so gdb works on one test. A failed CHECK ends that test. */
#ifndef ACKD_TEST_H
#define ACKD_TEST_H

#include <stdint.h>
#include <string.h>

typedef void (*ackd_test_fn)(void);
void ackd_test_register(const char *file, const char *name, ackd_test_fn fn);
void ackd_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void reg_##name(void)                                      \
    {                                                                                              \
        ackd_test_register(__FILE__, #name, name);                                                 \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ackd_test_fail(__FILE__, __LINE__, "%s", #cond);                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            ackd_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);          \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            ackd_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,               \
                           a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
