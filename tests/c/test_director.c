/*
 * Behaviour of the C API: the guarantees of SPEC section 2 through libchronica.
 * Routing, order, state pull with the trust token, retry and dead letters,
 * drop policies, connect / disconnect, groups, re-entrant calls from inside
 * callbacks and hooks, unregister, close / free, the accounting equation and
 * user_data destructors run exactly once.
 */
#include "harness.h"

static chronica_director *new_director(chronica_options *o) {
    chronica_director *d = NULL;
    chronica_status s = chronica_director_new(o, &d);
    CHECK_OK(s);
    return d;
}

static void test_version(void) {
    CHECK(strcmp(chronica_version(), CHRONICA_VERSION) == 0);
    CHECK(chronica_version_number() == CHRONICA_VERSION_NUMBER);
    CHECK(strcmp(chronica_status_str(CHRONICA_OK), "ok") == 0);
    CHECK(strcmp(chronica_status_str((chronica_status)9999), "unknown status") == 0);
    for (unsigned s = 0; s <= CHRONICA_ERR_INTERNAL; s++) {
        CHECK(chronica_status_str((chronica_status)s)[0] != '\0');
    }
}

static void test_routing(void) {
    chronica_director *d = new_director(NULL);
    recorder *a = rec_new("a"), *b = rec_new("b"), *c = rec_new("c");
    CHECK_OK(reg(d, a));
    CHECK_OK(reg(d, b));
    CHECK_OK(reg(d, c));
    /* broadcast except the sender */
    CHECK_OK(emit_str(d, "a", "t", "from-a"));
    /* no source: everyone */
    CHECK_OK(emit_str(d, NULL, "t", "anon"));
    /* unicast */
    CHECK_OK(chronica_director_emit_to(d, "a", "c", "t", (const uint8_t *)"to-c", 4));
    /* root broadcast and root unicast */
    CHECK_OK(chronica_director_emit_root(d, "resync", (const uint8_t *)"r", 1));
    CHECK_OK(chronica_director_emit_root_to(d, "b", "only-b", NULL, 0));
    /* unknown source / target: an error, never a crash, and nothing sent */
    CHECK_STATUS(emit_str(d, "ghost", "t", "x"), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_director_emit_to(d, NULL, "ghost", "t", NULL, 0), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_director_emit_root_to(d, "ghost", "x", NULL, 0), CHRONICA_ERR_UNKNOWN_NODE);

    CHECK(wait_idle(d, "a", 3));
    CHECK(wait_idle(d, "b", 5));
    CHECK(wait_idle(d, "c", 5));
    CHECK(rec_count(a, CHRONICA_EVENT_USER, NULL) == 1); /* "anon" only */
    CHECK(rec_count(b, CHRONICA_EVENT_USER, NULL) == 2);
    CHECK(rec_count(c, CHRONICA_EVENT_USER, NULL) == 3);
    CHECK(rec_count(a, CHRONICA_EVENT_ROOT, "resync") == 1);
    CHECK(rec_count(b, CHRONICA_EVENT_ROOT, "only-b") == 1);
    CHECK(rec_count(c, CHRONICA_EVENT_ROOT, "only-b") == 0);
    /* the event fields as C sees them */
    size_t found = 0;
    for (size_t i = 0; i < rec_len(c); i++) {
        rec_event e = rec_at(c, i);
        if (strcmp(e.payload, "to-c") == 0) {
            found++;
            CHECK(strcmp(e.source, "a") == 0);
            CHECK(strcmp(e.topic, "t") == 0);
            CHECK(e.payload_len == 4);
            CHECK(!e.has_key);
            CHECK(e.token[0] == '\0');
        }
        if (strcmp(e.payload, "anon") == 0) {
            CHECK(e.source[0] == '\0');
        }
    }
    CHECK(found == 1);
    chronica_director_free(d);
    rec_delete(a);
    rec_delete(b);
    rec_delete(c);
}

