/*
 * SPEC 2.7 for the bus: the call that ends a subscription's node (an
 * unregister of its uid, a close of its director) returns after the
 * subscription's free_user_data has run, even when it races the
 * chronica_bus_on that registers it. chronica_bus_on used to keep its own
 * reference to the handler until it returned, so a call that completed
 * meanwhile (from another thread, say while the registration ran a drop
 * hook) returned before the destructor, which then ran later, on the
 * subscribing thread. With a dead-letter callback the engine also kept a
 * reference in the node's hook, which a director close left alive until
 * the director was freed.
 *
 * A bus close racing chronica_bus_on ends the subscription before it
 * returns, or the chronica_bus_on is refused with CHRONICA_ERR_CLOSED,
 * registering nothing and leaving user_data with the caller. The close
 * used to end only the subscriptions listed when it started, and
 * chronica_bus_on listed its subscription after the registration: the
 * node stayed registered after the close, its user_data freed only by
 * the director's close. Output ends with "N passed, N failed".
 */
#include "harness.h"

static int32_t ok_handler(void *ud, const chronica_event *event) {
    (void)ud;
    (void)event;
    return 0;
}

static void ignore_dead_letter(void *ud, const chronica_event *event, const char *error, size_t error_len) {
    (void)ud;
    (void)event;
    (void)error;
    (void)error_len;
}

static void count_free(void *ud) {
    atomic_fetch_add((atomic_int *)ud, 1);
}

/* Subscribe options with a dead-letter callback, or NULL (the defaults). */
static chronica_subscribe_options *sub_options(int with_dead_letter) {
    if (!with_dead_letter) {
        return NULL;
    }
    chronica_subscribe_options *o = chronica_subscribe_options_new();
    CHECK(o != NULL);
    CHECK_OK(chronica_subscribe_options_set_dead_letter(o, ignore_dead_letter));
    return o;
}

/* ---- an unregister or close inside chronica_bus_on's drop hook ---------- */

enum racer { UNREGISTER, CLOSE, BUS_CLOSE };

struct handoff {
    chronica_director *d;
    chronica_bus *bus;
    enum racer racer;
    rendezvous rv;
    char uid[64];               /* the subscription's uid, from its notice */
    atomic_int freed;           /* destructor calls of the subscription's user_data */
    int freed_when_returned;    /* read the moment the racing call returned */
    int registered_when_returned; /* the subscription's node, then (bus close) */
    chronica_status status;
};

/* Thread A: once asked, ends the subscription's node and looks at the
   destructor count. */
static void *race_when_asked(void *p) {
    struct handoff *h = p;
    rendezvous_wait_asked(&h->rv);
    if (h->racer == UNREGISTER) {
        h->status = chronica_director_unregister(h->d, h->uid);
    } else if (h->racer == CLOSE) {
        /* The observer never takes its events: the drain ends at 100 ms. */
        h->status = chronica_director_close(h->d, 100, NULL);
    } else {
        h->status = chronica_bus_close(h->bus, 5000, NULL);
        chronica_node_stats s = {0};
        h->registered_when_returned = chronica_director_node_stats(h->d, h->uid, &s) == CHRONICA_OK;
    }
    h->freed_when_returned = atomic_load(&h->freed);
    rendezvous_done(&h->rv);
    return NULL;
}

/* Runs on the subscribing thread, inside chronica_bus_on, when the new
   node's node_joined (payload {"uid":"bus.sub.<n>"}) overflows the
   observer's full root lane: the node is registered by then. It hands the
   uid to thread A, has it end the node and waits until A is done. */
