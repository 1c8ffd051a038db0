#define _GNU_SOURCE
#include "CDroverSys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

int drover_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

int drover_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int drover_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int drover_close_range(unsigned int first, unsigned int last) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first, last, 0) == 0) return 0;
#endif
    /* Old kernel: close one by one up to the fd limit. */
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (long fd = first; fd < max && fd <= (long)last; fd++) close((int)fd);
    return 0;
}

int drover_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int drover_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0); }

_Static_assert(DROVER_SCHED_OTHER == SCHED_OTHER && DROVER_SCHED_BATCH == SCHED_BATCH && DROVER_SCHED_IDLE == SCHED_IDLE,
               "scheduling policy constants");

/* ---- epoll ---- */
int drover_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int drover_epoll_add(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int drover_epoll_mod(int epfd, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

int drover_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int drover_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        tokens[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

/* ---- signalfd ---- */
int drover_signalfd_open(const int *sigs) {
    sigset_t set;
    sigemptyset(&set);
    for (const int *s = sigs; *s != 0; s++) sigaddset(&set, *s);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int drover_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return -1;
}

/* ---- processes ---- */
void drover_reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        sigaction(sig, &sa, NULL);
    }
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

pid_t drover_fork_child(int deathsig) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    drover_reset_signals();
    if (deathsig > 0) {
        prctl(PR_SET_PDEATHSIG, deathsig, 0, 0, 0);
        /* The parent may have died between fork and prctl. */
        if (getppid() != parent) _exit(0);
    }
    return 0;
}

/* capset(2) has no glibc wrapper (libcap would be a dependency for one
 * call). Sets the permitted and effective sets to `mask` (bits are
 * CAP_* numbers below 32, all Drover needs) and clears the inheritable set. */
static int set_capabilities(uint32_t mask) {
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].permitted = mask;
    data[0].effective = mask;
    return (int)syscall(SYS_capset, &head, data);
}

int drover_drop_privileges(const char *user, uid_t uid, gid_t gid, uint32_t keep_capabilities) {
    /* Leaving uid 0 normally empties every capability set. With KEEPCAPS
     * the permitted set survives setuid (the effective set is still
     * cleared), and is then cut down to what the caller asked for. */
    int keep = keep_capabilities != 0 && uid != 0;
    if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return -1;
    if (user != NULL) {
        if (initgroups(user, gid) != 0) return -1;
    } else {
        if (setgroups(1, &gid) != 0) return -1;
    }
    if (setgid(gid) != 0) return -1;
    if (setuid(uid) != 0) return -1;
    if (keep) {
        int failed = prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 || set_capabilities(keep_capabilities) != 0;
        if (failed) {
            /* Never go on as an ordinary user holding root's permitted set. */
            int e = errno;
            set_capabilities(0);
            errno = e;
            return -1;
        }
    }
    return 0;
}

/* What a spawn child reports when it cannot exec: the step and its errno. */
struct spawn_failure {
    int step;
    int err;
};

static void child_fail(int pipe_fd, int step, int err) {
    struct spawn_failure f = {.step = step, .err = err};
    ssize_t unused = write(pipe_fd, &f, sizeof f);
    (void)unused;
    _exit(127);
}

/* execve of a bare program name, trying each directory of `search_path`
 * in turn: after chroot(2) the worker cannot look the program up itself,
 * since the name means a file inside the chroot. (execvpe would read PATH
 * from this process's own environment.) As execvp does, a directory where
 * the name is missing or not searchable is skipped; EACCES is reported
 * when that was all there was. Returns only on failure, with errno set. */
static void exec_searching(const struct drover_spawn_request *req) {
    char candidate[4096];
    size_t name_len = strlen(req->path);
    int denied = 0;
    const char *dir = req->search_path;
    while (*dir != '\0') {
        const char *end = strchr(dir, ':');
        size_t dir_len = end ? (size_t)(end - dir) : strlen(dir);
        /* Empty entries (the current directory, historically) are skipped. */
        if (dir_len > 0 && dir_len + 1 + name_len < sizeof candidate) {
            memcpy(candidate, dir, dir_len);
            candidate[dir_len] = '/';
            memcpy(candidate + dir_len + 1, req->path, name_len + 1);
            execve(candidate, req->argv, req->envp);
            if (errno == EACCES) denied = 1;
            else if (errno != ENOENT && errno != ENOTDIR) return;
        }
        if (end == NULL) break;
        dir = end + 1;
    }
    errno = denied ? EACCES : ENOENT;
}

