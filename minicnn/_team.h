/* A team of worker threads that runs the parts of one layer's work in C,
 * without the GIL: mc_team_run(fn, ctx, parts) calls fn(ctx, part, parts)
 * for every part, part 0 in the calling thread and the others on the team,
 * and returns when all are done.
 *
 * Why not Python threads (minicnn.threads.run_parts): each part there starts
 * by taking the GIL, and every return from a kernel takes it again, while the
 * other thread holds it for its own glue; at 2 threads a training step's
 * 8-12 hand-offs cost 0.1-0.2 ms each on this kind of VM.  Here a worker that
 * has just finished a part spins for the next one for MC_TEAM_SPIN_NS (the
 * Python glue between two layers is shorter than that), then sleeps on a
 * condition variable; a step's hand-offs then cost microseconds.
 * Why not OpenMP: its runtime is shared with PyTorch's in the same process
 * (benchmarks) and its spin policy cannot be set once loaded; ours spins only
 * right after our own work and never while BLAS runs.
 *
 * One caller at a time: a second thread calling mc_team_run while the team
 * is busy runs all its parts itself, in order (same results: parts write
 * disjoint outputs or partial sums that the caller adds in part order).
 * After fork() the child has no workers; the first call there starts anew.
 */
#ifndef MINICNN_TEAM_H
#define MINICNN_TEAM_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define MC_TEAM_MAX 64            /* workers at most (parts - 1) */
#define MC_TEAM_SPIN_NS 300000    /* a worker waits this long, spinning, before it sleeps */

typedef void (*mc_task_t)(void *ctx, int part, int parts);

static struct {
    pthread_mutex_t caller;       /* held by the one caller the team serves */
    pthread_mutex_t lock;         /* guards the sleeps below */
    pthread_cond_t wake;          /* sleeping workers wait here for a new task */
    pthread_cond_t done;          /* a sleeping caller waits here for the last part */
    atomic_ulong task;            /* number of the current task; bumped to post one */
    atomic_int pending;           /* workers' parts of the current task not yet done */
    atomic_int workers_asleep;
    atomic_int caller_asleep;
    atomic_int started;           /* workers that have read their first task number */
    mc_task_t fn;
    void *ctx;
    int parts;
    int workers;
    pid_t pid;                    /* process that started the workers */
} mc_team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
             PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

static pthread_mutex_t mc_team_setup = PTHREAD_MUTEX_INITIALIZER;

static inline void mc_team_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline long long mc_team_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Spin until *value differs from old (returns 1), or MC_TEAM_SPIN_NS passed (0). */
static int mc_team_spin_ulong(atomic_ulong *value, unsigned long old)
{
    long long start = mc_team_now_ns();
    for (;;) {
        int i;
        for (i = 0; i < 256; i++) {
            if (atomic_load_explicit(value, memory_order_acquire) != old)
                return 1;
            mc_team_pause();
        }
        if (mc_team_now_ns() - start > MC_TEAM_SPIN_NS)
            return 0;
        sched_yield();      /* more threads than cores: let the one with work run */
    }
}

static void *mc_team_worker(void *arg)
{
    int part = (int)(intptr_t)arg;    /* this worker always runs part `part` */
    unsigned long seen = atomic_load(&mc_team.task);
    atomic_fetch_add(&mc_team.started, 1);
    for (;;) {
        if (!mc_team_spin_ulong(&mc_team.task, seen)) {
            pthread_mutex_lock(&mc_team.lock);
            atomic_fetch_add(&mc_team.workers_asleep, 1);
            while (atomic_load(&mc_team.task) == seen)
                pthread_cond_wait(&mc_team.wake, &mc_team.lock);
            atomic_fetch_sub(&mc_team.workers_asleep, 1);
            pthread_mutex_unlock(&mc_team.lock);
        }
        seen = atomic_load(&mc_team.task);
        if (part < mc_team.parts) {
            mc_team.fn(mc_team.ctx, part, mc_team.parts);
            if (atomic_fetch_sub(&mc_team.pending, 1) == 1 && atomic_load(&mc_team.caller_asleep)) {
                pthread_mutex_lock(&mc_team.lock);
                pthread_cond_signal(&mc_team.done);
                pthread_mutex_unlock(&mc_team.lock);
            }
        }
    }
    return NULL;
}