static void test_topics(void) {
    chronica_director *d = new_director(NULL);
    recorder *o = rec_new("orders"), *all = rec_new("all");
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_add_topic(no, "orders.*"));
    CHECK_OK(reg_with(d, o, no));
    chronica_node_options_free(no);
    CHECK_OK(reg(d, all));
    CHECK_OK(chronica_director_subscribe(d, "orders", "audit.>"));
    const char *topics[] = {"orders.created", "orders.a.b", "audit.x.y", "other", ""};
    for (size_t i = 0; i < 5; i++) {
        CHECK_OK(emit_str(d, NULL, topics[i], topics[i]));
    }
    CHECK(wait_idle(d, "all", 6));
    CHECK(wait_idle(d, "orders", 3));
    CHECK(rec_count(o, CHRONICA_EVENT_USER, NULL) == 2);
    CHECK(rec_count(o, CHRONICA_EVENT_USER, "orders.created") == 1);
    CHECK(rec_count(o, CHRONICA_EVENT_USER, "audit.x.y") == 1);
    CHECK(rec_count(all, CHRONICA_EVENT_USER, NULL) == 5); /* the empty topic too */
    CHECK(rec_count(all, CHRONICA_EVENT_USER, "") == 1);
    chronica_director_free(d);
    rec_delete(o);
    rec_delete(all);
}

static void test_pull_current_state(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_trust_token(o, "s3cret"));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    recorder *b = rec_new("b"), *a = rec_new("a"), *c = rec_new("c");
    CHECK_OK(reg(d, b));
    CHECK_OK(reg(d, a));
    CHECK_OK(reg(d, c));
    CHECK(wait_idle(d, "c", 1));
    CHECK(wait_idle(d, "b", 1));
    rec_event first = rec_at(c, 0);
    CHECK(first.kind == CHRONICA_EVENT_ROOT);
    CHECK(strcmp(first.topic, "chronica.pull_current_state") == 0);
    CHECK(strcmp(first.payload, "{\"peers\":[\"a\",\"b\"]}") == 0);
    CHECK(strcmp(first.token, "s3cret") == 0);
    rec_event fb = rec_at(b, 0);
    CHECK(strcmp(fb.payload, "{\"peers\":[]}") == 0);
    /* every root event carries the token; user events do not */
    CHECK_OK(chronica_director_emit_root_to(d, "a", "ping", NULL, 0));
    CHECK_OK(emit_str(d, NULL, "u", "x"));
    CHECK(wait_idle(d, "a", 3));
    for (size_t i = 0; i < rec_len(a); i++) {
        rec_event e = rec_at(a, i);
        CHECK(strcmp(e.token, e.kind == CHRONICA_EVENT_ROOT ? "s3cret" : "") == 0);
    }
    chronica_director_free(d);
    rec_delete(a);
    rec_delete(b);
    rec_delete(c);
}

static void test_order_and_batches(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_batch_size(o, 16));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    recorder *r = rec_new("n");
    CHECK_OK(reg(d, r));
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", i);
        CHECK_STATUS(emit_str(d, NULL, "seq", buf), CHRONICA_OK);
        if (i % 5000 == 2500) {
            CHECK_OK(chronica_director_emit_root_to(d, "n", "mid", NULL, 0));
        }
    }
    CHECK(wait_idle(d, "n", N + 5));
    int in_order = 1;
    long next = 0;
    uint64_t last_id = 0;
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (e.kind != CHRONICA_EVENT_USER) {
            continue;
        }
        in_order &= atol(e.payload) == next && e.id > last_id;
        next++;
        last_id = e.id;
    }
    CHECK(in_order);
    CHECK(next == N);
    CHECK(r->max_batch <= 16);
    CHECK(atomic_load(&r->overlapped) == 0);
    CHECK(rec_count(r, CHRONICA_EVENT_ROOT, "mid") == 4);
    chronica_director_free(d);
    rec_delete(r);
}

static atomic_int g_errors_seen;
static atomic_int g_dead_letters;
static atomic_int g_dead_lettered_events;
static atomic_int g_drops_overflow;
static atomic_int g_drops_unregistered;

static void on_error(void *ud, const char *uid, size_t uid_len, const char *err, size_t err_len) {
    (void)ud;
    (void)uid;
    if (uid_len > 0 && err_len > 0 && err[err_len - 1] == '7') { /* "callback returned 7" */
        atomic_fetch_add(&g_errors_seen, 1);
    }
}

static void on_dead_letter(void *ud, const char *uid, size_t uid_len, const chronica_event *events, size_t count,
                           const char *err, size_t err_len) {
    (void)ud;
    (void)err;
    if (uid_len == 2 && memcmp(uid, "dl", 2) == 0 && err_len > 0) {
        atomic_fetch_add(&g_dead_letters, 1);
        for (size_t i = 0; i < count; i++) {
            if (events[i].kind == CHRONICA_EVENT_USER && events[i].payload_len == 3) {
                atomic_fetch_add(&g_dead_lettered_events, 1);
            }
        }
    }
}

