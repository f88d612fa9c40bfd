/**
 * \file privs.h
 * Dropping root once the sockets are open.
 */
#ifndef ACRDNS_PRIVS_H
#define ACRDNS_PRIVS_H

#include <stddef.h>

#include "config.h"

/**
 * Started as root: hand state_dir (and the control socket) to cfg->user,
 * then become that user and group with no supplementary groups and no
 * capabilities, except CAP_NET_ADMIN when nftables sets are to be filled.
 * `user = "root"` keeps root, with a warning.  Not root: nothing changes.
 * @param control_socket the socket file to hand over, or NULL
 * @return 0, or -1 with the reason in err
 */
int privs_drop(const struct config *cfg, const char *control_socket, char *err, size_t errlen);

#endif
