/*
 * SPEC 2.7: chronica_director_unregister returns after the node's
 * free_user_data has run, even when it races the registration of the same
 * uid. The registering call used to keep a reference to the node until it
 * returned, so an unregister that completed meanwhile (from another thread,
 * say while the registration ran a drop hook) returned before the
 * destructor, which then ran later, on the registering thread.
 */
#include "harness.h"

#include <sched.h>

static void count_free(void *ud) {
    atomic_fetch_add((atomic_int *)ud, 1);
}

/* ---- an unregister inside the registration's drop hook ------------------ */

struct handoff {
    chronica_director *d;
    rendezvous rv;
    atomic_int freed;           /* destructor calls of x's user_data */
    int freed_when_returned;    /* read the moment unregister returned */
    chronica_status status;
};

/* Thread A: once asked, unregisters "x" and looks at the destructor count. */
static void *unregister_when_asked(void *p) {
    struct handoff *h = p;
    rendezvous_wait_asked(&h->rv);
    h->status = chronica_director_unregister(h->d, "x");
    h->freed_when_returned = atomic_load(&h->freed);
    rendezvous_done(&h->rv);
    return NULL;
}

/* Runs on the registering thread, inside chronica_director_register, when
   x's node_joined overflows the observer's full root lane: x is registered
   by then. It has thread A unregister x and waits until A is done. */
static void on_drop(void *ud, const char *uid, size_t uid_len, const chronica_event *event,
                    chronica_drop_reason reason) {
    (void)uid;
    (void)uid_len;
    (void)reason;
    struct handoff *h = ud;
    if (!event_topic_is(event, "chronica.node_joined")) {
        return;
    }
    rendezvous_ask_and_wait(&h->rv);
}

static void test_unregister_while_the_registration_runs_a_hook(void) {
    struct handoff h;
    memset(&h, 0, sizeof h);
    rendezvous_init(&h.rv);
    h.d = director_reporting_notices(on_drop, &h);

    pthread_t a;
    CHECK(pthread_create(&a, NULL, unregister_when_asked, &h) == 0);
    CHECK_OK(chronica_director_register(h.d, "x", ok_send, &h.freed, count_free));
    pthread_join(a, NULL);
    CHECK(h.rv.asked && h.rv.done);
    CHECK_STATUS(h.status, CHRONICA_OK);
    CHECK(h.freed_when_returned == 1);
    CHECK(atomic_load(&h.freed) == 1);
    chronica_director_free(h.d);
    CHECK(atomic_load(&h.freed) == 1);
    rendezvous_destroy(&h.rv);
}

/* ---- two threads, one registering and one unregistering the same uid ---- */

#define ROUNDS 500

struct race {
    chronica_director *d;
    atomic_int freed;
    int late;   /* unregisters that returned before their destructor ran */
    int odd;    /* statuses other than OK and the expected refusal */
};

static void *unregister_rounds(void *p) {
    struct race *r = p;
    for (int done = 0; done < ROUNDS;) {
        chronica_status s = chronica_director_unregister(r->d, "y");
        if (s == CHRONICA_OK) {
            done++;
            /* Every destructor comes from an unregister (none from close
               yet), so after the n-th one returns there must be n. */
            if (atomic_load(&r->freed) < done) {
                r->late++;
            }
        } else {
            r->odd += s != CHRONICA_ERR_UNKNOWN_NODE;
            sched_yield();
        }
    }
    return NULL;
}

static void test_unregister_racing_register(void) {
    struct race r;
    memset(&r, 0, sizeof r);
    CHECK_OK(chronica_director_new(NULL, &r.d));
    pthread_t a;
    CHECK(pthread_create(&a, NULL, unregister_rounds, &r) == 0);
    int odd = 0;
    for (int done = 0; done < ROUNDS;) {
        chronica_status s = chronica_director_register(r.d, "y", ok_send, &r.freed, count_free);
        if (s == CHRONICA_OK) {
            done++;
        } else {
            odd += s != CHRONICA_ERR_DUPLICATE_NODE;
            sched_yield();
        }
    }
    pthread_join(a, NULL);
    CHECK(odd == 0 && r.odd == 0);
    CHECK(r.late == 0);
    CHECK(atomic_load(&r.freed) == ROUNDS);
    chronica_director_free(r.d);
    CHECK(atomic_load(&r.freed) == ROUNDS);
}

int main(void) {
    test_unregister_while_the_registration_runs_a_hook();
    test_unregister_racing_register();
    return finish();
}