static void on_drop(void *ud, const char *uid, size_t uid_len, const chronica_event *e, chronica_drop_reason why) {
    (void)ud;
    (void)uid;
    (void)uid_len;
    (void)e;
    atomic_fetch_add(why == CHRONICA_DROP_OVERFLOW ? &g_drops_overflow : &g_drops_unregistered, 1);
}

static void test_retry_and_dead_letter(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(o, 5, 20, 2.0, 0));
    CHECK_OK(chronica_options_set_error_hook(o, on_error, NULL));
    CHECK_OK(chronica_options_set_dead_letter_hook(o, on_dead_letter, NULL));
    chronica_director *d = new_director(o);
    chronica_options_free(o);

    /* fails three times, then succeeds: retried on a timer, no other traffic */
    recorder *r = rec_new("flaky");
    atomic_store(&r->fail_next, 3);
    CHECK_OK(reg(d, r));
    CHECK_OK(emit_str(d, NULL, "t", "payload"));
    CHECK(wait_idle(d, "flaky", 2));
    chronica_node_stats s = stats_of(d, "flaky");
    CHECK(s.failures == 3);
    CHECK(s.retries == 3);
    CHECK(s.delivered == 2);
    CHECK(balanced(s));
    CHECK(atomic_load(&g_errors_seen) == 3);
    CHECK(rec_count(r, CHRONICA_EVENT_USER, "t") == 1);

    /* always fails: per-node max_retries 2 sends the batch to the dead-letter hook */
    recorder *dl = rec_new("dl");
    dl->fail_user_always = 1;
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_retry(no, 1, 4, 2.0, 2));
    CHECK_OK(chronica_node_options_set_retry_jitter(no, 0.0));
    CHECK_OK(reg_with(d, dl, no));
    chronica_node_options_free(no);
    CHECK(wait_idle(d, "dl", 1)); /* the state pull is delivered */
    CHECK_OK(emit_str(d, "flaky", "t", "abc"));
    CHECK(wait_idle(d, "dl", 1));
    s = stats_of(d, "dl");
    CHECK(s.dead_lettered == 1);
    CHECK(s.failures == 3); /* the first attempt and two retries */
    CHECK(s.retries == 2);
    CHECK(balanced(s));
    CHECK(atomic_load(&g_dead_letters) == 1);
    CHECK(atomic_load(&g_dead_lettered_events) == 1);
    uint64_t undelivered = 99;
    CHECK_OK(chronica_director_close(d, 2000, &undelivered));
    CHECK(undelivered == 0);
    chronica_director_free(d);
    rec_delete(r);
    rec_delete(dl);
}

/* A disconnected node with a lane of 4 gets 10 events under `policy`. */
static recorder *overflow_case(chronica_overflow policy, chronica_director **out) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 4));
    CHECK_OK(chronica_options_set_overflow(o, policy));
    CHECK_OK(chronica_options_set_block_timeout(o, 20));
    CHECK_OK(chronica_options_set_drop_hook(o, on_drop, NULL));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    recorder *r = rec_new("slow");
    CHECK_OK(reg_with(d, r, no));
    chronica_node_options_free(no);
    bool connected = true;
    CHECK_OK(chronica_director_node_is_connected(d, "slow", &connected));
    CHECK(!connected);
    for (int i = 0; i < 10; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        chronica_status st = emit_str(d, NULL, "t", buf);
        CHECK(st == (policy == CHRONICA_OVERFLOW_BLOCK && i >= 4 ? CHRONICA_ERR_QUEUE_FULL : CHRONICA_OK));
    }
    chronica_node_stats s = stats_of(d, "slow");
    CHECK(balanced(s));
    CHECK(s.pending == 5); /* 4 user events and the state pull */
    CHECK(s.delivered == 0);
    CHECK(s.dropped == (policy == CHRONICA_OVERFLOW_BLOCK ? 0u : 6u));
    CHECK_OK(chronica_director_node_connected(d, "slow"));
    CHECK(wait_idle(d, "slow", 5));
    *out = d;
    return r;
}

static void user_payloads(recorder *r, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (e.kind == CHRONICA_EVENT_USER && strlen(out) + strlen(e.payload) < cap) {
            strcat(out, e.payload);
        }
    }
}

