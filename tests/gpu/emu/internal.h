/* Shared between the emulator's runtime and its BLAS. */
#ifndef EMU_INTERNAL_H
#define EMU_INTERNAL_H
#include "cuda_runtime.h"
#include <functional>

namespace emu {
/* "EMU ERROR: ..." on stderr, counted; fatal ones abort. */
void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Queue work on a stream (runs now unless the stream is deferred). */
void enqueue(cudaStream_t s, std::function<void()> fn);
/* 1 when [p, p + bytes) lies inside one device allocation. */
bool is_device_range(const void *p, size_t bytes);
void check_device_range(const char *what, const char *operand, const void *p, size_t bytes);
}  // namespace emu
#endif