static void on_drop(void *ud, const char *uid, size_t uid_len, const chronica_event *event,
                    chronica_drop_reason reason) {
    (void)uid;
    (void)uid_len;
    (void)reason;
    struct handoff *h = ud;
    if (!event_topic_is(event, "chronica.node_joined")) {
        return;
    }
    char payload[128];
    copy_text(payload, sizeof payload, (const char *)event->payload, event->payload_len);
    const char key[] = "{\"uid\":\"";
    const char *start = strstr(payload, key);
    CHECK(start != NULL);
    if (start == NULL) {
        return;
    }
    start += sizeof key - 1;
    const char *end = strchr(start, '"');
    CHECK(end != NULL && (size_t)(end - start) < sizeof h->uid);
    if (end == NULL || (size_t)(end - start) >= sizeof h->uid) {
        return;
    }
    memcpy(h->uid, start, (size_t)(end - start));
    h->uid[end - start] = '\0';
    rendezvous_ask_and_wait(&h->rv);
}

static void race_on(enum racer racer, int with_dead_letter) {
    struct handoff h;
    memset(&h, 0, sizeof h);
    h.racer = racer;
    rendezvous_init(&h.rv);
    h.d = director_reporting_notices(on_drop, &h);
    chronica_bus *bus = NULL;
    CHECK_OK(chronica_bus_new(h.d, &bus));
    h.bus = bus;

    pthread_t a;
    CHECK(pthread_create(&a, NULL, race_when_asked, &h) == 0);
    chronica_subscribe_options *so = sub_options(with_dead_letter);
    chronica_subscription *sub = NULL;
    /* Registered before the racing call ended it: the call succeeds and
       user_data is the bus's. */
    CHECK_OK(chronica_bus_on(bus, "t.>", so, ok_handler, &h.freed, count_free, &sub));
    chronica_subscribe_options_free(so);
    pthread_join(a, NULL);
    CHECK(h.rv.asked && h.rv.done);
    CHECK(strncmp(h.uid, "bus.sub.", 8) == 0);
    CHECK(sub != NULL && strcmp(chronica_subscription_uid(sub), h.uid) == 0);
    CHECK_STATUS(h.status, CHRONICA_OK);
    CHECK(h.freed_when_returned == 1);
    CHECK(h.registered_when_returned == 0);
    CHECK(atomic_load(&h.freed) == 1);
    /* The subscription has ended under the bus. */
    CHECK_STATUS(chronica_bus_off(bus, sub, 100, NULL),
                 racer == UNREGISTER ? CHRONICA_ERR_UNKNOWN_NODE : CHRONICA_ERR_CLOSED);
    chronica_subscription_free(sub);
    chronica_bus_free(bus);
    chronica_director_free(h.d);
    CHECK(atomic_load(&h.freed) == 1);
    rendezvous_destroy(&h.rv);
}

static void test_unregister_while_on_runs_a_hook(void) {
    race_on(UNREGISTER, 0);
    race_on(UNREGISTER, 1);
}

static void test_director_close_while_on_runs_a_hook(void) {
    race_on(CLOSE, 0);
    race_on(CLOSE, 1);
}

static void test_bus_close_while_on_runs_a_hook(void) {
    race_on(BUS_CLOSE, 0);
    race_on(BUS_CLOSE, 1);
}

/* ---- chronica_bus_on from threads racing a bus close -------------------- */

#define SUBSCRIBERS 3
#define MAX_ONS 32

struct subscriber {
    chronica_bus *bus;
    atomic_int *ok_total;
    atomic_int freed[MAX_ONS];      /* user_data of each call */
    chronica_subscription *subs[MAX_ONS];
    int ok;                         /* calls that succeeded: subs[0..ok) */
    int refused_at;                 /* the call refused with CLOSED, or -1 */
    chronica_status other;          /* any other status seen */
};

/* Subscribes until refused with CHRONICA_ERR_CLOSED (or MAX_ONS calls). */
static void *subscribe_until_closed(void *p) {
    struct subscriber *s = p;
    for (int i = 0; i < MAX_ONS; i++) {
        chronica_subscription *sub = NULL;
        chronica_status st = chronica_bus_on(s->bus, "t", NULL, ok_handler, &s->freed[i], count_free, &sub);
        if (st == CHRONICA_OK) {
            s->subs[s->ok++] = sub;
            atomic_fetch_add(s->ok_total, 1);
        } else {
            if (st == CHRONICA_ERR_CLOSED) {
                s->refused_at = i;
            } else {
                s->other = st;
            }
            return NULL;
        }
    }
    return NULL;
}