static void test_drop_policies(void) {
    chronica_director *d;
    char got[64];

    atomic_store(&g_drops_overflow, 0);
    recorder *r = overflow_case(CHRONICA_OVERFLOW_DROP_OLDEST, &d);
    user_payloads(r, got, sizeof got);
    CHECK(strcmp(got, "6789") == 0);
    CHECK(atomic_load(&g_drops_overflow) == 6);
    /* the node learns of its loss in band, before its next delivery */
    CHECK(rec_count(r, CHRONICA_EVENT_ROOT, "chronica.lagged") == 1);
    size_t lagged_at = 999, first_user_at = 999;
    for (size_t i = 0; i < rec_len(r); i++) {
        rec_event e = rec_at(r, i);
        if (strcmp(e.topic, "chronica.lagged") == 0) {
            lagged_at = i;
            CHECK(strstr(e.payload, "\"dropped\":6") != NULL);
        }
        if (e.kind == CHRONICA_EVENT_USER && first_user_at == 999) {
            first_user_at = i;
        }
    }
    CHECK(lagged_at < first_user_at);
    chronica_director_free(d);
    rec_delete(r);

    r = overflow_case(CHRONICA_OVERFLOW_DROP_NEWEST, &d);
    user_payloads(r, got, sizeof got);
    CHECK(strcmp(got, "0123") == 0);
    CHECK(rec_count(r, CHRONICA_EVENT_ROOT, "chronica.lagged") == 1);
    chronica_director_free(d);
    rec_delete(r);

    r = overflow_case(CHRONICA_OVERFLOW_BLOCK, &d);
    user_payloads(r, got, sizeof got);
    CHECK(strcmp(got, "0123") == 0);
    CHECK(rec_count(r, CHRONICA_EVENT_ROOT, "chronica.lagged") == 0);
    chronica_node_stats s = stats_of(d, "slow");
    CHECK(s.accepted == 5 && s.delivered == 5 && s.dropped == 0);
    chronica_director_free(d);
    rec_delete(r);
}

static void test_connect_disconnect(void) {
    chronica_director *d = new_director(NULL);
    recorder *r = rec_new("n");
    CHECK_OK(reg(d, r));
    CHECK(wait_idle(d, "n", 1));
    CHECK_OK(chronica_director_node_disconnected(d, "n"));
    bool connected = true;
    CHECK_OK(chronica_director_node_is_connected(d, "n", &connected));
    CHECK(!connected);
    for (int i = 0; i < 5; i++) {
        CHECK_OK(emit_str(d, NULL, "t", "x"));
    }
    sleep_ms(50); /* time for a worker that missed the disconnect to deliver */
    chronica_node_stats s = stats_of(d, "n");
    CHECK(s.delivered == 1 && s.pending == 5);
    CHECK_OK(chronica_director_node_connected(d, "n"));
    CHECK(wait_idle(d, "n", 6));
    CHECK_OK(chronica_director_node_is_connected(d, "n", &connected));
    CHECK(connected);
    CHECK(rec_count(r, CHRONICA_EVENT_USER, NULL) == 5);
    chronica_director_free(d);
    rec_delete(r);
}

static void test_groups(void) {
    chronica_director *d = new_director(NULL);
    recorder *g1 = rec_new("g1"), *g2 = rec_new("g2"), *solo = rec_new("solo");
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_group(no, "workers"));
    CHECK_OK(reg_with(d, g1, no));
    CHECK_OK(reg_with(d, g2, no));
    chronica_node_options_free(no);
    CHECK_OK(reg(d, solo));
    for (int i = 0; i < 100; i++) {
        CHECK_STATUS(emit_str(d, NULL, "job", "j"), CHRONICA_OK);
    }
    const char *keys[] = {"k1", "k2", "k3"};
    for (int i = 0; i < 60; i++) {
        const char *k = keys[i % 3];
        CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "keyed", (const uint8_t *)k, 2, (const uint8_t *)k, 2),
                     CHRONICA_OK);
    }
    CHECK(wait_idle(d, "solo", 161));
    CHECK(wait_idle(d, "g1", 1));
    CHECK(wait_idle(d, "g2", 1));
    size_t n1 = rec_count(g1, CHRONICA_EVENT_USER, "job"), n2 = rec_count(g2, CHRONICA_EVENT_USER, "job");
    CHECK(n1 + n2 == 100);
    CHECK(n1 > 0 && n2 > 0); /* round-robin over connected members */
    CHECK(rec_count(solo, CHRONICA_EVENT_USER, NULL) == 160);
    /* a key always lands on the same member */
    int same = 1;
    for (int k = 0; k < 3; k++) {
        int in1 = 0, in2 = 0;
        for (size_t i = 0; i < rec_len(g1); i++) {
            in1 |= strcmp(rec_at(g1, i).key, keys[k]) == 0;
        }
        for (size_t i = 0; i < rec_len(g2); i++) {
            in2 |= strcmp(rec_at(g2, i).key, keys[k]) == 0;
        }
        same &= in1 != in2;
    }
    CHECK(same);
    CHECK(rec_count(g1, CHRONICA_EVENT_USER, "keyed") + rec_count(g2, CHRONICA_EVENT_USER, "keyed") == 60);
    chronica_director_free(d);
    rec_delete(g1);
    rec_delete(g2);
    rec_delete(solo);
}

