/*
 * chronica_send_partial and chronica_send_error: a send callback that says
 * it delivered the first k of its n events before returning non-zero gets
 * only the rest retried or dead-lettered; one that says why it failed has
 * its text handed to the hooks; a report given in one call never reaches a
 * later one; a call from outside a send callback, with k >= n, or with a
 * NULL or non-UTF-8 text is refused and changes nothing.
 *
 * Each case registers node "p" disconnected, emits events with payloads
 * "1", "2", ... to it, and connects it: the pending events then arrive as
 * one batch. The node follows a script, one step per call holding user
 * events, and records the payloads of each such call as a string ("12345",
 * then "345" for a retry of the rest).
 */
#include "harness.h"

#define NO_CALL (-1L)
#define MAX_CALLS 8

/* What one call does: up to two chronica_send_partial calls (NO_CALL for
   none), then up to two chronica_send_error calls (NULL for none; a text
   starting with '!' is passed as NULL, "\xff" is not UTF-8), then return
   `rc`. */
typedef struct step {
    long partial[2];
    int32_t rc;
    const char *error[2];
} step;

typedef struct script {
    const step *steps;
    size_t nsteps; /* calls past the script return 0 */
    pthread_mutex_t mu;
    size_t calls;
    char seen[MAX_CALLS][16];
    chronica_status status[MAX_CALLS][2];
    chronica_status error_status[MAX_CALLS][2];
    char why[MAX_CALLS][160]; /* the last error after a refused call */
} script;

static void script_init(script *s, const step *steps, size_t nsteps) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->steps = steps;
    s->nsteps = nsteps;
}

static size_t script_calls(script *s) {
    pthread_mutex_lock(&s->mu);
    size_t n = s->calls;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int32_t scripted_send(void *ud, const chronica_event *events, size_t count) {
    script *s = ud;
    if (events[0].kind != CHRONICA_EVENT_USER) {
        return 0; /* the state pull */
    }
    pthread_mutex_lock(&s->mu);
    size_t k = s->calls++;
    pthread_mutex_unlock(&s->mu);
    if (k >= MAX_CALLS) {
        return 0;
    }
    for (size_t i = 0; i < count && i + 1 < sizeof s->seen[k]; i++) {
        s->seen[k][i] = events[i].payload_len == 1 ? (char)events[i].payload[0] : '?';
    }
    if (k >= s->nsteps) {
        return 0;
    }
    const step *st = &s->steps[k];
    for (int j = 0; j < 2; j++) {
        if (st->partial[j] == NO_CALL) {
            continue;
        }
        s->status[k][j] = chronica_send_partial((size_t)st->partial[j]);
        if (s->status[k][j] != CHRONICA_OK) {
            chronica_last_error(s->why[k], sizeof s->why[k]);
        }
    }
    for (int j = 0; j < 2; j++) {
        if (st->error[j] != NULL) {
            s->error_status[k][j] = chronica_send_error(st->error[j][0] == '!' ? NULL : st->error[j]);
        }
    }
    return st->rc;
}

/* ---- hooks: what they saw, and what chronica_send_partial said there ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_errors[MAX_CALLS][96];
static char g_dead_why[96];
static atomic_int g_error_count;
static char g_dead[16]; /* payloads of the dead-lettered events */
static atomic_int g_dead_count;
/* Set by the case that checks refusals: the hooks then call
   chronica_send_partial too (elsewhere such a call, were it wrongly
   accepted, could hide a stale count). */
static atomic_int g_probe_hooks;
static atomic_int g_hook_partial_calls;
static atomic_int g_hook_partial_ok; /* of those, accepted */

static void probe_from_hook(void) {
    if (atomic_load(&g_probe_hooks)) {
        atomic_fetch_add(&g_hook_partial_calls, 1);
        if (chronica_send_partial(0) == CHRONICA_OK) {
            atomic_fetch_add(&g_hook_partial_ok, 1);
        }
        if (chronica_send_error("from a hook") == CHRONICA_OK) {
            atomic_fetch_add(&g_hook_partial_ok, 1);
        }
    }
}

static void on_error(void *ud, const char *uid, size_t uid_len, const char *err, size_t err_len) {
    (void)ud;
    (void)uid;
    (void)uid_len;
    probe_from_hook();
    pthread_mutex_lock(&g_mu);
    int k = atomic_load(&g_error_count);
    if (k < MAX_CALLS) {
        copy_text(g_errors[k], sizeof g_errors[k], err, err_len);
    }
    pthread_mutex_unlock(&g_mu);
    atomic_fetch_add(&g_error_count, 1);
}

static void on_dead_letter(void *ud, const char *uid, size_t uid_len, const chronica_event *events, size_t count,
                           const char *err, size_t err_len) {
    (void)ud;
    (void)uid;
    (void)uid_len;
    pthread_mutex_lock(&g_mu);
    copy_text(g_dead_why, sizeof g_dead_why, err, err_len);
    for (size_t i = 0; i < count && i + 1 < sizeof g_dead; i++) {
        g_dead[i] = events[i].payload_len == 1 ? (char)events[i].payload[0] : '?';
    }
    pthread_mutex_unlock(&g_mu);
    atomic_fetch_add(&g_dead_count, 1);
}

static void reset_hooks(void) {
    pthread_mutex_lock(&g_mu);
    memset(g_errors, 0, sizeof g_errors);
    memset(g_dead, 0, sizeof g_dead);
    memset(g_dead_why, 0, sizeof g_dead_why);
    pthread_mutex_unlock(&g_mu);
    atomic_store(&g_error_count, 0);
    atomic_store(&g_dead_count, 0);
    atomic_store(&g_probe_hooks, 0);
    atomic_store(&g_hook_partial_calls, 0);
    atomic_store(&g_hook_partial_ok, 0);
}

/* ---- one case ------------------------------------------------------------ */

/* A director with fast, jitter-free retries (`max_retries` 0 = unlimited)
   and node "p" running `s`, disconnected. */
static chronica_director *start(script *s, uint32_t max_retries) {
    reset_hooks();
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_error_hook(o, on_error, NULL));
    CHECK_OK(chronica_options_set_dead_letter_hook(o, on_dead_letter, NULL));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    chronica_node_options *no = chronica_node_options_new();
    CHECK_OK(chronica_node_options_set_connected(no, false));
    CHECK_OK(chronica_node_options_set_retry(no, 1, 4, 2.0, max_retries));
    CHECK_OK(chronica_node_options_set_retry_jitter(no, 0.0));
    CHECK_OK(chronica_director_register_with(d, "p", no, scripted_send, s, NULL));
    chronica_node_options_free(no);
    return d;
}

