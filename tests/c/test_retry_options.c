/*
 * Retry limits and backoff shapes beyond
 * chronica_options_set_retry: chronica_*_set_max_retries (an exact limit,
 * 0 = no re-attempt; the director's, a node's and a bus subscription's)
 * and chronica_*_set_retry_backoff.
 * Ends with "N passed, N failed".
 */
#include "harness.h"

struct dead_ctx {
    chronica_director *d;
    const char *uid;
    uint64_t want;
};

static int dead_lettered(void *p) {
    struct dead_ctx *c = p;
    return stats_of(c->d, c->uid).dead_lettered >= c->want;
}

static int failed_thrice(void *p) {
    struct dead_ctx *c = p;
    return stats_of(c->d, c->uid).failures >= 3;
}

/* A limit of 0 dead-letters a failed batch at its first failure, with no
   re-attempt, from the director's options and from a node's. In
   chronica_*_set_retry the same 0 means unlimited (the SPEC's signature),
   so that setter, called later, replaces the limit with "unlimited". */
static void test_max_retries_zero_dead_letters_at_once(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(o, 1, 1, 1.0, 5));
    CHECK_OK(chronica_options_set_max_retries(o, 0));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));

    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_max_retries(no, 0));
    chronica_node_options *unlimited = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_max_retries(unlimited, 0));
    CHECK_OK(chronica_node_options_set_retry(unlimited, 1, 1, 1.0, 0));

    recorder *by_director = rec_new("director"), *by_node = rec_new("node"), *forever = rec_new("forever");
    by_director->fail_user_always = by_node->fail_user_always = forever->fail_user_always = 1;
    CHECK_OK(reg(d, by_director));
    CHECK_OK(reg_with(d, by_node, no));
    CHECK_OK(reg_with(d, forever, unlimited));
    CHECK_OK(emit_str(d, NULL, "t", "x"));

    struct dead_ctx c1 = {d, "director", 1}, c2 = {d, "node", 1}, c3 = {d, "forever", 0};
    CHECK(wait_until(dead_lettered, &c1));
    CHECK(wait_until(dead_lettered, &c2));
    CHECK(wait_until(failed_thrice, &c3));
    chronica_node_stats s1 = stats_of(d, "director"), s2 = stats_of(d, "node"), s3 = stats_of(d, "forever");
    CHECK(s1.failures == 1 && s1.dead_lettered == 1 && s1.retries == 0 && s1.pending == 0);
    CHECK(s2.failures == 1 && s2.dead_lettered == 1 && s2.retries == 0 && s2.pending == 0);
    CHECK(s3.dead_lettered == 0 && s3.retries >= 2);

    /* "forever" holds its event for good: no drain to wait for */
    uint64_t left = 0;
    CHECK_OK(chronica_director_close(d, 0, &left));
    CHECK(left == 1);
    chronica_director_free(d);
    chronica_node_options_free(unlimited);
    chronica_node_options_free(no);
    chronica_options_free(o);
    rec_delete(by_director);
    rec_delete(by_node);
    rec_delete(forever);
}

/* An exact limit above 0 gives that many re-attempts. */
static void test_max_retries_is_exact(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_retry(no, 1, 1, 1.0, 0));
    CHECK_OK(chronica_node_options_set_max_retries(no, 2));
    recorder *r = rec_new("n");
    r->fail_user_always = 1;
    CHECK_OK(reg_with(d, r, no));
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    struct dead_ctx c = {d, "n", 1};
    CHECK(wait_until(dead_lettered, &c));
    chronica_node_stats s = stats_of(d, "n");
    CHECK(s.failures == 3 && s.retries == 2 && s.dead_lettered == 1);
    chronica_director_free(d);
    chronica_node_options_free(no);
    rec_delete(r);
}

