/*
 * chronica_director_node_last_error: the text of a node's most recent
 * failed delivery (Rust's NodeStats::last_error, Python's
 * stats(uid).last_error), copied like chronica_last_error: NUL-terminated,
 * truncated to the buffer, the full length reported. Empty before the
 * first failure; kept after a success and after close; gone with the node.
 * *failed_out says whether the node has failed, so a failure with an
 * empty text differs from none.
 * Ends with "N passed, N failed".
 */
#include "harness.h"

/* Fails its first user batch with the text set by the test (or, when the
   text is NULL, with a bare status), then takes everything. */
static const char *g_fail_text;
static atomic_int g_fail_left;

static int32_t fail_once(void *ud, const chronica_event *events, size_t count) {
    (void)ud;
    int user = 0;
    for (size_t i = 0; i < count; i++) {
        user |= events[i].kind == CHRONICA_EVENT_USER;
    }
    if (user && atomic_fetch_sub(&g_fail_left, 1) > 0) {
        if (g_fail_text) {
            CHECK_OK(chronica_send_error(g_fail_text));
        }
        return 7;
    }
    return 0;
}

struct delivered_ctx {
    chronica_director *d;
    const char *uid;
};

/* The state pull and the event: delivered after the retry. */
static int delivered_two(void *p) {
    struct delivered_ctx *c = p;
    chronica_node_stats s = stats_of(c->d, c->uid);
    return s.delivered == 2 && s.pending == 0;
}

/* A node's last error, read whole into `buf`; returns its length, or
   (size_t)-1 when the call failed. */
static size_t read_error(chronica_director *d, const char *uid, char *buf, size_t cap) {
    size_t n = 12345;
    if (chronica_director_node_last_error(d, uid, buf, cap, &n, NULL) != CHRONICA_OK) {
        return (size_t)-1;
    }
    return n;
}

/* Whether the node has failed, as node_last_error reports it; -1 when the
   call failed. */
static int has_failed(chronica_director *d, const char *uid) {
    bool failed = false;
    if (chronica_director_node_last_error(d, uid, NULL, 0, NULL, &failed) != CHRONICA_OK) {
        return -1;
    }
    return failed;
}

static chronica_director *director_with_fast_retry(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(o, 1, 1, 1.0, 0));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    return d;
}

static void test_text_after_a_failing_callback(void) {
    chronica_director *d = director_with_fast_retry();
    g_fail_text = "disk full on /var";
    atomic_store(&g_fail_left, 1);
    CHECK_OK(chronica_director_register(d, "n", fail_once, NULL, NULL));
    char buf[64];
    memset(buf, 'x', sizeof buf);
    CHECK(read_error(d, "n", buf, sizeof buf) == 0); /* no failure yet */
    CHECK(buf[0] == '\0');
    CHECK(has_failed(d, "n") == 0);

    CHECK_OK(emit_str(d, NULL, "t", "x"));
    struct delivered_ctx c = {d, "n"};
    CHECK(wait_until(delivered_two, &c)); /* failed once, then delivered */
    chronica_node_stats s = stats_of(d, "n");
    CHECK(s.failures == 1 && s.retries == 1);
    /* the success after the failure did not clear it */
    CHECK(read_error(d, "n", buf, sizeof buf) == strlen("disk full on /var"));
    CHECK(strcmp(buf, "disk full on /var") == 0);
    CHECK(has_failed(d, "n") == 1);

    /* truncated like snprintf, the full length reported */
    char small[5];
    memset(small, 'x', sizeof small);
    CHECK(read_error(d, "n", small, sizeof small) == 17);
    CHECK(strcmp(small, "disk") == 0);
    /* no buffer: the length only, nothing written */
    size_t n = 0;
    CHECK_OK(chronica_director_node_last_error(d, "n", NULL, 0, &n, NULL));
    CHECK(n == 17);
    CHECK_OK(chronica_director_node_last_error(d, "n", NULL, 64, &n, NULL));
    CHECK(n == 17);
    memset(small, 'x', sizeof small);
    CHECK_OK(chronica_director_node_last_error(d, "n", small, 0, &n, NULL));
    CHECK(small[0] == 'x' && n == 17);
    /* and no length wanted */
    CHECK_OK(chronica_director_node_last_error(d, "n", buf, sizeof buf, NULL, NULL));
    CHECK(strcmp(buf, "disk full on /var") == 0);

    /* readable after close, gone after unregister */
    CHECK_OK(chronica_director_close(d, 1000, NULL));
    CHECK(read_error(d, "n", buf, sizeof buf) == 17 && strcmp(buf, "disk full on /var") == 0);
    chronica_director_free(d);

    d = director_with_fast_retry();
    atomic_store(&g_fail_left, 1);
    CHECK_OK(chronica_director_register(d, "n", fail_once, NULL, NULL));
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    c.d = d;
    CHECK(wait_until(delivered_two, &c));
    CHECK_OK(chronica_director_unregister(d, "n"));
    n = 99;
    bool failed = true;
    CHECK_STATUS(chronica_director_node_last_error(d, "n", buf, sizeof buf, &n, &failed), CHRONICA_ERR_UNKNOWN_NODE);
    CHECK(n == 99 && failed); /* nothing written on a refusal */
    chronica_director_free(d);
}

