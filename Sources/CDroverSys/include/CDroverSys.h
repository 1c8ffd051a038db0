/* CDroverSys: the few things Swift cannot say through Glibc.
 *
 *  - GNU/Linux calls that Swift's Glibc module hides (it is built without
 *    _GNU_SOURCE): accept4, pipe2, memfd_create, close_range, epoll,
 *    signalfd, prctl, capset; and setxattr, whose header it leaves out
 *    (included below as it is).
 *  - fork+exec of an app with fd layout, signal reset and chroot done in
 *    the child before exec (posix_spawn cannot chroot, and code
 *    after fork must be async-signal-safe, which Swift cannot promise).
 *  - the shared-memory scoreboard layout and its seqlock, which must be one
 *    fixed C layout read by several processes.
 *
 * Everything here is a thin wrapper; policy lives in Swift. */
#ifndef DROVER_CDROVERSYS_H
#define DROVER_CDROVERSYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/xattr.h>

/* ---- syscalls Glibc hides ------------------------------------------------ */
int drover_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int drover_pipe2(int fds[2], int flags);
int drover_memfd_create(const char *name, unsigned int flags);
int drover_close_range(unsigned int first, unsigned int last);
int drover_set_pdeathsig(int sig);
int drover_set_dumpable(int on);

enum {
    DROVER_SOCK_CLOEXEC = 02000000,
    DROVER_SOCK_NONBLOCK = 04000,
    DROVER_O_CLOEXEC = 02000000,
    DROVER_MFD_CLOEXEC = 1,
    /* sched_setscheduler(2) policies Glibc shows only under _GNU_SOURCE */
    DROVER_SCHED_OTHER = 0,
    DROVER_SCHED_BATCH = 3,
    DROVER_SCHED_IDLE = 5,
};

/* ---- the log channel -------------------------------------------------------
 * A SOCK_SEQPACKET socketpair (close-on-exec): one packet per log record. */
int drover_seqpacket_pair(int fds[2]);
/* Raises SO_SNDBUF to `bytes` (SO_SNDBUFFORCE when permitted). */
void drover_set_send_buffer(int fd, int bytes);
/* Sends head+body as one packet without blocking; -1/errno (EAGAIN: full). */
long drover_send2(int fd, const void *head, size_t head_len, const void *body, size_t body_len);

/* ---- epoll ---------------------------------------------------------------- */
int drover_epoll_create(void);
/* events: EPOLLIN etc.; data: caller's token */
int drover_epoll_add(int epfd, int fd, uint32_t events, uint64_t data);
int drover_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data);
int drover_epoll_del(int epfd, int fd);
/* Waits for at most `max` events; fills tokens[i] / events[i]. */
int drover_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

enum {
    DROVER_EPOLLIN = EPOLLIN,
    DROVER_EPOLLOUT = EPOLLOUT,
    DROVER_EPOLLERR = EPOLLERR,
    DROVER_EPOLLHUP = EPOLLHUP,
    DROVER_EPOLLRDHUP = EPOLLRDHUP,
    DROVER_EPOLLEXCLUSIVE = EPOLLEXCLUSIVE,
};

/* ---- signalfd --------------------------------------------------------------
 * Blocks `sigs` (a zero-terminated list) and returns a signalfd for them;
 * drover_signalfd_read returns the next signal number, 0 when none is
 * pending, -1 on error. Children get an unblocked mask from drover_spawn. */
int drover_signalfd_open(const int *sigs);
int drover_signalfd_read(int fd);

/* ---- processes ------------------------------------------------------------ */

/* Unblocks every signal and restores default dispositions: a child of the
 * master must not inherit libev's handlers or blocked mask. */
void drover_reset_signals(void);

/* fork() for a worker: the child resets signals, asks for `deathsig` when its
 * parent dies, and exits at once if the parent is already gone. Returns as
 * fork() does. */
pid_t drover_fork_child(int deathsig);

/* Drops to uid/gid with the user's supplementary groups (setgroups before
 * setgid before setuid). `user` may be NULL: then only gid itself is kept as
 * supplementary group. `keep_capabilities` (a mask of 1 << DROVER_CAP_*,
 * 0 for none) are kept in the permitted and effective sets when leaving
 * root, and every other capability is given up; if that fails the call
 * fails and nothing is kept. Returns 0 or -1 with errno. */
int drover_drop_privileges(const char *user, uid_t uid, gid_t gid, uint32_t keep_capabilities);