/* Moves fd to `target` (dup2), tolerating fd == target by clearing CLOEXEC. */
static int place_fd(int fd, int target) {
    if (fd == target) {
        int flags = fcntl(fd, F_GETFD);
        return flags < 0 ? -1 : fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    return dup2(fd, target) < 0 ? -1 : 0;
}

pid_t drover_spawn(const struct drover_spawn_request *req, int *err, int *step) {
    int report[2];
    if (step != NULL) *step = DROVER_SPAWN_FORK;
    if (pipe2(report, O_CLOEXEC) != 0) {
        *err = errno;
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        *err = errno;
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (pid == 0) {
        close(report[0]);
        drover_reset_signals();
        if (req->deathsig > 0) {
            prctl(PR_SET_PDEATHSIG, req->deathsig, 0, 0, 0);
            if (getppid() != parent) _exit(0);
        }
        if (req->new_process_group) setpgid(0, 0);
        /* Opened before any chroot: the jail need not have a /dev. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0) child_fail(report[1], DROVER_SPAWN_SETUP, errno);
        /* Lift the fds above 2 first so that dup2 onto 0..2 cannot clobber
         * a source that itself sits in 0..2. */
        int src[3] = {req->fd0, req->fd1, req->fd2};
        for (int i = 0; i < 3; i++) {
            int fd = src[i] < 0 ? devnull : src[i];
            int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            if (high < 0) child_fail(report[1], DROVER_SPAWN_SETUP, errno);
            src[i] = high;
        }
        for (int i = 0; i < 3; i++)
            if (place_fd(src[i], i) != 0) child_fail(report[1], DROVER_SPAWN_SETUP, errno);
        const char *dir = req->chdir;
        if (req->chroot != NULL) {
            if (chroot(req->chroot) != 0) child_fail(report[1], DROVER_SPAWN_CHROOT, errno);
            /* The old working directory is outside the new root: leaving it
             * open would be a way out of the chroot. */
            if (dir == NULL) dir = "/";
        }
        if (dir != NULL && chdir(dir) != 0) child_fail(report[1], DROVER_SPAWN_CHDIR, errno);
        /* Whatever capability the worker kept for chroot(2) ends here: the
         * app never holds one (execve as a non-root user would also clear
         * them; this does not depend on that). */
        if (req->chroot != NULL && set_capabilities(0) != 0) child_fail(report[1], DROVER_SPAWN_SETUP, errno);
        /* Close everything else except the report pipe (close-on-exec). */
        for (int fd = 3; fd < report[1]; fd++) close(fd);
        drover_close_range((unsigned)report[1] + 1, ~0U);
        if (req->search_path != NULL) exec_searching(req);
        else execve(req->path, req->argv, req->envp);
        child_fail(report[1], DROVER_SPAWN_EXEC, errno);
    }
    close(report[1]);
    struct spawn_failure failure = {0, 0};
    ssize_t n;
    do {
        n = read(report[0], &failure, sizeof failure);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof failure) {
        /* A step failed: the child has _exit'ed; the caller reaps it. */
        *err = failure.err;
        if (step != NULL) *step = failure.step;
        return pid;
    }
    *err = 0;
    if (step != NULL) *step = 0;
    return pid;
}

/* ---- sockets ---- */
static int fill_sun(struct sockaddr_un *sun, const char *path) {
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof sun->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sun->sun_path, path, len);
    return 0;
}

int drover_unix_listen(const char *path, int backlog) {
    struct sockaddr_un sun;
    if (fill_sun(&sun, path) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int drover_unix_connect(const char *path, int nonblock) {
    struct sockaddr_un sun;
    if (fill_sun(&sun, path) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int drover_unix_is_live(const char *path) {
    int fd = drover_unix_connect(path, 0);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* ---- scoreboard ---- */
#define SEQ_READ(T, src, dst)                                                  \
    for (int attempt = 0; attempt < 1000; attempt++) {                         \
        uint32_t s1 = __atomic_load_n(&(src)->seq, __ATOMIC_ACQUIRE);          \
        if (s1 & 1) continue;                                                  \
        memcpy((dst), (src), sizeof(T));                                       \
        __atomic_thread_fence(__ATOMIC_ACQUIRE);                               \
        if (__atomic_load_n(&(src)->seq, __ATOMIC_RELAXED) == s1) return 0;    \
    }                                                                          \
    return -1;

int drover_sb_slot_read(const struct drover_sb_slot *src, struct drover_sb_slot *dst) {
    SEQ_READ(struct drover_sb_slot, src, dst)
}

int drover_sb_pool_read(const struct drover_sb_pool *src, struct drover_sb_pool *dst) {
    SEQ_READ(struct drover_sb_pool, src, dst)
}

void drover_copy_field(char *dst, size_t cap, const void *src, size_t len) {
    if (cap == 0) return;
    if (len > cap - 1) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ---- listen queue ---- */
/* Kept with the code that needs them: the kernel UAPI headers are only used
 * here. (<netinet/tcp.h> supplies struct tcp_info and the TCP_LISTEN state;
 * <linux/tcp.h> would clash with it.) */
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>

/* AF_UNIX: the kernel shows a listener's accept queue only through sock_diag
 * (SIOCINQ fails on a listener and TCP_INFO is TCP's). We ask for the one
 * socket by inode -- st_ino of the fd is the socket's inode -- so the kernel
 * answers with a single message instead of dumping every socket on the host.
 * For a listener, UNIX_DIAG_RQLEN carries the queue length in rqueue and
 * sk_max_ack_backlog in wqueue; for other states it means something else,
 * so the state is checked (an exact lookup ignores udiag_states).
 *
 * unix_diag_rqlen sends the request on nl and reads the answer; it returns
 * 0 or an errno. */
static int unix_diag_rqlen(int nl, uint32_t ino, uint32_t *queued, uint32_t *capacity) {
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST; /* no NLM_F_DUMP: exact lookup */
    msg.req.sdiag_family = AF_UNIX;
    msg.req.udiag_states = 1u << TCP_LISTEN;
    msg.req.udiag_ino = ino;
    msg.req.udiag_show = UDIAG_SHOW_RQLEN;
    msg.req.udiag_cookie[0] = ~0U; /* INVALID_COOKIE: skip the cookie check */
    msg.req.udiag_cookie[1] = ~0U;

    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    ssize_t n;
    do n = sendto(nl, &msg, sizeof msg, 0, (struct sockaddr *)&kernel, sizeof kernel);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno;

    long buf[1024]; /* 8 KiB, aligned for nlmsghdr; the reply is ~40 bytes */
    do n = recv(nl, buf, sizeof buf, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno;

    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_DONE) break;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error != 0) return -e->error;
            break;
        }
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
        const struct unix_diag_msg *m = NLMSG_DATA(h);
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof *m) || m->udiag_ino != ino) continue;
        if (m->udiag_state != TCP_LISTEN) return EINVAL;
        /* Attributes follow the (aligned) unix_diag_msg. */
        const char *a = (const char *)m + NLMSG_ALIGN(sizeof *m);
        long left = (long)h->nlmsg_len - (long)NLMSG_SPACE(sizeof *m);
        while (left >= NLA_HDRLEN) {
            const struct nlattr *attr = (const struct nlattr *)a;
            if (attr->nla_len < NLA_HDRLEN || attr->nla_len > left) break;
            if ((attr->nla_type & NLA_TYPE_MASK) == UNIX_DIAG_RQLEN &&
                attr->nla_len >= NLA_HDRLEN + sizeof(struct unix_diag_rqlen)) {
                struct unix_diag_rqlen rq;
                memcpy(&rq, a + NLA_HDRLEN, sizeof rq);
                *queued = rq.udiag_rqueue;
                *capacity = rq.udiag_wqueue;
                return 0;
            }
            left -= NLA_ALIGN(attr->nla_len);
            a += NLA_ALIGN(attr->nla_len);
        }
        break; /* our socket but no RQLEN attribute */
    }
    return ENOENT; /* the kernel said nothing usable about our socket */
}

static int unix_listen_queue(int fd, uint32_t *queued, uint32_t *capacity) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    /* A fresh socket per call: nothing shared between threads, and no stale
     * replies from an earlier call to skip. */
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) return -1;
    /* Socket inodes come from a 32-bit counter, so st_ino fits udiag_ino. */
    int err = unix_diag_rqlen(nl, (uint32_t)st.st_ino, queued, capacity);
    close(nl);
    if (err != 0) { errno = err; return -1; }
    return 0;
}