/* ---- re-entrancy -------------------------------------------------------- */

static atomic_int g_reentrant_checks;

static int32_t reentrant_behaviour(recorder *r, const chronica_event *events, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const chronica_event *e = &events[i];
        if (e->kind != CHRONICA_EVENT_USER || e->topic_len != 4 || memcmp(e->topic, "ping", 4) != 0) {
            continue;
        }
        chronica_director *d = r->d;
        int ok = 1;
        /* emit, unicast, stats, register, subscribe, unregister: all allowed */
        ok &= chronica_director_emit_to(d, r->uid, "pong", "pong", e->payload, e->payload_len) == CHRONICA_OK;
        ok &= emit_str(d, r->uid, "echo", "e") == CHRONICA_OK;
        chronica_node_stats s = {0};
        ok &= chronica_director_node_stats(d, r->uid, &s) == CHRONICA_OK && s.pending >= 1;
        recorder *late = r->ctx;
        ok &= reg(d, late) == CHRONICA_OK;
        ok &= chronica_director_subscribe(d, "late", "echo") == CHRONICA_OK;
        ok &= chronica_director_unregister(d, "late") == CHRONICA_OK;
        /* closing or freeing the director that runs us is refused */
        uint64_t left = 12345;
        ok &= chronica_director_close(d, 100, &left) == CHRONICA_ERR_REENTRANT && left == 12345;
        char why[128];
        chronica_director_free(d);
        chronica_last_error(why, sizeof why);
        ok &= strstr(why, "REENTRANT") != NULL;
        ok &= emit_str(d, NULL, "after-free-attempt", "still alive") == CHRONICA_OK;
        if (ok) {
            atomic_fetch_add(&g_reentrant_checks, 1);
        }
    }
    return 0;
}

static int32_t unregister_self(recorder *r, const chronica_event *events, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind == CHRONICA_EVENT_USER) {
            int ok = chronica_director_unregister(r->d, r->uid) == CHRONICA_OK;
            /* the destructor waits for this callback to return */
            ok &= atomic_load(&r->freed) == 0;
            if (ok) {
                atomic_fetch_add(&g_reentrant_checks, 1);
            }
            return 0;
        }
    }
    return 0;
}

static void drop_hook_that_reenters(void *ud, const char *uid, size_t uid_len, const chronica_event *e,
                                    chronica_drop_reason why) {
    (void)uid;
    (void)uid_len;
    (void)e;
    (void)why;
    chronica_director **dp = ud;
    /* runs on the emitting thread, inside chronica_director_emit */
    int ok = chronica_director_close(*dp, 10, NULL) == CHRONICA_ERR_REENTRANT;
    chronica_director_free(*dp); /* refused: would free the director under the running emit */
    chronica_node_stats s = {0};
    ok &= chronica_director_node_stats(*dp, "full", &s) == CHRONICA_OK;
    if (ok) {
        atomic_fetch_add(&g_reentrant_checks, 1);
    }
}

