/*
 * chronica_director_unregister_draining: the node leaves the routes at
 * once, delivers what it holds, then leaves; its final counters come back.
 */
#include "harness.h"

static atomic_int g_hold;

/* Runs after the batch is recorded: keeps the callback busy while held. */
static int32_t hold_while_asked(recorder *r, const chronica_event *events, size_t count) {
    (void)r;
    (void)events;
    (void)count;
    while (atomic_load(&g_hold)) {
        sleep_ms(1);
    }
    return 0;
}

/* A new director in `*d` with node "n" registered, whose callback holds
   while g_hold is set (set here). */
static recorder *held_node(chronica_director **d) {
    CHECK_OK(chronica_director_new(NULL, d));
    recorder *n = rec_new("n");
    n->behaviour = hold_while_asked;
    atomic_store(&g_hold, 1);
    CHECK_OK(reg(*d, n));
    return n;
}

struct drain_call {
    chronica_director *d;
    const char *uid;
    uint32_t timeout_ms;
    chronica_node_stats stats;
    chronica_status status;
};

static void *drain_thread(void *p) {
    struct drain_call *c = p;
    c->status = chronica_director_unregister_draining(c->d, c->uid, c->timeout_ms, &c->stats);
    return NULL;
}

static int gone_pred(void *p) {
    struct drain_call *c = p;
    chronica_node_stats s = {0};
    return chronica_director_node_stats(c->d, c->uid, &s) == CHRONICA_ERR_UNKNOWN_NODE;
}

static void held_events_are_delivered_in_order(void) {
    chronica_director *d = NULL;
    recorder *n = held_node(&d);
    uint64_t ids[20];
    for (int i = 0; i < 20; i++) {
        CHECK_OK(chronica_director_emit(d, NULL, "t", (const uint8_t *)"x", 1));
    }
    struct drain_call c = {.d = d, .uid = "n", .timeout_ms = 60000};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, drain_thread, &c) == 0);
    CHECK(wait_until(gone_pred, &c));
    /* Out of the routes: the uid is free, and nothing new reaches n. */
    recorder *again = rec_new("n");
    CHECK_OK(reg(d, again));
    CHECK_OK(emit_str(d, NULL, "later", "y"));
    atomic_store(&g_hold, 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK_OK(c.status);
    CHECK(c.stats.accepted == 21);
    CHECK(c.stats.delivered == 21);
    CHECK(c.stats.dropped == 0 && c.stats.pending == 0);
    CHECK(atomic_load(&n->freed) == 1); /* before the call returned */
    CHECK(rec_count(n, CHRONICA_EVENT_USER, "t") == 20);
    CHECK(rec_count(n, CHRONICA_EVENT_USER, "later") == 0);
    size_t k = 0;
    for (size_t i = 0; i < rec_len(n); i++) {
        rec_event e = rec_at(n, i);
        if (e.kind == CHRONICA_EVENT_USER) {
            ids[k++] = e.id;
        }
    }
    for (size_t i = 1; i < k; i++) {
        CHECK(ids[i] > ids[i - 1]);
    }
    CHECK(wait_idle(d, "n", 2)); /* the newcomer: its pull and "later" */
    CHECK(rec_count(again, CHRONICA_EVENT_USER, "later") == 1);
    CHECK_OK(chronica_director_close(d, 5000, NULL));
    chronica_director_free(d);
    rec_delete(n);
    rec_delete(again);
}

static void a_disconnected_node_ends_at_once_and_stats_are_optional(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    chronica_node_options *o = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(o, false));
    recorder *n = rec_new("n");
    CHECK_OK(reg_with(d, n, o));
    for (int i = 0; i < 5; i++) {
        CHECK_OK(emit_str(d, NULL, "t", "x"));
    }
    chronica_node_stats before = stats_of(d, "n"); /* the pull and 5 events, all held */
    CHECK(before.accepted == 6 && before.pending == 6);
    int64_t start = now_ms();
    chronica_node_stats s = {0};
    CHECK_OK(chronica_director_unregister_draining(d, "n", 60000, &s));
    CHECK(now_ms() - start < 30000); /* it cannot deliver: no wait for the timeout */
    CHECK(s.accepted == 6 && s.dropped == 6 && s.delivered == 0 && s.pending == 0);
    CHECK(balanced(s));
    /* NULL stats_out: the same call without the counters. */
    recorder *m = rec_new("m");
    CHECK_OK(reg_with(d, m, o));
    CHECK_OK(chronica_director_unregister_draining(d, "m", 60000, NULL));
    CHECK(atomic_load(&m->freed) == 1);
    chronica_node_options_free(o);
    CHECK_OK(chronica_director_close(d, 5000, NULL));
    chronica_director_free(d);
    rec_delete(n);
    rec_delete(m);
}

/* From inside a callback the call returns at once; the drain goes on. */
static int32_t end_n(recorder *r, const chronica_event *events, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER) {
            struct drain_call *c = r->ctx;
            c->status = chronica_director_unregister_draining(c->d, c->uid, c->timeout_ms, &c->stats);
            atomic_store(&g_hold, 0);
        }
    }
    return 0;
}

static void inside_a_callback_it_does_not_wait(void) {
    chronica_director *d = NULL;
    recorder *n = held_node(&d);
    for (int i = 0; i < 10; i++) {
        CHECK_OK(emit_str(d, NULL, "t", "x"));
    }
    struct drain_call c = {.d = d, .uid = "n", .timeout_ms = 60000, .status = CHRONICA_ERR_PANIC};
    recorder *ctl = rec_new("ctl");
    ctl->behaviour = end_n;
    ctl->ctx = &c;
    CHECK_OK(reg(d, ctl));
    CHECK_OK(chronica_director_emit_to(d, NULL, "ctl", "end", (const uint8_t *)"", 0));
    CHECK(wait_count(&n->freed, 1));
    CHECK_OK(c.status);
    CHECK(c.stats.pending > 0); /* the counters of the moment: n was held */
    CHECK(rec_count(n, CHRONICA_EVENT_USER, "t") == 10);
    CHECK_OK(chronica_director_close(d, 5000, NULL));
    chronica_director_free(d);
    rec_delete(n);
    rec_delete(ctl);
}

int main(void) {
    held_events_are_delivered_in_order();
    a_disconnected_node_ends_at_once_and_stats_are_optional();
    inside_a_callback_it_does_not_wait();
    return finish();
}
