/*
 * A tiny test harness for the C API tests: CHECK counters, a recording node,
 * and polling helpers (asynchronous delivery is awaited by polling stats with
 * a generous deadline; no assertion depends on speed).
 *
 * Every test program ends its output with the line "N passed, N failed".
 */
#ifndef CHRONICA_TEST_HARNESS_H
#define CHRONICA_TEST_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chronica.h"

static int g_passed;
static int g_failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (cond) {                                                                   \
            g_passed++;                                                               \
        } else {                                                                      \
            g_failed++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                             \
    } while (0)

/* Checks that `expr` returns status `want`; on a mismatch prints both and
   the thread's last error. */
#define CHECK_STATUS(expr, want)                                                          \
    do {                                                                                  \
        chronica_status got_ = (expr);                                                    \
        if (got_ == (chronica_status)(want)) {                                            \
            g_passed++;                                                                   \
        } else {                                                                          \
            char why_[256];                                                               \
            chronica_last_error(why_, sizeof why_);                                       \
            g_failed++;                                                                   \
            fprintf(stderr, "%s:%d: %s\n  returned %u (%s), want %u (%s); last error: %s\n", \
                    __FILE__, __LINE__, #expr, (unsigned)got_, chronica_status_str(got_),  \
                    (unsigned)(want), chronica_status_str(want), why_);                   \
        }                                                                                 \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, CHRONICA_OK)

static inline int finish(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

static inline int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Generous: delivery is awaited, never timed. */
#define WAIT_DEADLINE_MS 20000

/* Polls `pred(ctx)` every millisecond until it holds or the deadline passes. */
static inline int wait_until(int (*pred)(void *), void *ctx) {
    int64_t end = now_ms() + WAIT_DEADLINE_MS;
    while (!pred(ctx)) {
        if (now_ms() > end) {
            return 0;
        }
        sleep_ms(1);
    }
    return 1;
}

struct count_ctx {
    atomic_int *counter;
    int want;
};

static inline int count_pred(void *p) {
    struct count_ctx *c = p;
    return atomic_load(c->counter) >= c->want;
}

/* Waits until `*counter` reaches `want`. */
static inline int wait_count(atomic_int *counter, int want) {
    struct count_ctx c = {counter, want};
    return wait_until(count_pred, &c);
}

static inline chronica_node_stats stats_of(chronica_director *d, const char *uid) {
    chronica_node_stats s = {0};
    if (chronica_director_node_stats(d, uid, &s) != CHRONICA_OK) {
        fprintf(stderr, "stats of %s failed\n", uid);
    }
    return s;
}

static inline int balanced(chronica_node_stats s) {
    return s.accepted == s.delivered + s.dropped + s.dead_lettered + s.pending;
}

struct idle_ctx {
    chronica_director *d;
    const char *uid;
    uint64_t delivered_at_least;
};

static inline int idle_pred(void *p) {
    struct idle_ctx *c = p;
    chronica_node_stats s = stats_of(c->d, c->uid);
    return s.pending == 0 && s.delivered >= c->delivered_at_least;
}

/* Waits until node `uid` has nothing pending and delivered at least `n`. */
static inline int wait_idle(chronica_director *d, const char *uid, uint64_t n) {
    struct idle_ctx c = {d, uid, n};
    return wait_until(idle_pred, &c);
}

/* ---- a recording node --------------------------------------------------- */

typedef struct rec_event {
    uint64_t id;
    chronica_event_kind kind;
    char topic[96];
    char source[64];
    char payload[160];
    size_t payload_len;
    char token[64];
    char key[32];
    int has_key;
} rec_event;

typedef struct recorder recorder;

/* Optional behaviour run inside the callback after recording; its return
   value is the callback's. */
typedef int32_t (*rec_behaviour)(recorder *r, const chronica_event *events, size_t count);

struct recorder {
    pthread_mutex_t mu;
    rec_event *events;
    size_t len, cap;
    size_t batches, max_batch;
    atomic_int in_call;
    atomic_int overlapped;
    atomic_int freed;        /* destructor calls */
    atomic_int calls;        /* callback calls */
    atomic_int fail_next;    /* fail this many calls that hold user events */
    int fail_user_always;
    rec_behaviour behaviour;
    chronica_director *d;
    const char *uid;
    void *ctx;
};

static atomic_int g_destructors;
static atomic_int g_registered;

static inline recorder *rec_new(const char *uid) {
    recorder *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->uid = uid;
    return r;
}

static inline void rec_delete(recorder *r) {
    pthread_mutex_destroy(&r->mu);
    free(r->events);
    free(r);
}

static inline void copy_text(char *dst, size_t cap, const void *src, size_t len) {
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n > 0) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
}