static void test_reentrancy(void) {
    atomic_store(&g_reentrant_checks, 0);
    chronica_director *d = new_director(NULL);
    recorder *r = rec_new("re"), *pong = rec_new("pong"), *late = rec_new("late");
    r->behaviour = reentrant_behaviour;
    r->ctx = late;
    CHECK_OK(reg(d, r));
    CHECK_OK(reg(d, pong));
    CHECK_OK(emit_str(d, NULL, "ping", "p1"));
    CHECK(wait_count(&g_reentrant_checks, 1));
    CHECK(wait_idle(d, "re", 2));
    CHECK(wait_idle(d, "pong", 4));
    CHECK(atomic_load(&g_reentrant_checks) == 1);
    CHECK(rec_count(pong, CHRONICA_EVENT_USER, "pong") == 1);
    CHECK(rec_count(pong, CHRONICA_EVENT_USER, "echo") == 1);
    CHECK(rec_count(pong, CHRONICA_EVENT_USER, "after-free-attempt") == 1);
    CHECK(rec_count(r, CHRONICA_EVENT_USER, "echo") == 0); /* sender excluded */

    /* a node unregistering itself from its own callback */
    recorder *self = rec_new("self");
    self->behaviour = unregister_self;
    CHECK_OK(reg(d, self));
    CHECK_OK(chronica_director_emit_to(d, NULL, "self", "bye", NULL, 0));
    CHECK(wait_count(&self->freed, 1));
    CHECK(atomic_load(&g_reentrant_checks) == 2);
    CHECK_OK(reg(d, self)); /* the uid is free again */
    CHECK_OK(chronica_director_unregister(d, "self"));
    CHECK(atomic_load(&self->freed) == 2);

    CHECK_OK(chronica_director_close(d, 2000, NULL));
    chronica_director_free(d);
    CHECK(atomic_load(&late->freed) == 1);
    CHECK(atomic_load(&r->freed) == 1);
    rec_delete(r);
    rec_delete(pong);
    rec_delete(late);
    rec_delete(self);

    /* a hook on the emitting thread may not close or free either */
    chronica_director *d2 = NULL;
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_DROP_NEWEST));
    CHECK_OK(chronica_options_set_drop_hook(o, drop_hook_that_reenters, &d2));
    CHECK_OK(chronica_director_new(o, &d2));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    recorder *full = rec_new("full");
    CHECK_OK(reg_with(d2, full, no));
    chronica_node_options_free(no);
    CHECK_OK(emit_str(d2, NULL, "t", "kept"));
    CHECK_OK(emit_str(d2, NULL, "t", "dropped"));
    CHECK(atomic_load(&g_reentrant_checks) == 3);
    CHECK_OK(emit_str(d2, NULL, "t", "still open"));
    CHECK_OK(chronica_director_close(d2, 10, NULL));
    chronica_director_free(d2);
    CHECK(atomic_load(&full->freed) == 1);
    rec_delete(full);
}

/* ---- unregister, close, free, destructors ------------------------------- */

typedef struct owned {
    char *buffer; /* malloc'd: a missed destructor shows up as a leak */
    atomic_int *freed;
} owned;

static int32_t owned_send(void *ud, const chronica_event *events, size_t count) {
    owned *o = ud;
    (void)events;
    o->buffer[0] = (char)count;
    return 0;
}

static void owned_free(void *ud) {
    owned *o = ud;
    atomic_fetch_add(o->freed, 1);
    free(o->buffer);
    free(o);
}

static owned *owned_new(atomic_int *freed) {
    owned *o = malloc(sizeof *o);
    o->buffer = malloc(64);
    o->freed = freed;
    return o;
}