static void test_refusals(void) {
    CHECK_STATUS(chronica_options_set_max_retries(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_node_options_set_max_retries(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_subscribe_options_set_max_retries(NULL, 0), CHRONICA_ERR_NULL_ARGUMENT);
}

/* ---- bus subscriptions -------------------------------------------------- */

struct bus_sub {
    atomic_int calls;
    atomic_int dead;
};

static int32_t always_fails(void *ud, const chronica_event *e) {
    (void)e;
    atomic_fetch_add(&((struct bus_sub *)ud)->calls, 1);
    return 7;
}

static void count_dead(void *ud, const chronica_event *e, const char *error, size_t error_len) {
    (void)e;
    (void)error;
    (void)error_len;
    atomic_fetch_add(&((struct bus_sub *)ud)->dead, 1);
}

/* Subscribes a handler that always fails with retry options `o`, emits
   one event and returns the subscription's counters once it is
   dead-lettered, or once `calls` attempts were made when `calls` is not 0
   (a subscription retrying forever). */
static chronica_node_stats bus_case(chronica_subscribe_options *o, int calls) {
    chronica_bus *bus = NULL;
    CHECK_OK(chronica_bus_new_with_options(NULL, &bus));
    CHECK_OK(chronica_subscribe_options_set_dead_letter(o, count_dead));
    struct bus_sub r = {0, 0};
    chronica_subscription *s = NULL;
    CHECK_OK(chronica_bus_on(bus, "t", o, always_fails, &r, NULL, &s));
    CHECK_OK(chronica_bus_emit(bus, "t", (const uint8_t *)"x", 1));
    if (calls > 0) {
        CHECK(wait_count(&r.calls, calls));
    } else {
        CHECK(wait_count(&r.dead, 1));
    }
    chronica_node_stats st = {0};
    CHECK_OK(chronica_bus_stats(bus, s, &st));
    CHECK(atomic_load(&r.dead) == (int)st.dead_lettered);
    /* one retrying forever holds its event for good: no drain to wait for */
    CHECK_OK(chronica_bus_close(bus, 0, NULL));
    chronica_bus_free(bus);
    chronica_subscription_free(s);
    return st;
}

/* A subscription's limit of 0 dead-letters the event at its first
   failure; chronica_subscribe_options_set_retry's 0, called later, is
   unlimited again; a limit above 0 is exact. */
static void test_bus_max_retries(void) {
    chronica_subscribe_options *o = chronica_subscribe_options_new();
    CHECK_OK(chronica_subscribe_options_set_retry(o, CHRONICA_BACKOFF_CONSTANT, 1, 1, 1.0, 0.0, 5));
    CHECK_OK(chronica_subscribe_options_set_max_retries(o, 0));
    chronica_node_stats st = bus_case(o, 0);
    CHECK(st.failures == 1 && st.retries == 0 && st.dead_lettered == 1 && st.pending == 0);
    chronica_subscribe_options_free(o);

    /* without set_retry: the default delays, no re-attempt either */
    o = chronica_subscribe_options_new();
    CHECK_OK(chronica_subscribe_options_set_max_retries(o, 0));
    st = bus_case(o, 0);
    CHECK(st.failures == 1 && st.retries == 0 && st.dead_lettered == 1);
    chronica_subscribe_options_free(o);

    o = chronica_subscribe_options_new();
    CHECK_OK(chronica_subscribe_options_set_max_retries(o, 0));
    CHECK_OK(chronica_subscribe_options_set_retry(o, CHRONICA_BACKOFF_CONSTANT, 1, 1, 1.0, 0.0, 0));
    st = bus_case(o, 4);
    CHECK(st.dead_lettered == 0 && st.failures >= 3 && st.retries >= 2);
    chronica_subscribe_options_free(o);

    o = chronica_subscribe_options_new();
    CHECK_OK(chronica_subscribe_options_set_retry(o, CHRONICA_BACKOFF_CONSTANT, 1, 1, 1.0, 0.0, 0));
    CHECK_OK(chronica_subscribe_options_set_max_retries(o, 2));
    st = bus_case(o, 0);
    CHECK(st.failures == 3 && st.retries == 2 && st.dead_lettered == 1);
    chronica_subscribe_options_free(o);
}

/* ---- backoff shapes ----------------------------------------------------- */

struct shapes {
    pthread_mutex_t mu;
    int64_t start_ms;
    char order[3][16];
    int64_t after_ms[3];
    int n;
};

static void record_dead_letter(void *ud, const char *uid, size_t uid_len, const chronica_event *events, size_t count,
                               const char *error, size_t error_len) {
    (void)events;
    (void)count;
    (void)error;
    (void)error_len;
    struct shapes *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n < 3) {
        copy_text(s->order[s->n], sizeof s->order[s->n], uid, uid_len);
        s->after_ms[s->n] = now_ms() - s->start_ms;
        s->n++;
    }
    pthread_mutex_unlock(&s->mu);
}

static int dead_letters(struct shapes *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int all_three(void *p) { return dead_letters(p) == 3; }

static int both(void *p) { return dead_letters(p) == 2; }

/* Three failing nodes retry the same event 5 times, 40 ms first, no
   jitter, one per backoff shape. The delays before re-attempts 0..4 add up
   to at least 200 ms for constant (40 each), 600 ms for linear (40 * (k +
   1)) and 1,240 ms for exponential (40 * 2^k): timers never fire early, so
   these are lower bounds, and the gaps (400 and 640 ms) fix the order in
   which the three give up however slowly the machine runs, as long as it
   runs the three alike. */
static void test_backoff_shapes(void) {
    struct shapes sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_dead_letter_hook(o, record_dead_letter, &sh));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);

    const char *uids[3] = {"constant", "linear", "exponential"};
    const uint32_t shapes[3] = {CHRONICA_BACKOFF_CONSTANT, CHRONICA_BACKOFF_LINEAR, CHRONICA_BACKOFF_EXPONENTIAL};
    recorder *r[3];
    for (int i = 0; i < 3; i++) {
        chronica_node_options *no = chronica_node_options_new();
        CHECK_OK(chronica_node_options_set_retry_backoff(no, shapes[i]));
        CHECK_OK(chronica_node_options_set_retry(no, 40, 60000, 2.0, 5));
        CHECK_OK(chronica_node_options_set_retry_jitter(no, 0.0));
        r[i] = rec_new(uids[i]);
        r[i]->fail_user_always = 1;
        CHECK_OK(reg_with(d, r[i], no));
        chronica_node_options_free(no);
    }
    sh.start_ms = now_ms();
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    CHECK(wait_until(all_three, &sh));
    const int64_t at_least[3] = {200, 600, 1240};
    for (int i = 0; i < 3; i++) {
        CHECK(strcmp(sh.order[i], uids[i]) == 0);
        /* 1 ms for each of the 5 timers, for a clock rounding the other way */
        CHECK(sh.after_ms[i] >= at_least[i] - 5);
        chronica_node_stats s = stats_of(d, uids[i]);
        CHECK(s.retries == 5 && s.failures == 6 && s.dead_lettered == 1);
    }
    if (strcmp(sh.order[0], uids[0]) != 0 || strcmp(sh.order[2], uids[2]) != 0) {
        fprintf(stderr, "dead-lettered: %s after %lld ms, %s after %lld ms, %s after %lld ms\n", sh.order[0],
                (long long)sh.after_ms[0], sh.order[1], (long long)sh.after_ms[1], sh.order[2],
                (long long)sh.after_ms[2]);
    }
    chronica_director_free(d);
    for (int i = 0; i < 3; i++) {
        rec_delete(r[i]);
    }
    pthread_mutex_destroy(&sh.mu);
}

