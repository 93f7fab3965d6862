#ifndef FACERI_TEST_NUMERIC_H
#define FACERI_TEST_NUMERIC_H
/* Numeric helpers shared by the kernel tests (tests/support/numeric.c): a seeded,
 * platform-independent stream of float-representable values, and the error measure
 * the device-vs-reference checks use. Each test keeps its own state, so its data does
 * not depend on which other tests ran. */
#include <stddef.h>

/* Uniform in [-1.2, 1.2), rounded to float (what the device sees); an LCG step of *state. */
double test_frand(unsigned *state);
/* n such values (malloc'd; at least one element, so n = 0 is still a valid pointer). */
double *test_random_d(unsigned *state, size_t n);
/* max |got - want| / max |want| (floor 1e-12); a NaN anywhere in got gives infinity. */
double test_rel_err_d(const double *got, const double *want, size_t n);

#endif
