/* Unit tests for loopstall: the longest round of a loop's callbacks. */
#include "autoconf.h"

#include <time.h>

#include "check_suites.h"
#include "loopstall.h"

static void busy_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct timespec ms30 = { 0, 30 * 1000 * 1000 };
	(void)w;
	(void)revents;
	nanosleep(&ms30, NULL);   /* a callback that keeps the loop 30 ms */
	ev_break(loop, EVBREAK_ALL);
}

static void quick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

START_TEST(longest_round_is_kept)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct loopstall *ls = loopstall_new(loop);
	ev_timer quick, busy, after;

	ck_assert_ptr_nonnull(ls);
	ck_assert(loopstall_max(ls) == 0);
	/* Waiting in poll is not a stall: a 200 ms timer with nothing to do. */
	ev_timer_init(&quick, quick_cb, 0.2, 0);
	ev_timer_start(loop, &quick);
	ev_run(loop, 0);
	ev_timer_init(&after, quick_cb, 0.001, 0);
	ev_timer_start(loop, &after);
	ev_run(loop, 0);
	ck_assert_msg(loopstall_max(ls) < 0.15, "%f", loopstall_max(ls));
	/* A callback that takes 30 ms is: counted once the next round starts. */
	ev_timer_init(&busy, busy_cb, 0.001, 0);
	ev_timer_start(loop, &busy);
	ev_run(loop, 0);
	ev_timer_start(loop, &after);
	ev_run(loop, 0);
	ck_assert_msg(loopstall_max(ls) >= 0.03, "%f", loopstall_max(ls));
	loopstall_free(ls);
	ck_assert(loopstall_max(NULL) == 0);
	ev_loop_destroy(loop);
}
END_TEST

Suite *loopstall_suite(void)
{
	Suite *s = suite_create("loopstall");
	TCase *tc = tcase_create("rounds");
	tcase_add_test(tc, longest_round_is_kept);
	suite_add_tcase(s, tc);
	return s;
}
