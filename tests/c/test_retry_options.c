/*
 * The director's and a node's retry limit and backoff shape beyond
 * chronica_options_set_retry: chronica_*_set_max_retries (an exact limit,
 * 0 = no re-attempt) and chronica_*_set_retry_backoff.
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
}

int main(void) {
    test_max_retries_zero_dead_letters_at_once();
    test_max_retries_is_exact();
    test_refusals();
    return finish();
}