static inline int32_t rec_send(void *user_data, const chronica_event *events, size_t count) {
    recorder *r = user_data;
    if (atomic_fetch_add(&r->in_call, 1) != 0) {
        atomic_fetch_add(&r->overlapped, 1);
    }
    atomic_fetch_add(&r->calls, 1);
    int has_user = 0;
    for (size_t i = 0; i < count; i++) {
        has_user |= events[i].kind == CHRONICA_EVENT_USER;
    }
    int32_t rc = 0;
    if (has_user && (r->fail_user_always || atomic_load(&r->fail_next) > 0)) {
        if (!r->fail_user_always) {
            atomic_fetch_sub(&r->fail_next, 1);
        }
        rc = 7;
    } else {
        pthread_mutex_lock(&r->mu);
        r->batches++;
        if (count > r->max_batch) {
            r->max_batch = count;
        }
        for (size_t i = 0; i < count; i++) {
            if (r->len == r->cap) {
                r->cap = r->cap ? r->cap * 2 : 64;
                r->events = realloc(r->events, r->cap * sizeof *r->events);
            }
            const chronica_event *e = &events[i];
            rec_event *x = &r->events[r->len++];
            memset(x, 0, sizeof *x);
            x->id = e->id;
            x->kind = e->kind;
            copy_text(x->topic, sizeof x->topic, e->topic, e->topic_len);
            copy_text(x->source, sizeof x->source, e->source, e->source_len);
            copy_text(x->payload, sizeof x->payload, e->payload, e->payload_len);
            x->payload_len = e->payload_len;
            copy_text(x->token, sizeof x->token, e->trust_token, e->trust_token_len);
            x->has_key = e->key != NULL;
            if (e->key) {
                copy_text(x->key, sizeof x->key, e->key, e->key_len);
            }
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (r->behaviour) {
        int32_t b = r->behaviour(r, events, count);
        if (rc == 0) {
            rc = b;
        }
    }
    atomic_fetch_sub(&r->in_call, 1);
    return rc;
}

static inline void rec_free(void *user_data) {
    recorder *r = user_data;
    atomic_fetch_add(&r->freed, 1);
    atomic_fetch_add(&g_destructors, 1);
}

static inline size_t rec_len(recorder *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->len;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Number of recorded events of `kind` (optionally with topic `topic`). */
static inline size_t rec_count(recorder *r, chronica_event_kind kind, const char *topic) {
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->len; i++) {
        if (r->events[i].kind == kind && (!topic || strcmp(r->events[i].topic, topic) == 0)) {
            n++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* A copy of the i-th recorded event. */
static inline rec_event rec_at(recorder *r, size_t i) {
    rec_event e;
    memset(&e, 0, sizeof e);
    pthread_mutex_lock(&r->mu);
    if (i < r->len) {
        e = r->events[i];
    }
    pthread_mutex_unlock(&r->mu);
    return e;
}

static inline chronica_status reg(chronica_director *d, recorder *r) {
    r->d = d;
    chronica_status s = chronica_director_register(d, r->uid, rec_send, r, rec_free);
    if (s == CHRONICA_OK) {
        atomic_fetch_add(&g_registered, 1);
    }
    return s;
}

static inline chronica_status reg_with(chronica_director *d, recorder *r, const chronica_node_options *o) {
    r->d = d;
    chronica_status s = chronica_director_register_with(d, r->uid, o, rec_send, r, rec_free);
    if (s == CHRONICA_OK) {
        atomic_fetch_add(&g_registered, 1);
    }
    return s;
}

static inline chronica_status emit_str(chronica_director *d, const char *source, const char *topic, const char *payload) {
    return chronica_director_emit(d, source, topic, (const uint8_t *)payload, strlen(payload));
}

/* A two-thread hand-off: one thread asks and waits until the other,
   which waits to be asked, says it is done. The race tests use it to run
   a call on another thread while a registration is paused in a hook. */
typedef struct rendezvous {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int asked, done;
} rendezvous;

static inline void rendezvous_init(rendezvous *r) {
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->asked = 0;
    r->done = 0;
}

static inline void rendezvous_destroy(rendezvous *r) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

/* Waits until asked. What the asker wrote before asking is visible after. */
static inline void rendezvous_wait_asked(rendezvous *r) {
    pthread_mutex_lock(&r->mu);
    while (!r->asked) {
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

static inline void rendezvous_done(rendezvous *r) {
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Asks, then waits until the other thread is done. */
static inline void rendezvous_ask_and_wait(rendezvous *r) {
    pthread_mutex_lock(&r->mu);
    r->asked = 1;
    pthread_cond_broadcast(&r->cv);
    while (!r->done) {
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

/* True when `e`'s topic is exactly `topic`. */
static inline int event_topic_is(const chronica_event *e, const char *topic) {
    size_t n = strlen(topic);
    return e->topic_len == n && memcmp(e->topic, topic, n) == 0;
}

/* A send callback that takes every batch. */
static inline int32_t ok_send(void *ud, const chronica_event *events, size_t count) {
    (void)ud;
    (void)events;
    (void)count;
    return 0;
}

/* A director with membership events whose every notice is dropped and
   reported to `hook`: its observer "obs" is disconnected with a root lane
   of 1, full with its own pull, which it never takes. The race tests use
   the hook to act while a registration is still running. */
static inline chronica_director *director_reporting_notices(chronica_drop_fn hook, void *ud) {
    chronica_director *d = NULL;
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_membership_events(o, true));
    CHECK_OK(chronica_options_set_drop_hook(o, hook, ud));
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_node_options_set_root_capacity(no, 1));
    CHECK_OK(chronica_director_register_with(d, "obs", no, ok_send, NULL, NULL));
    chronica_node_options_free(no);
    return d;
}

/* A director with a user lane of 1 under drop_oldest and one node, "off",
   registered disconnected: it holds one event and every later one
   overflows (the dropping-policy cases of the try and timed emits). */
static inline chronica_director *director_with_one_slot_node(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_director_register_with(d, "off", no, ok_send, NULL, NULL));
    chronica_node_options_free(no);
    return d;
}

#endif /* CHRONICA_TEST_HARNESS_H */