/* Emits payloads `from`..`to` (single digits) to "p", then connects it. */
static void deliver(chronica_director *d, char from, char to) {
    for (char c = from; c <= to; c++) {
        CHECK_OK(chronica_director_emit_to(d, NULL, "p", "t", (const uint8_t *)&c, 1));
    }
    CHECK_OK(chronica_director_node_connected(d, "p"));
}

struct settle_ctx {
    chronica_director *d;
    script *s;
    size_t calls;
    int errors, dead;
};

static int settled_pred(void *p) {
    struct settle_ctx *c = p;
    chronica_node_stats st = stats_of(c->d, "p");
    return st.pending == 0 && script_calls(c->s) >= c->calls && atomic_load(&g_error_count) >= c->errors &&
           atomic_load(&g_dead_count) >= c->dead;
}

/* Waits until "p" has nothing pending after `calls` user calls, `errors`
   error hooks and `dead` dead letters (the hooks run after the counters
   move), then returns its counters. */
static chronica_node_stats settle(chronica_director *d, script *s, size_t calls, int errors, int dead) {
    struct settle_ctx c = {d, s, calls, errors, dead};
    CHECK(wait_until(settled_pred, &c));
    return stats_of(d, "p");
}

static void stop(chronica_director *d, script *s) {
    uint64_t left = 99;
    CHECK_OK(chronica_director_close(d, 2000, &left));
    CHECK(left == 0);
    chronica_director_free(d);
    pthread_mutex_destroy(&s->mu);
}

/* ---- the cases ----------------------------------------------------------- */

/* Delivered 2 of 5, then failed: only "345" is retried. The retry fails
   plainly: a count from the call before must not apply to it, so "345"
   comes again whole. */