static void test_on_from_threads_racing_a_bus_close(void) {
    for (int round = 0; round < 5; round++) {
        chronica_director *d = NULL;
        CHECK_OK(chronica_director_new(NULL, &d));
        chronica_bus *bus = NULL;
        CHECK_OK(chronica_bus_new(d, &bus));
        atomic_int ok_total;
        atomic_init(&ok_total, 0);
        static struct subscriber subs[SUBSCRIBERS];
        pthread_t t[SUBSCRIBERS];
        for (int i = 0; i < SUBSCRIBERS; i++) {
            memset(&subs[i], 0, sizeof subs[i]);
            for (int k = 0; k < MAX_ONS; k++) {
                atomic_init(&subs[i].freed[k], 0);
            }
            subs[i].bus = bus;
            subs[i].ok_total = &ok_total;
            subs[i].refused_at = -1;
            subs[i].other = CHRONICA_OK;
            CHECK(pthread_create(&t[i], NULL, subscribe_until_closed, &subs[i]) == 0);
        }
        CHECK(wait_count(&ok_total, 2 + round));
        CHECK_OK(chronica_bus_close(bus, 5000, NULL));
        for (int i = 0; i < SUBSCRIBERS; i++) {
            pthread_join(t[i], NULL);
        }
        for (int i = 0; i < SUBSCRIBERS; i++) {
            struct subscriber *s = &subs[i];
            CHECK_STATUS(s->other, CHRONICA_OK);
            for (int k = 0; k < s->ok; k++) {
                /* Ended by the close: no longer registered, user_data freed once. */
                chronica_node_stats st = {0};
                CHECK_STATUS(chronica_director_node_stats(d, chronica_subscription_uid(s->subs[k]), &st),
                             CHRONICA_ERR_UNKNOWN_NODE);
                CHECK(atomic_load(&s->freed[k]) == 1);
                chronica_subscription_free(s->subs[k]);
            }
            if (s->refused_at >= 0) {
                /* Refused: user_data stays the caller's, never freed. */
                CHECK(atomic_load(&s->freed[s->refused_at]) == 0);
            }
        }
        chronica_bus_free(bus);
        chronica_director_free(d);
        for (int i = 0; i < SUBSCRIBERS; i++) {
            for (int k = 0; k < MAX_ONS; k++) {
                CHECK(atomic_load(&subs[i].freed[k]) == (k < subs[i].ok ? 1 : 0));
            }
        }
    }
}

/* ---- no race: a director close runs the destructor before it returns ---- */

static void test_director_close_frees_a_subscription_with_a_dead_letter_callback(void) {
    for (int with_dead_letter = 0; with_dead_letter <= 1; with_dead_letter++) {
        atomic_int freed;
        atomic_init(&freed, 0);
        chronica_director *d = NULL;
        CHECK_OK(chronica_director_new(NULL, &d));
        chronica_bus *bus = NULL;
        CHECK_OK(chronica_bus_new(d, &bus));
        chronica_subscribe_options *so = sub_options(with_dead_letter);
        chronica_subscription *sub = NULL;
        CHECK_OK(chronica_bus_on(bus, "t.>", so, ok_handler, &freed, count_free, &sub));
        chronica_subscribe_options_free(so);
        CHECK_OK(chronica_bus_emit(bus, "t.x", (const uint8_t *)"1", 1));
        uint64_t undelivered = 99;
        CHECK_OK(chronica_director_close(d, 5000, &undelivered));
        CHECK(undelivered == 0);
        CHECK(atomic_load(&freed) == 1);
        chronica_subscription_free(sub);
        chronica_bus_free(bus);
        chronica_director_free(d);
        CHECK(atomic_load(&freed) == 1);
    }
}

int main(void) {
    test_unregister_while_on_runs_a_hook();
    test_director_close_while_on_runs_a_hook();
    test_bus_close_while_on_runs_a_hook();
    test_on_from_threads_racing_a_bus_close();
    test_director_close_frees_a_subscription_with_a_dead_letter_callback();
    return finish();
}
