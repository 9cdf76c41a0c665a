/*
 * chronica_director_timed_emit / _timed_emit_to: under
 * CHRONICA_OVERFLOW_BLOCK the wait for room in a full lane is bounded by
 * the caller's timeout, not the director's block timeout, in both
 * directions: a short one fails with CHRONICA_ERR_QUEUE_FULL long before a
 * far-off block timeout, changing no counter and leaving *id_out alone; a
 * long one outlasts a short block timeout and succeeds once room appears,
 * writing the id the node receives to *id_out and to
 * chronica_last_event_id. 0 is a try; UINT64_MAX is taken. Under a
 * dropping policy it is emit.
 *
 * Node "slow" takes topic "fill" and holds its first user event on a
 * condition until the test releases it; with a lane of 2 (one in flight,
 * one waiting) it is full. Ends with "N passed, N failed".
 */
#include "harness.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_holding; /* slow's callback is holding its event */
static int g_released;
static uint64_t g_ids[16]; /* ids of the user events slow received */
static size_t g_nids;

static int32_t slow_send(void *ud, const chronica_event *events, size_t count) {
    (void)ud;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < count; i++) {
        if (events[i].kind != CHRONICA_EVENT_USER) {
            continue;
        }
        if (g_nids < sizeof g_ids / sizeof g_ids[0]) {
            g_ids[g_nids++] = events[i].id;
        }
        g_holding = 1;
        pthread_cond_broadcast(&g_cv);
        while (!g_released) {
            pthread_cond_wait(&g_cv, &g_mu);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void hold_again(void) {
    pthread_mutex_lock(&g_mu);
    g_holding = 0;
    g_released = 0;
    pthread_mutex_unlock(&g_mu);
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
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static int received(uint64_t id) {
    pthread_mutex_lock(&g_mu);
    int found = 0;
    for (size_t i = 0; i < g_nids; i++) {
        found |= g_ids[i] == id;
    }
    pthread_mutex_unlock(&g_mu);
    return found;
}

static int same(chronica_node_stats a, chronica_node_stats b) { return memcmp(&a, &b, sizeof a) == 0; }

/* A director with slow's lane of 2 under `block`, given block timeout. */
static chronica_director *block_director(uint64_t block_timeout_ms) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_queue_capacity(o, 2));
    CHECK_OK(chronica_options_set_batch_size(o, 1));
    CHECK_OK(chronica_options_set_overflow(o, CHRONICA_OVERFLOW_BLOCK));
    CHECK_OK(chronica_options_set_block_timeout(o, block_timeout_ms));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_add_topic(no, "fill"));
    CHECK_OK(chronica_director_register_with(d, "slow", no, slow_send, NULL, NULL));
    chronica_node_options_free(no);
    CHECK(wait_idle(d, "slow", 1)); /* the state pull */
    /* One event in slow's callback, one waiting: the lane of 2 is full. */
    CHECK_OK(emit_str(d, NULL, "fill", "1"));
    wait_holding();
    CHECK_OK(emit_str(d, NULL, "fill", "2"));
    return d;
}

struct emitter {
    chronica_director *d;
    int to; /* timed_emit_to rather than timed_emit */
    uint64_t timeout_ms;
    uint64_t id;      /* what *id_out got */
    uint64_t last_id; /* chronica_last_event_id on the emitting thread after */
    _Atomic chronica_status status;
    atomic_int returned;
};

static void *timed_emitter(void *arg) {
    struct emitter *e = arg;
    const uint8_t *p = (const uint8_t *)"w";
    chronica_status s = e->to ? chronica_director_timed_emit_to(e->d, NULL, "slow", "fill", p, 1, e->timeout_ms, &e->id)
                              : chronica_director_timed_emit(e->d, NULL, "fill", p, 1, e->timeout_ms, &e->id);
    e->last_id = chronica_last_event_id();
    atomic_store(&e->status, s);
    atomic_store(&e->returned, 1);
    return NULL;
}