/* AF_INET/AF_INET6: for a listener, TCP_INFO reuses two fields --
 * tcpi_unacked is sk_ack_backlog (the accept queue) and tcpi_sacked is
 * sk_max_ack_backlog (the backlog). On other states they count segments,
 * hence the state check. */
static int tcp_listen_queue(int fd, uint32_t *queued, uint32_t *capacity) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return -1;
    if (ti.tcpi_state != TCP_LISTEN) { errno = EINVAL; return -1; }
    *queued = ti.tcpi_unacked;
    *capacity = ti.tcpi_sacked;
    return 0;
}

int drover_listen_queue(int fd, uint32_t *queued, uint32_t *capacity) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1; /* ENOTSOCK for a pipe */
    switch (ss.ss_family) {
    case AF_UNIX: return unix_listen_queue(fd, queued, capacity);
    case AF_INET:
    case AF_INET6: return tcp_listen_queue(fd, queued, capacity);
    default: errno = EAFNOSUPPORT; return -1;
    }
}

/* ---- the log channel ------------------------------------------------------ */

int drover_seqpacket_pair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

void drover_set_send_buffer(int fd, int bytes) {
    /* SO_SNDBUFFORCE ignores net.core.wmem_max but needs CAP_NET_ADMIN;
     * without it SO_SNDBUF is capped at wmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

long drover_send2(int fd, const void *head, size_t head_len, const void *body, size_t body_len) {
    struct iovec iov[2] = {
        { .iov_base = (void *)head, .iov_len = head_len },
        { .iov_base = (void *)body, .iov_len = body_len },
    };
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = body_len ? 2 : 1 };
    ssize_t n;
    do { n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return (long)n;
}
