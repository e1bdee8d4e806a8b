/* Includes the header MC_IMPL names (a quoted file name) once for each element type:
 * MC_T float with MC_NAME(f) f##_f32, then MC_T double with MC_NAME(f) f##_f64.
 * Define MC_IMPL, then include this file (no include guard: once per MC_IMPL);
 * it undefines MC_IMPL, MC_T and MC_NAME after.  Used by _random_pool.h and _winograd.h. */
#define MC_T float
#define MC_NAME(f) f##_f32
#include MC_IMPL
#undef MC_T
#undef MC_NAME

#define MC_T double
#define MC_NAME(f) f##_f64
#include MC_IMPL
#undef MC_T
#undef MC_NAME
#undef MC_IMPL