/* Block timeout 10 min: a timed emit's short timeout is what ends it. */
static void test_a_short_timeout_ends_the_wait(void) {
    hold_again();
    chronica_director *d = block_director(600000);
    chronica_node_stats before = stats_of(d, "slow");
    CHECK(before.pending == 2);
    const uint64_t last = chronica_last_event_id();
    const uint8_t *p = (const uint8_t *)"3";
    uint64_t id = 777;

    int64_t t0 = now_ms();
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, "fill", p, 1, 50, &id), CHRONICA_ERR_QUEUE_FULL);
    int64_t waited = now_ms() - t0;
    /* It waited for its own 50 ms (the clock may not be exact to the ms:
       40), and far less than the director's 10 minutes. */
    CHECK(waited >= 40 && waited < 60000);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "slow", "fill", p, 1, 50, &id), CHRONICA_ERR_QUEUE_FULL);
    /* 0 is a try: full at once. */
    t0 = now_ms();
    CHECK_STATUS(chronica_director_timed_emit(d, NULL, "fill", p, 1, 0, &id), CHRONICA_ERR_QUEUE_FULL);
    CHECK_STATUS(chronica_director_timed_emit_to(d, NULL, "slow", "fill", p, 1, 0, NULL), CHRONICA_ERR_QUEUE_FULL);
    CHECK(now_ms() - t0 < 60000);
    char why[256];
    chronica_last_error(why, sizeof why);
    CHECK(strstr(why, "QUEUE_FULL") != NULL);
    /* Refused: nothing accepted, no id given. */
    CHECK(same(stats_of(d, "slow"), before));
    CHECK(id == 777);
    CHECK(chronica_last_event_id() == last);

    /* A long timeout waits for the room the release makes. */
    struct emitter e = {.d = d, .to = 1, .timeout_ms = UINT64_MAX, .id = 777};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, timed_emitter, &e) == 0);
    release_slow();
    pthread_join(t, NULL);
    CHECK_STATUS(atomic_load(&e.status), CHRONICA_OK);
    CHECK(e.id != 777 && e.id > last);
    CHECK(e.last_id == e.id);
    CHECK(wait_idle(d, "slow", 4));
    CHECK(received(e.id));
    chronica_node_stats s = stats_of(d, "slow");
    CHECK(s.accepted == 4 && s.delivered == 4 && s.dropped == 0 && balanced(s));

    /* With room, a NULL id_out is fine and the id is still recorded. */
    CHECK_OK(chronica_director_timed_emit(d, NULL, "fill", p, 1, 0, NULL));
    const uint64_t mine = chronica_last_event_id();
    CHECK(mine > e.id);
    CHECK(wait_idle(d, "slow", 5));
    CHECK(received(mine));
    chronica_director_free(d);
}

/* Block timeout 10 ms: a timed emit with a longer timeout outlasts it. */
static void test_a_long_timeout_outlasts_the_block_timeout(void) {
    hold_again();
    chronica_director *d = block_director(10);
    /* The director's own wait is 10 ms. */
    CHECK_STATUS(emit_str(d, NULL, "fill", "3"), CHRONICA_ERR_QUEUE_FULL);

    struct emitter e = {.d = d, .to = 0, .timeout_ms = 60000};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, timed_emitter, &e) == 0);
    /* Twenty block timeouts: an emit bounded by the director's would have
       failed by now. The pause only gives it the chance to return early if
       it wrongly would; no outcome depends on its length. */
    sleep_ms(200);
    CHECK(atomic_load(&e.returned) == 0);
    release_slow();
    pthread_join(t, NULL);
    CHECK_STATUS(atomic_load(&e.status), CHRONICA_OK);
    CHECK(e.last_id == e.id);
    CHECK(wait_idle(d, "slow", 4));
    CHECK(received(e.id));
    chronica_director_free(d);
}

/* Under a dropping policy a timed emit never fails for room: it is emit. */
static void test_dropping_policy_is_emit(void) {
    chronica_director *d = director_with_one_slot_node();
    uint64_t prev = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t a = 0, b = 0;
        CHECK_OK(chronica_director_timed_emit(d, NULL, "t", NULL, 0, 0, &a));
        CHECK_OK(chronica_director_timed_emit_to(d, NULL, "off", "t", NULL, 0, 0, &b));
        CHECK(a > prev && b > a);
        prev = b;
    }
    chronica_node_stats s = stats_of(d, "off");
    CHECK(s.dropped == 5 && balanced(s));
    chronica_director_free(d);
}

int main(void) {
    test_a_short_timeout_ends_the_wait();
    test_a_long_timeout_outlasts_the_block_timeout();
    test_dropping_policy_is_emit();
    return finish();
}