/* The director's backoff applies to every node without its own retry. */
static void test_director_backoff(void) {
    struct shapes sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_dead_letter_hook(o, record_dead_letter, &sh));
    CHECK_OK(chronica_options_set_retry(o, 40, 60000, 2.0, 5));
    CHECK_OK(chronica_options_set_retry_backoff(o, CHRONICA_BACKOFF_CONSTANT));
    CHECK_OK(chronica_options_set_retry_jitter(o, 0.0));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_retry(no, 40, 60000, 2.0, 5));
    CHECK_OK(chronica_node_options_set_retry_jitter(no, 0.0));
    recorder *c = rec_new("constant"), *e = rec_new("exponential");
    c->fail_user_always = e->fail_user_always = 1;
    CHECK_OK(reg(d, c));
    CHECK_OK(reg_with(d, e, no));
    chronica_node_options_free(no);
    sh.start_ms = now_ms();
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    CHECK(wait_until(both, &sh));
    CHECK(strcmp(sh.order[0], "constant") == 0 && sh.after_ms[0] >= 195);
    CHECK(strcmp(sh.order[1], "exponential") == 0 && sh.after_ms[1] >= 1235);
    chronica_director_free(d);
    rec_delete(c);
    rec_delete(e);
    pthread_mutex_destroy(&sh.mu);
}

/* A refused backoff (unknown, or one the delays set before do not suit)
   leaves the policy as it was. */
static void test_backoff_refusals(void) {
    chronica_options *o = chronica_options_new();
    chronica_node_options *no = chronica_node_options_new();
    CHECK_STATUS(chronica_options_set_retry_backoff(NULL, CHRONICA_BACKOFF_LINEAR), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_node_options_set_retry_backoff(NULL, CHRONICA_BACKOFF_LINEAR), CHRONICA_ERR_NULL_ARGUMENT);
    CHECK_STATUS(chronica_options_set_retry_backoff(o, 3), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_node_options_set_retry_backoff(no, 0xffffffffu), CHRONICA_ERR_INVALID_ARGUMENT);
    char why[256];
    chronica_last_error(why, sizeof why);
    CHECK(strstr(why, "CHRONICA_BACKOFF_") != NULL);
    /* constant backoff takes a cap below the first delay (it has no cap);
       exponential, refused, does not, and leaves constant in place */
    CHECK_OK(chronica_options_set_retry_backoff(o, CHRONICA_BACKOFF_CONSTANT));
    CHECK_OK(chronica_options_set_retry(o, 50, 10, 0.5, 3));
    CHECK_STATUS(chronica_options_set_retry_backoff(o, CHRONICA_BACKOFF_EXPONENTIAL), CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(chronica_options_set_retry_backoff(o, CHRONICA_BACKOFF_LINEAR), CHRONICA_ERR_INVALID_ARGUMENT);
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_director_free(d);
    chronica_node_options_free(no);
    chronica_options_free(o);
}

int main(void) {
    test_max_retries_zero_dead_letters_at_once();
    test_max_retries_is_exact();
    test_refusals();
    test_bus_max_retries();
    test_backoff_shapes();
    test_director_backoff();
    test_backoff_refusals();
    return finish();
}