static void test_unregister_close_free(void) {
    atomic_store(&g_drops_unregistered, 0);
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_drop_hook(o, on_drop, NULL));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    atomic_int freed = 0;

    /* unregister returns after the destructor ran; pending events are dropped and reported */
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_director_register_with(d, "u", no, owned_send, owned_new(&freed), owned_free));
    chronica_node_options_free(no);
    CHECK_OK(emit_str(d, NULL, "t", "a"));
    CHECK_OK(emit_str(d, NULL, "t", "b"));
    CHECK_OK(chronica_director_unregister(d, "u"));
    CHECK(atomic_load(&freed) == 1);
    CHECK(atomic_load(&g_drops_unregistered) == 3); /* two user events and the state pull */
    chronica_node_stats s = {0};
    CHECK_STATUS(chronica_director_node_stats(d, "u", &s), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK_STATUS(chronica_director_unregister(d, "u"), CHRONICA_ERR_UNKNOWN_NODE);
    /* the uid can be registered again at once */
    CHECK_OK(chronica_director_register(d, "u", owned_send, owned_new(&freed), owned_free));
    /* a refused registration keeps user_data with the caller */
    owned *mine = owned_new(&freed);
    CHECK_STATUS(chronica_director_register(d, "u", owned_send, mine, owned_free), CHRONICA_ERR_DUPLICATE_NODE);
    CHECK(atomic_load(&freed) == 1);
    owned_free(mine);
    CHECK(atomic_load(&freed) == 2);

    /* group hand-off: an unregistered member's pending events go to the other */
    no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_group(no, "g"));
    CHECK_OK(chronica_node_options_set_connected(no, false));
    recorder *m1 = rec_new("m1"), *m2 = rec_new("m2");
    CHECK_OK(reg_with(d, m1, no));
    CHECK_OK(reg_with(d, m2, no));
    chronica_node_options_free(no);
    for (int i = 0; i < 10; i++) {
        CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "g.t", (const uint8_t *)"k", 1, NULL, 0), CHRONICA_OK);
    }
    chronica_node_stats s1 = stats_of(d, "m1"), s2 = stats_of(d, "m2");
    const char *holder = s1.pending > s2.pending ? "m1" : "m2";
    const char *heir = s1.pending > s2.pending ? "m2" : "m1";
    recorder *heir_rec = s1.pending > s2.pending ? m2 : m1;
    CHECK_OK(chronica_director_unregister(d, holder));
    CHECK_OK(chronica_director_node_connected(d, heir));
    CHECK(wait_idle(d, heir, 11));
    CHECK(rec_count(heir_rec, CHRONICA_EVENT_USER, "g.t") == 10);

    /* close: what a disconnected node still holds is reported and stays pending */
    no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    owned *held = owned_new(&freed);
    held->buffer[0] = 'h';
    CHECK_OK(chronica_director_register_with(d, "held", no, owned_send, held, owned_free));
    chronica_node_options_free(no);
    CHECK_OK(emit_str(d, NULL, "only-held", "x"));
    uint64_t undelivered = 0;
    CHECK_OK(chronica_director_close(d, 50, &undelivered));
    CHECK(undelivered >= 2); /* the state pull and at least "x" (others may hold "x" too) */
    s = stats_of(d, "held");
    CHECK(s.pending == 2 && balanced(s));
    /* the destructors of the nodes still registered wait for the free, so
       what a node keeps in user_data stays readable after close (SPEC 5) */
    CHECK(atomic_load(&freed) == 2);
    CHECK(held->buffer[0] == 'h');
    recorder *holder_rec = heir_rec == m1 ? m2 : m1;
    CHECK(atomic_load(&holder_rec->freed) == 1 && atomic_load(&heir_rec->freed) == 0);
    CHECK(rec_count(heir_rec, CHRONICA_EVENT_USER, "g.t") == 10);
    /* after close: Closed for everything but stats and free */
    CHECK_STATUS(chronica_director_close(d, 10, NULL), CHRONICA_ERR_CLOSED);
    CHECK_STATUS(emit_str(d, NULL, "t", "x"), CHRONICA_ERR_CLOSED);
    owned *late = owned_new(&freed);
    CHECK_STATUS(chronica_director_register(d, "new", owned_send, late, owned_free), CHRONICA_ERR_CLOSED);
    owned_free(late);
    CHECK(atomic_load(&freed) == 3);
    chronica_director_free(d);
    /* every destructor ran, once: the two still registered at the free */
    CHECK(atomic_load(&freed) == 5);
    CHECK(atomic_load(&m1->freed) == 1 && atomic_load(&m2->freed) == 1);
    rec_delete(m1);
    rec_delete(m2);

    /* free without close: closes, and runs every destructor exactly once */
    d = new_director(NULL);
    atomic_int freed2 = 0;
    for (int i = 0; i < 8; i++) {
        char uid[16];
        snprintf(uid, sizeof uid, "n%d", i);
        CHECK_OK(chronica_director_register(d, uid, owned_send, owned_new(&freed2), owned_free));
    }
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    chronica_director_free(d);
    CHECK(atomic_load(&freed2) == 8);
    chronica_director_free(NULL);
}

/* ---- accounting under load ---------------------------------------------- */

struct producer {
    chronica_director *d;
    int id;
};

static void *produce(void *p) {
    struct producer *pr = p;
    for (int i = 0; i < 3000; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d-%d", pr->id, i);
        emit_str(pr->d, NULL, i % 2 ? "acct.odd" : "acct.even", buf);
    }
    return NULL;
}