static void test_only_the_rest_is_retried(void) {
    static const step steps[] = {{{2, NO_CALL}, 7, {NULL, NULL}}, {{NO_CALL, NO_CALL}, 7, {NULL, NULL}}};
    script s;
    script_init(&s, steps, 2);
    chronica_director *d = start(&s, 0);
    deliver(d, '1', '5');
    chronica_node_stats st = settle(d, &s, 3, 2, 0);
    CHECK(script_calls(&s) == 3);
    CHECK(strcmp(s.seen[0], "12345") == 0);
    CHECK(strcmp(s.seen[1], "345") == 0);
    CHECK(strcmp(s.seen[2], "345") == 0);
    CHECK(s.status[0][0] == CHRONICA_OK);
    CHECK(st.accepted == 6); /* the state pull and five events */
    CHECK(st.delivered == 6);
    CHECK(st.failures == 2);
    CHECK(st.retries == 2);
    CHECK(st.dead_lettered == 0 && st.dropped == 0);
    CHECK(balanced(st));
    CHECK(strcmp(g_errors[0], "callback returned 7 after delivering 2 of 5 events") == 0);
    CHECK(strcmp(g_errors[1], "callback returned 7") == 0);
    stop(d, &s);
}

/* max_retries 2: after a partial failure the rest starts a fresh budget,
   fails twice more, and only "345" reaches the dead-letter hook. */
static void test_only_the_rest_is_dead_lettered(void) {
    static const step steps[] = {{{2, NO_CALL}, 7, {NULL, NULL}},
                                 {{NO_CALL, NO_CALL}, 7, {NULL, NULL}},
                                 {{NO_CALL, NO_CALL}, 7, {NULL, NULL}}};
    script s;
    script_init(&s, steps, 3);
    chronica_director *d = start(&s, 2);
    deliver(d, '1', '5');
    chronica_node_stats st = settle(d, &s, 3, 3, 1);
    CHECK(script_calls(&s) == 3);
    CHECK(strcmp(s.seen[0], "12345") == 0);
    CHECK(strcmp(s.seen[1], "345") == 0);
    CHECK(strcmp(s.seen[2], "345") == 0);
    CHECK(atomic_load(&g_dead_count) == 1);
    CHECK(strcmp(g_dead, "345") == 0);
    CHECK(st.accepted == 6);
    CHECK(st.delivered == 3); /* the state pull, "1" and "2" */
    CHECK(st.dead_lettered == 3);
    CHECK(st.failures == 3);
    CHECK(st.retries == 2);
    CHECK(balanced(st));
    stop(d, &s);
}

/* Refused calls: with k >= n the count stays as it was (none, then 2);
   on the host's thread and in the error hook, which runs on the node's
   thread right after the callback returned, the call is refused too. */
