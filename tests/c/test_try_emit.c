/*
 * chronica_director_try_emit / _try_emit_to: under CHRONICA_OVERFLOW_BLOCK
 * a full lane fails them at once with CHRONICA_ERR_QUEUE_FULL, changing no
 * counter anywhere, where chronica_director_emit waits for room; they work
 * the same from inside a node's callback.
 *
 * Node "slow" takes topic "fill" and holds its first user event on a
 * condition until the test releases it; with a lane of 2 (one in flight,
 * one waiting) it is full. "sink" takes "fill" and "sink" and never holds.
 * "relay" takes "relay" and tries emits from inside its callback.
 */
#include "harness.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_holding;   /* slow's callback is holding its event */
static int g_released;  /* the test let it go */
static atomic_int g_released_flag;

static int32_t slow_send(void *ud, const chronica_event *events, size_t count) {
    (void)ud;
    int user = 0;
    for (size_t i = 0; i < count; i++) {
        user |= events[i].kind == CHRONICA_EVENT_USER;
    }
    if (user) {
        pthread_mutex_lock(&g_mu);
        g_holding = 1;
        pthread_cond_broadcast(&g_cv);
        while (!g_released) {
            pthread_cond_wait(&g_cv, &g_mu);
        }
        pthread_mutex_unlock(&g_mu);
    }
    return 0;
}

static void wait_holding(void) {
    pthread_mutex_lock(&g_mu);
    while (!g_holding) {
        pthread_cond_wait(&g_cv, &g_mu);
    }
    pthread_mutex_unlock(&g_mu);
}

static void release_slow(void) {
    pthread_mutex_lock(&g_mu);
    g_released = 1;
    atomic_store(&g_released_flag, 1);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* What relay's callback saw, set before `relay_done`. */
static _Atomic chronica_status g_in_cb_broadcast = CHRONICA_OK;
static _Atomic chronica_status g_in_cb_to_slow = CHRONICA_OK;
static _Atomic chronica_status g_in_cb_to_sink = CHRONICA_ERR_INTERNAL;
static atomic_int g_relay_done;

static int32_t relay_send(void *ud, const chronica_event *events, size_t count) {
    chronica_director *d = ud;
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind != CHRONICA_EVENT_USER) {
            continue;
        }
        const uint8_t *p = (const uint8_t *)"cb";
        atomic_store(&g_in_cb_broadcast, chronica_director_try_emit(d, "relay", "fill", p, 2));
        atomic_store(&g_in_cb_to_slow, chronica_director_try_emit_to(d, "relay", "slow", "x", p, 2));
        atomic_store(&g_in_cb_to_sink, chronica_director_try_emit_to(d, "relay", "sink", "sink", p, 2));
        atomic_fetch_add(&g_relay_done, 1);
    }
    return 0;
}

struct emitter {
    chronica_director *d;
    _Atomic chronica_status status;
    atomic_int returned;
    atomic_int saw_release; /* the release had happened when emit returned */
};

static void *blocking_emit(void *arg) {
    struct emitter *e = arg;
    chronica_status s = emit_str(e->d, NULL, "fill", "waited");
    atomic_store(&e->saw_release, atomic_load(&g_released_flag));
    atomic_store(&e->status, s);
    atomic_store(&e->returned, 1);
    return NULL;
}

static void register_on(chronica_director *d, const char *uid, const char *const *topics, size_t n,
                        chronica_send_fn send, void *ud) {
    chronica_node_options *no = chronica_node_options_new();
    for (size_t i = 0; i < n; i++) {
        CHECK_OK(chronica_node_options_add_topic(no, topics[i]));
    }
    CHECK_OK(chronica_director_register_with(d, uid, no, send, ud, NULL));
    chronica_node_options_free(no);
}