enum {
    DROVER_CAP_SYS_CHROOT = 18,   /* CAP_SYS_CHROOT, <linux/capability.h> */
};

struct drover_spawn_request {
    const char *path;          /* the program: an absolute path, or a bare name with search_path */
    char *const *argv;
    char *const *envp;
    int fd0;                   /* becomes fd 0 (FCGI_LISTENSOCK_FILENO), -1: /dev/null */
    int fd1;                   /* becomes fd 1, -1: /dev/null */
    int fd2;                   /* becomes fd 2, -1: /dev/null */
    const char *chdir;         /* NULL: stay (with chroot: "/") */
    int deathsig;              /* sent to the child when its parent dies; 0: none */
    int new_process_group;     /* setpgid(0,0): signals to the group reach the app's own children */
    const char *chroot;        /* NULL: none. The child chroot(2)s here, then chdirs, then gives up
                                * every capability, so `path` and `chdir` name files inside it */
    const char *search_path;   /* NULL: exec `path` as it is. Otherwise `path` is a bare name tried
                                * in each directory of this colon-separated list (after chroot) */
};

/* The step of drover_spawn that failed (*step). */
enum drover_spawn_step {
    DROVER_SPAWN_OK = 0,
    DROVER_SPAWN_FORK = 1,     /* pipe2 or fork, in the caller (the return value is -1) */
    DROVER_SPAWN_SETUP = 2,    /* /dev/null, the fd layout, giving up capabilities */
    DROVER_SPAWN_CHROOT = 3,
    DROVER_SPAWN_CHDIR = 4,
    DROVER_SPAWN_EXEC = 5,
};

/* fork+exec. Returns -1 with *err = errno when fork fails. Otherwise returns
 * the child's pid with *err = 0 on success, or with *err = the errno of the
 * step that failed in the child and *step = that step (reported through a
 * close-on-exec pipe, so a missing program or a refused chroot is an error
 * here, not a mystery exit 127); that child has already exited and the
 * caller reaps it. `step` may be NULL. */
pid_t drover_spawn(const struct drover_spawn_request *req, int *err, int *step);

/* ---- sockets -------------------------------------------------------------- */
int drover_unix_listen(const char *path, int backlog);   /* bind+listen; -1/errno */
int drover_unix_connect(const char *path, int nonblock);  /* -1/errno */
/* Returns 1 when something accepts connections at path, 0 if not. */
int drover_unix_is_live(const char *path);

/* ---- scoreboard ------------------------------------------------------------
 * One memfd mapping: header, then `pool_capacity` pool records, then
 * `slot_capacity` slot records. Field sizes follow php-fpm's scoreboard so
 * truncation looks the same. A slot is written only by its worker (and by the
 * master while no worker owns it) between seq_write_begin/end; readers copy
 * it with drover_sb_slot_read, which retries while a write is in progress. */

#define DROVER_SB_MAGIC 0x52564f4455524400ULL /* "DROVER\0" ish */
#define DROVER_SB_LAYOUT 3

enum drover_pm { DROVER_PM_STATIC = 0, DROVER_PM_DYNAMIC = 1, DROVER_PM_ONDEMAND = 2 };

enum drover_slot_state {
    DROVER_SLOT_FREE = 0,      /* no worker */
    DROVER_SLOT_STARTING = 1,  /* forked, app not up yet */
    DROVER_SLOT_IDLE = 2,
    DROVER_SLOT_READING = 3,   /* reading headers */
    DROVER_SLOT_RUNNING = 4,
    DROVER_SLOT_FINISHING = 5,
    DROVER_SLOT_DRAINING = 6,  /* told to stop; finishes what it has */
};

struct drover_sb_header {
    uint64_t magic;
    uint32_t layout;
    uint32_t pool_capacity;
    uint32_t slot_capacity;
    int32_t master_pid;
    uint32_t generation;
    uint32_t reload_refusals;  /* reloads the master refused (bad configuration): droverctl reload says so */
    int64_t start_time_us;     /* CLOCK_REALTIME */
    uint64_t pools_offset;
    uint64_t slots_offset;
    uint64_t total_size;
    uint64_t dropped_log_records; /* log records the channel had no room for (every process) */
};