/* Without chronica_send_error the text is the library's, the one the
   error hook receives. */
static char g_hook_text[128];

static void on_error(void *ud, const char *uid, size_t uid_len, const char *error, size_t error_len) {
    (void)ud;
    (void)uid;
    (void)uid_len;
    copy_text(g_hook_text, sizeof g_hook_text, error, error_len);
}

static void test_the_library_text_is_the_hooks(void) {
    chronica_options *o = chronica_options_new();
    CHECK_OK(chronica_options_set_retry(o, 1, 1, 1.0, 0));
    CHECK_OK(chronica_options_set_error_hook(o, on_error, NULL));
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(o, &d));
    chronica_options_free(o);
    g_fail_text = NULL;
    atomic_store(&g_fail_left, 1);
    CHECK_OK(chronica_director_register(d, "bare", fail_once, NULL, NULL));
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    struct delivered_ctx c = {d, "bare"};
    CHECK(wait_until(delivered_two, &c));
    char buf[128];
    CHECK(read_error(d, "bare", buf, sizeof buf) == strlen("callback returned 7"));
    CHECK(strcmp(buf, "callback returned 7") == 0);
    /* the hook ran before the retry that delivered: its text is set */
    CHECK(strcmp(g_hook_text, buf) == 0);
    chronica_director_free(d);
}

/* A failure whose text is empty reads "" and 0 as no failure does; the
   failed flag, given by the same call, tells them apart, and stays set
   after the retry delivered and after close. */
static void test_an_empty_text_is_still_a_failure(void) {
    chronica_director *d = director_with_fast_retry();
    g_fail_text = "";
    atomic_store(&g_fail_left, 1);
    CHECK_OK(chronica_director_register(d, "quiet", fail_once, NULL, NULL));
    CHECK_OK(chronica_director_register(d, "fine", ok_send, NULL, NULL));
    CHECK_OK(emit_str(d, NULL, "t", "x"));
    struct delivered_ctx c = {d, "quiet"};
    CHECK(wait_until(delivered_two, &c));
    CHECK(wait_idle(d, "fine", 2));
    CHECK(stats_of(d, "quiet").failures == 1);

    char buf[8];
    size_t n = 99;
    bool failed = false;
    memset(buf, 'x', sizeof buf);
    CHECK_OK(chronica_director_node_last_error(d, "quiet", buf, sizeof buf, &n, &failed));
    CHECK(buf[0] == '\0' && n == 0 && failed);
    n = 99;
    failed = true;
    memset(buf, 'x', sizeof buf);
    CHECK_OK(chronica_director_node_last_error(d, "fine", buf, sizeof buf, &n, &failed));
    CHECK(buf[0] == '\0' && n == 0 && !failed);

    CHECK_OK(chronica_director_close(d, 1000, NULL));
    CHECK(has_failed(d, "quiet") == 1);
    CHECK(has_failed(d, "fine") == 0);
    chronica_director_free(d);
}

int main(void) {
    test_text_after_a_failing_callback();
    test_an_empty_text_is_still_a_failure();
    test_the_library_text_is_the_hooks();
    return finish();
}