static int same(chronica_node_stats a, chronica_node_stats b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_a_full_block_lane(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 2));
    CHECK_OK(chronica_options_set_batch_size(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    /* Long enough that the waiting emit below can only end by the release. */
    CHECK_OK(chronica_options_set_block_timeout(o, 600000));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);

    const char *fill[] = {"fill"}, *sink[] = {"fill", "sink"}, *relay[] = {"relay"};
    register_on(d, "slow", fill, 1, slow_send, NULL);
    register_on(d, "sink", sink, 2, ok_send, NULL);
    register_on(d, "relay", relay, 1, relay_send, d);
    CHECK(wait_idle(d, "relay", 1));

    /* One event in slow's callback, one waiting: the lane of 2 is full. */
    CHECK_OK(emit_str(d, NULL, "fill", "1"));
    wait_holding();
    CHECK_OK(emit_str(d, NULL, "fill", "2"));
    CHECK(wait_idle(d, "sink", 3));
    chronica_node_stats slow0 = stats_of(d, "slow"), sink0 = stats_of(d, "sink");
    CHECK(slow0.pending == 2 && slow0.accepted == 3);

    /* Refused at once; neither slow nor sink (which has room) accepted it. */
    const uint8_t *p = (const uint8_t *)"3";
    CHECK_STATUS(chronica_director_try_emit(d, NULL, "fill", p, 1), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_director_try_emit(d, "relay", "fill", p, 1), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_director_try_emit_to(d, NULL, "slow", "any", p, 1), CHRONICA_ERR_QUEUE_FULL);
    char why[256];
    chronica_last_error(why, sizeof why);
    CHECK(strstr(why, "QUEUE_FULL") != NULL);
    CHECK(same(stats_of(d, "slow"), slow0));
    CHECK(same(stats_of(d, "sink"), sink0));
    /* A target with room takes a try at once. */
    CHECK_OK(chronica_director_try_emit_to(d, NULL, "sink", "sink", p, 1));
    CHECK(wait_idle(d, "sink", sink0.delivered + 1));

    /* The same from inside a callback. */
    CHECK_OK(chronica_director_emit_to(d, NULL, "relay", "relay", NULL, 0));
    CHECK(wait_count(&g_relay_done, 1));
    CHECK_STATUS(atomic_load(&g_in_cb_broadcast), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(atomic_load(&g_in_cb_to_slow), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(atomic_load(&g_in_cb_to_sink), CHRONICA_OK);
    CHECK(wait_idle(d, "sink", sink0.delivered + 2));
    CHECK(same(stats_of(d, "slow"), slow0));
    CHECK(stats_of(d, "sink").accepted == sink0.accepted + 2);

    /* emit, by contrast, waits for room: it cannot return before the
       release (its timeout is far off). The pause only gives it the chance
       to return early if it wrongly would; no outcome depends on its
       length. */
    struct emitter e = {.d = d};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocking_emit, &e) == 0);
    sleep_ms(100);
    CHECK(atomic_load(&e.returned) == 0);
    release_slow();
    pthread_join(t, NULL);
    CHECK_STATUS(atomic_load(&e.status), CHRONICA_OK);
    CHECK(atomic_load(&e.saw_release) == 1);
    CHECK(wait_idle(d, "slow", 4));
    chronica_node_stats s = stats_of(d, "slow");
    CHECK(s.accepted == 4 && s.delivered == 4 && s.dropped == 0);
    CHECK(balanced(s));

    /* With room again, a try is an emit. */
    CHECK_OK(chronica_director_try_emit(d, NULL, "fill", p, 1));
    CHECK(wait_idle(d, "slow", 5));
    uint64_t left = 9;
    CHECK_OK(chronica_director_close(d, 5000, &left));
    CHECK(left == 0);
    chronica_director_free(d);
}

/* Under a dropping policy a try never fails for room: it is emit. */
static void test_dropping_policy_is_emit(void) {
    chronica_director *d = director_with_one_slot_node();
    for (int i = 0; i < 3; i++) {
        CHECK_OK(chronica_director_try_emit(d, NULL, "t", NULL, 0));
        CHECK_OK(chronica_director_try_emit_to(d, NULL, "off", "t", NULL, 0));
    }
    chronica_node_stats s = stats_of(d, "off");
    CHECK(s.dropped == 5 && balanced(s));
    chronica_director_free(d);
}

int main(void) {
    test_a_full_block_lane();
    test_dropping_policy_is_emit();
    return finish();
}
