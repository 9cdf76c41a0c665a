/*
 * A director made before fork(), in the child: its threads did not
 * survive the fork, so every call returns CHRONICA_ERR_CLOSED (the last
 * error says why), and chronica_director_close and _free return at once;
 * a director made in the child works. Before, the child's emits were
 * accepted and never delivered, and its close or free waited forever.
 *
 * The child writes the number of its checks that failed to a pipe. Its
 * exit status says nothing: under valgrind, the state of the director it
 * inherited, which it deliberately never frees, makes it 99.
 */
#define _DEFAULT_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int in_child(chronica_director *d) {
    char why[512];
    int bad = 0;
    bad += emit_str(d, NULL, "t", "in the child") != CHRONICA_ERR_CLOSED;
    chronica_last_error(why, sizeof why);
    bad += strstr(why, "forked") == NULL;
    recorder *late = rec_new("late");
    bad += reg(d, late) != CHRONICA_ERR_CLOSED;
    rec_delete(late); /* a refused registration leaves it with us */
    chronica_node_stats st;
    bad += chronica_director_node_stats(d, "a", &st) != CHRONICA_ERR_CLOSED;
    bad += chronica_director_unregister(d, "a") != CHRONICA_ERR_CLOSED;
    bad += chronica_director_close(d, 1000, NULL) != CHRONICA_ERR_CLOSED;
    chronica_director_free(d);

    /* A director of the child's own works. */
    chronica_director *own = NULL;
    bad += chronica_director_new(NULL, &own) != CHRONICA_OK;
    recorder *c = rec_new("c");
    bad += reg(own, c) != CHRONICA_OK;
    bad += emit_str(own, NULL, "t", "mine") != CHRONICA_OK;
    bad += !wait_idle(own, "c", 2);
    bad += rec_count(c, CHRONICA_EVENT_USER, "t") != 1;
    uint64_t left = 99;
    bad += chronica_director_close(own, 5000, &left) != CHRONICA_OK || left != 0;
    chronica_director_free(own);
    rec_delete(c);
    return bad;
}

/* 1 when the child ended within the wait deadline, else 0 (it is
   killed). */
static int wait_child(pid_t pid) {
    int64_t until = now_ms() + WAIT_DEADLINE_MS;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return 1;
        }
        if (now_ms() >= until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 0;
        }
        sleep_ms(10);
    }
}

int main(void) {
    chronica_director *d = NULL;
    CHECK_OK(chronica_director_new(NULL, &d));
    recorder *a = rec_new("a");
    CHECK_OK(reg(d, a));
    CHECK_OK(emit_str(d, NULL, "t", "before"));
    CHECK(wait_idle(d, "a", 2));

    int report[2];
    CHECK(pipe(report) == 0);
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int bad = in_child(d);
        _exit(write(report[1], &bad, sizeof bad) == (ssize_t)sizeof bad ? 0 : 1);
    }
    close(report[1]);
    CHECK(wait_child(pid));
    int bad = -1;
    CHECK(read(report[0], &bad, sizeof bad) == (ssize_t)sizeof bad);
    close(report[0]);
    if (bad != 0) {
        fprintf(stderr, "the child: %d checks failed (-1: it reported nothing)\n", bad);
    }
    CHECK(bad == 0);

    /* The parent's director goes on. */
    CHECK_OK(emit_str(d, NULL, "t", "after"));
    CHECK(wait_idle(d, "a", 3));
    CHECK(rec_count(a, CHRONICA_EVENT_USER, "t") == 2);
    uint64_t left = 99;
    CHECK_OK(chronica_director_close(d, 5000, &left));
    CHECK(left == 0);
    chronica_director_free(d);
    rec_delete(a);
    return finish();
}