struct drover_sb_pool {
    uint32_t seq;
    uint32_t in_use;
    char name[64];
    uint32_t pm;
    uint32_t max_children;
    uint32_t start_servers;
    uint32_t min_spare;
    uint32_t max_spare;
    uint32_t backoff_ms;       /* current respawn delay, 0 when healthy */
    int64_t start_time_us;
    /* counters: updated with atomic adds by workers / master */
    uint64_t accepted_conn;
    uint64_t active;           /* slots busy now: +1/-1 by workers, corrected by the master on reap */
    uint64_t max_active;
    uint64_t max_children_reached;
    uint64_t slow_requests;
    uint64_t spawns;
    uint64_t crashes;
    /* scaling (design §3) */
    uint32_t total;            /* workers alive; written by the master */
    uint32_t ready;            /* workers past start-up: +1 by a worker when it first goes idle, -1 by the master at reap */
    uint32_t notify_below;     /* a worker going busy wakes the master when idle < this; 0: never (static) */
    uint32_t listen_queue;     /* connections waiting at the last sample */
    uint32_t max_listen_queue; /* most seen since start */
    uint32_t listen_queue_len; /* capacity of the accept queue (backlog) */
};

struct drover_sb_slot {
    uint32_t seq;
    uint32_t state;
    int32_t worker_pid;
    int32_t app_pid;
    uint32_t generation;
    uint32_t pool_index;
    int64_t started_at_us;     /* worker start */
    uint64_t requests;
    int64_t accepted_at_us;    /* current or last request */
    int64_t duration_us;       /* last request, set when it ends */
    uint64_t content_length;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t last_memory;      /* bytes; 0 = unknown */
    double last_cpu;           /* percent; <0 = unknown */
    uint32_t status;           /* last HTTP status seen, 0 = none */
    uint32_t counted_ready;    /* 1 once the worker added itself to the pool's `ready` */
    char request_method[16];
    char request_uri[128];
    char query_string[512];
    char script_filename[256];
    char auth_user[32];
};

static inline void drover_seq_write_begin(uint32_t *seq) {
    __atomic_fetch_add(seq, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void drover_seq_write_end(uint32_t *seq) {
    __atomic_fetch_add(seq, 1, __ATOMIC_RELEASE);
}
static inline uint64_t drover_atomic_add64(uint64_t *p, uint64_t v) {
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}
static inline uint64_t drover_atomic_sub64(uint64_t *p, uint64_t v) {
    return __atomic_sub_fetch(p, v, __ATOMIC_RELAXED);
}
static inline uint64_t drover_atomic_load64(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void drover_atomic_store64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void drover_atomic_store32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint32_t drover_atomic_load32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint32_t drover_atomic_add32(uint32_t *p, uint32_t v) {
    return __atomic_add_fetch(p, v, __ATOMIC_RELAXED);
}
static inline uint32_t drover_atomic_sub32(uint32_t *p, uint32_t v) {
    return __atomic_sub_fetch(p, v, __ATOMIC_RELAXED);
}
static inline void drover_atomic_max32(uint32_t *p, uint32_t v) {
    uint32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}
/* Raises *p to v if v is larger. */
static inline void drover_atomic_max64(uint64_t *p, uint64_t v) {
    uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

/* Consistent copies; return 0 on success, -1 when a writer kept the record
 * busy for every retry (a worker that died mid-write: the caller shows the
 * slot as unknown rather than spin). */
int drover_sb_slot_read(const struct drover_sb_slot *src, struct drover_sb_slot *dst);
int drover_sb_pool_read(const struct drover_sb_pool *src, struct drover_sb_pool *dst);

/* Copies at most cap-1 bytes and NUL-terminates (php-fpm truncates the same way). */
void drover_copy_field(char *dst, size_t cap, const void *src, size_t len);

/* ---- listen queue ---- */
/* The accept queue of a listening Unix or TCP socket, read exactly from the
 * kernel (sock_diag for AF_UNIX, TCP_INFO for AF_INET/AF_INET6). Returns 0
 * and fills *queued (connections waiting to be accepted) and *capacity (the
 * accept-queue capacity: the backlog as the kernel applied it, i.e. capped
 * by net.core.somaxconn), or -1 with errno: ENOTSOCK for a non-socket,
 * EINVAL for a socket that is not listening, EAFNOSUPPORT for another
 * family, or whatever the kernel answered. */
int drover_listen_queue(int fd, uint32_t *queued, uint32_t *capacity);

/* ---- build ---- */
/* A value `make` compiled in (build_info.c): sysconfdir, localstatedir,
 * rundir, user, group, git_commit, build_date, built_by; "" if unknown. */
const char *drover_build_value(const char *key);

#endif
