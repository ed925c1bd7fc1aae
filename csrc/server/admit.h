/* nim-server connection admission (admit.c): caps on connections in all
 * and per source address, decided at accept. */
#ifndef NIM_SERVER_ADMIT_H
#define NIM_SERVER_ADMIT_H
#include <sys/socket.h>

#define SRV_MAX_CONNS_DEFAULT    10000  /* --max-connections (kept below RLIMIT_NOFILE) */
#define SRV_MAX_PER_ADDR_DEFAULT 64     /* --max-connections-per-address */
#define SRV_FD_RESERVE           64     /* descriptors kept for the database, logs, ... */

int  srv_admit_init(int max_fd);
void srv_admit_free(void);
/* A connection accepted on fd from peer: 0 admitted (counted), -1 refused.
 * When full, evict is asked to end the oldest connection that has not
 * logged in (0: one is being closed, -1: there is none). */
int  srv_admit(const struct sockaddr_storage *peer, int fd, int (*evict)(void));
/* The connection on fd is gone. */
void srv_admit_gone(int fd);
int  srv_admit_total(void);

#endif