static void test_accounting(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 256));
    CHECK_OK(chronica_options_set_retry(o, 1, 2, 2.0, 1));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    recorder *fast = rec_new("fast"), *flaky = rec_new("flaky"), *off = rec_new("off");
    CHECK_OK(reg(d, fast));
    atomic_store(&flaky->fail_next, 40);
    CHECK_OK(reg(d, flaky));
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(reg_with(d, off, no));
    chronica_node_options_free(no);
    pthread_t t[4];
    struct producer p[4];
    for (int i = 0; i < 4; i++) {
        p[i].d = d;
        p[i].id = i;
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    int always = 1;
    const char *uids[] = {"fast", "flaky", "off"};
    for (int k = 0; k < 200; k++) { /* the equation holds at every moment */
        for (int u = 0; u < 3; u++) {
            always &= balanced(stats_of(d, uids[u]));
        }
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    CHECK(always);
    CHECK(wait_idle(d, "fast", 1));
    CHECK(wait_idle(d, "flaky", 1));
    for (int u = 0; u < 3; u++) {
        chronica_node_stats s = stats_of(d, uids[u]);
        CHECK(balanced(s));
        CHECK(s.accepted >= 12001); /* plus any lag notices */
    }
    chronica_node_stats f = stats_of(d, "flaky");
    CHECK(f.dead_lettered > 0);
    CHECK(stats_of(d, "off").dropped == 12000 - 256);
    uint64_t undelivered = 0;
    CHECK_OK(chronica_director_close(d, 10, &undelivered));
    CHECK(undelivered == 257); /* the disconnected node's full lane and its state pull */
    for (int u = 0; u < 3; u++) {
        CHECK(balanced(stats_of(d, uids[u])));
    }
    chronica_director_free(d);
    rec_delete(fast);
    rec_delete(flaky);
    rec_delete(off);
}

static void test_membership_and_concurrency(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_membership_events(o, true));
    chronica_director *d = new_director(o);
    chronica_options_free(o);
    recorder *a = rec_new("a"), *b = rec_new("b");
    CHECK_OK(reg(d, a));
    CHECK_OK(reg(d, b));
    CHECK_OK(chronica_director_unregister(d, "b"));
    CHECK(wait_idle(d, "a", 3));
    CHECK(rec_count(a, CHRONICA_EVENT_ROOT, "chronica.node_joined") == 1);
    CHECK(rec_count(a, CHRONICA_EVENT_ROOT, "chronica.node_left") == 1);

    /* concurrency 4: parallel calls, order per key */
    recorder *par = rec_new("par");
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_concurrency(no, 4));
    CHECK_OK(chronica_node_options_add_topic(no, "par"));
    CHECK_OK(reg_with(d, par, no));
    chronica_node_options_free(no);
    /* Seven keys over four lanes: with a key count the concurrency divides,
       round-robin lanes would keep each key on one lane too. */
    for (int i = 0; i < 400; i++) {
        char key[16], payload[16];
        snprintf(key, sizeof key, "k%d", i % 7);
        snprintf(payload, sizeof payload, "%d", i);
        CHECK_STATUS(chronica_director_emit_keyed(d, NULL, "par", (const uint8_t *)key, strlen(key),
                                                  (const uint8_t *)payload, strlen(payload)),
                     CHRONICA_OK);
    }
    CHECK(wait_idle(d, "par", 401));
    int ordered = 1;
    long last[7] = {-1, -1, -1, -1, -1, -1, -1};
    for (size_t i = 0; i < rec_len(par); i++) {
        rec_event e = rec_at(par, i);
        if (e.kind == CHRONICA_EVENT_USER) {
            int k = e.key[1] - '0';
            ordered &= atol(e.payload) > last[k];
            last[k] = atol(e.payload);
        }
    }
    CHECK(ordered);
    chronica_director_free(d);
    CHECK(atomic_load(&par->freed) == 1);
    rec_delete(a);
    rec_delete(b);
    rec_delete(par);
}

int main(void) {
    test_version();
    test_routing();
    test_topics();
    test_pull_current_state();
    test_order_and_batches();
    test_retry_and_dead_letter();
    test_drop_policies();
    test_connect_disconnect();
    test_groups();
    test_reentrancy();
    test_unregister_close_free();
    test_accounting();
    test_membership_and_concurrency();
    /* every recorder registered successfully had its destructor run once */
    CHECK(atomic_load(&g_registered) > 20);
    CHECK(atomic_load(&g_destructors) == atomic_load(&g_registered));
    return finish();
}
