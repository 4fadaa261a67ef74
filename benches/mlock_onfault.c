/* Experiment only (benches/bench.py, RSS variants): makes heartwatch's mlockall(MCL_CURRENT |
 * MCL_FUTURE) also pass MCL_ONFAULT, so pages are locked as they are first
 * touched instead of every mapped page being faulted in at once. Loaded
 * with LD_PRELOAD; nothing else changes. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

int mlockall(int flags)
{
    return syscall(SYS_mlockall, flags | MCL_ONFAULT);
}
