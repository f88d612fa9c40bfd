/**
 * \file saver.h
 * Discovery's state files written off the event loop.  Saving a
 * registry's endpoints means a write, an fsync of the file, a rename and
 * an fsync of the directory: tens of milliseconds on a busy disk, which
 * the loop answering queries cannot spend.  A thread does the writing;
 * the loop only hands over a copy of the list.
 *
 * Nothing is lost or reordered: saves for the same registry are written
 * in the order asked, and one asked while an older one still waits
 * replaces it (only the last state matters), so after a burst the file
 * always holds the last list.  saver_free() writes what is still waiting.
 * Failures come back to the loop, which logs them as before.
 */
#ifndef ACRDNS_SAVER_H
#define ACRDNS_SAVER_H

#include <ev.h>
#include <stddef.h>

struct saver;

/**
 * In the thread: write list (NULL-terminated) as login's state in
 * state_dir, durably.  discovery_state_save() is the one acrdnsd uses.
 * @return 0, or -1 with why set
 */
typedef int (*saver_write_fn)(const char *state_dir, const char *login, char *const *list,
			      char *why, size_t whylen);

/**
 * On the loop, after a save failed.  login names the registry, why says
 * what went wrong (as the write function set it).
 */
typedef void (*saver_failed_fn)(void *arg, const char *login, const char *why);

/**
 * @param write does each save, in the thread
 * @param failed called on loop for each failed save
 * @return the saver (its thread starts with the first save), or NULL when
 *         out of memory
 */
struct saver *saver_new(struct ev_loop *loop, saver_write_fn write, saver_failed_fn failed,
			void *arg);

/**
 * Have login's endpoints (NULL-terminated) written to state_dir.  The list
 * is copied.  When the copy or the thread cannot be had, the save is done
 * here, on the loop, rather than lost.
 */
void saver_save(struct saver *sv, const char *state_dir, const char *login,
		char *const *endpoints);

/** @return saves asked for and not written yet (for tests and reports). */
size_t saver_pending(struct saver *sv);

/** Write what is waiting, stop the thread and free; NULL is allowed. */
void saver_free(struct saver *sv);

#endif