/* Workers for parts 1..parts-1 (fewer if threads cannot be started);
 * returns how many there are. */
static int mc_team_grow(int parts)
{
    pthread_attr_t attr;
    if (parts - 1 <= mc_team.workers)
        return mc_team.workers;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_store(&mc_team.started, 0);
    {
        int want = parts - 1 < MC_TEAM_MAX ? parts - 1 : MC_TEAM_MAX, added = 0;
        while (mc_team.workers + added < want) {
            pthread_t thread;
            if (pthread_create(&thread, &attr, mc_team_worker,
                               (void *)(intptr_t)(mc_team.workers + added + 1)) != 0)
                break;
            added++;
        }
        while (atomic_load(&mc_team.started) < added)    /* each must read the task number first */
            mc_team_pause();
        mc_team.workers += added;
    }
    pthread_attr_destroy(&attr);
    return mc_team.workers;
}

static void mc_team_run(mc_task_t fn, void *ctx, int parts)
{
    int part, helpers;
    if (mc_team.pid != getpid()) {      /* first call, or a fork's child: no workers here */
        pthread_mutex_lock(&mc_team_setup);
        if (mc_team.pid != getpid()) {
            pthread_mutex_init(&mc_team.caller, NULL);
            pthread_mutex_init(&mc_team.lock, NULL);
            pthread_cond_init(&mc_team.wake, NULL);
            pthread_cond_init(&mc_team.done, NULL);
            atomic_store(&mc_team.workers_asleep, 0);
            atomic_store(&mc_team.caller_asleep, 0);
            mc_team.workers = 0;
            mc_team.pid = getpid();
        }
        pthread_mutex_unlock(&mc_team_setup);
    }
    if (parts <= 1 || pthread_mutex_trylock(&mc_team.caller) != 0) {
        for (part = 0; part < parts; part++)
            fn(ctx, part, parts);
        return;
    }
    helpers = mc_team_grow(parts);
    if (helpers > parts - 1)
        helpers = parts - 1;
    mc_team.fn = fn;
    mc_team.ctx = ctx;
    mc_team.parts = parts;                           /* worker w runs part w if w < parts */
    atomic_store(&mc_team.pending, helpers);
    atomic_fetch_add(&mc_team.task, 1);             /* publishes fn, ctx, parts */
    if (atomic_load(&mc_team.workers_asleep) > 0) {
        pthread_mutex_lock(&mc_team.lock);
        pthread_cond_broadcast(&mc_team.wake);
        pthread_mutex_unlock(&mc_team.lock);
    }
    fn(ctx, 0, parts);
    for (part = helpers + 1; part < parts; part++)   /* parts no worker could take */
        fn(ctx, part, parts);
    if (atomic_load(&mc_team.pending) > 0) {
        long long start = mc_team_now_ns();
        int i = 0;
        while (atomic_load_explicit(&mc_team.pending, memory_order_acquire) > 0
               && mc_team_now_ns() - start < MC_TEAM_SPIN_NS) {
            mc_team_pause();
            if (++i % 256 == 0)
                sched_yield();
        }
        if (atomic_load(&mc_team.pending) > 0) {
            pthread_mutex_lock(&mc_team.lock);
            atomic_store(&mc_team.caller_asleep, 1);
            while (atomic_load(&mc_team.pending) > 0)
                pthread_cond_wait(&mc_team.done, &mc_team.lock);
            atomic_store(&mc_team.caller_asleep, 0);
            pthread_mutex_unlock(&mc_team.lock);
        }
    }
    pthread_mutex_unlock(&mc_team.caller);
}

#endif