static void test_refused_calls_change_nothing(void) {
    char why[160] = "";
    CHECK_STATUS(chronica_send_partial(0), CHRONICA_ERR_INVALID_ARGUMENT);
    chronica_last_error(why, sizeof why);
    CHECK(strstr(why, "send callback") != NULL);

    static const step steps[] = {{{5, NO_CALL}, 7, {NULL, NULL}},
                                 {{2, 5}, 7, {NULL, NULL}},
                                 {{2, 99}, 7, {NULL, NULL}}};
    script s;
    script_init(&s, steps, 3);
    chronica_director *d = start(&s, 0);
    atomic_store(&g_probe_hooks, 1);
    deliver(d, '1', '5');
    chronica_node_stats st = settle(d, &s, 4, 3, 0);
    CHECK(atomic_load(&g_hook_partial_calls) == 3);
    CHECK(atomic_load(&g_hook_partial_ok) == 0);
    CHECK(script_calls(&s) == 4);
    CHECK(s.status[0][0] == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(strstr(s.why[0], "below") != NULL);
    CHECK(strcmp(s.seen[1], "12345") == 0); /* 5 of 5 was refused: all retried */
    CHECK(s.status[1][0] == CHRONICA_OK);
    CHECK(s.status[1][1] == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(s.seen[2], "345") == 0); /* the refused 5 left the 2 */
    CHECK(s.status[2][0] == CHRONICA_OK);
    CHECK(s.status[2][1] == CHRONICA_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(s.seen[3], "5") == 0); /* 2 of "345", and 99 refused */
    CHECK(st.delivered == 6);
    CHECK(st.failures == 3);
    CHECK(st.retries == 3);
    CHECK(balanced(st));
    stop(d, &s);
}

/* A count given in a call that then returns 0 is void (the whole batch
   was delivered) and must not reach the next batch, which fails plainly
   and so comes again whole. */
static void test_a_count_does_not_outlive_its_call(void) {
    static const step steps[] = {{{2, NO_CALL}, 0, {NULL, NULL}}, {{NO_CALL, NO_CALL}, 7, {NULL, NULL}}};
    script s;
    script_init(&s, steps, 2);
    chronica_director *d = start(&s, 0);
    deliver(d, '1', '5');
    chronica_node_stats st = settle(d, &s, 1, 0, 0);
    CHECK(st.delivered == 6);
    CHECK(st.failures == 0);
    CHECK_OK(chronica_director_node_disconnected(d, "p"));
    deliver(d, '6', '8');
    st = settle(d, &s, 3, 1, 0);
    CHECK(script_calls(&s) == 3);
    CHECK(strcmp(s.seen[0], "12345") == 0);
    CHECK(strcmp(s.seen[1], "678") == 0);
    CHECK(strcmp(s.seen[2], "678") == 0);
    CHECK(strcmp(g_errors[0], "callback returned 7") == 0);
    CHECK(st.accepted == 9);
    CHECK(st.delivered == 9);
    CHECK(st.failures == 1);
    CHECK(st.retries == 1);
    CHECK(balanced(st));
    stop(d, &s);
}

/* The callback names its failure: the hooks get its text, the last one
   it gave; a retry that gives none has the library's again. With a
   partial count the text still applies, and the count too. */
static void test_the_callback_names_its_failure(void) {
    static const step steps[] = {{{2, NO_CALL}, 7, {"first try", "disk full"}},
                                 {{NO_CALL, NO_CALL}, 7, {NULL, NULL}},
                                 {{NO_CALL, NO_CALL}, 7, {"still full", NULL}}};
    script s;
    script_init(&s, steps, 3);
    chronica_director *d = start(&s, 2);
    deliver(d, '1', '5');
    chronica_node_stats st = settle(d, &s, 3, 3, 1);
    CHECK(s.error_status[0][0] == CHRONICA_OK && s.error_status[0][1] == CHRONICA_OK);
    CHECK(strcmp(s.seen[1], "345") == 0); /* the count applied beside the text */
    CHECK(strcmp(g_errors[0], "disk full") == 0);
    CHECK(strcmp(g_errors[1], "callback returned 7") == 0);
    CHECK(strcmp(g_errors[2], "still full") == 0);
    CHECK(strcmp(g_dead_why, "still full") == 0);
    CHECK(strcmp(g_dead, "345") == 0);
    CHECK(st.delivered == 3 && st.dead_lettered == 3);
    CHECK(balanced(st));
    stop(d, &s);
}

/* A NULL or non-UTF-8 text is refused and leaves the text before it; on
   the host's thread the call is refused; a text given in a call that
   returns 0 is void and does not reach the next call. */
static void test_refused_and_void_texts(void) {
    CHECK_STATUS(chronica_send_error("outside"), CHRONICA_ERR_INVALID_ARGUMENT);
    static const step steps[] = {{{NO_CALL, NO_CALL}, 0, {"void", NULL}},
                                 {{NO_CALL, NO_CALL}, 7, {NULL, NULL}},
                                 {{NO_CALL, NO_CALL}, 7, {"kept", "!null"}},
                                 {{NO_CALL, NO_CALL}, 7, {"kept too", "\xff"}}};
    script s;
    script_init(&s, steps, 4);
    chronica_director *d = start(&s, 0);
    deliver(d, '1', '2');
    settle(d, &s, 1, 0, 0);
    CHECK_OK(chronica_director_node_disconnected(d, "p"));
    deliver(d, '3', '3');
    chronica_node_stats st = settle(d, &s, 5, 3, 0);
    CHECK(s.error_status[0][0] == CHRONICA_OK);
    CHECK(s.error_status[2][1] == CHRONICA_ERR_NULL_ARGUMENT);
    CHECK(s.error_status[3][1] == CHRONICA_ERR_INVALID_UTF8);
    CHECK(strcmp(g_errors[0], "callback returned 7") == 0); /* "void" did not carry over */
    CHECK(strcmp(g_errors[1], "kept") == 0);
    CHECK(strcmp(g_errors[2], "kept too") == 0);
    CHECK(st.delivered == 4 && st.failures == 3);
    CHECK(balanced(st));
    stop(d, &s);
}

int main(void) {
    test_only_the_rest_is_retried();
    test_only_the_rest_is_dead_lettered();
    test_refused_calls_change_nothing();
    test_a_count_does_not_outlive_its_call();
    test_the_callback_names_its_failure();
    test_refused_and_void_texts();
    return finish();
}
