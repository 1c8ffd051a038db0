/* libev's watcher set-up API is macros; Swift cannot call macros, so these
 * static inline functions give each one a callable name. libev-dev ships no
 * pkg-config file, hence the plain `link "ev"` in module.modulemap. */
#ifndef DROVER_CLIBEV_SHIM_H
#define DROVER_CLIBEV_SHIM_H
#include <ev.h>

static inline void drover_ev_io_init(ev_io *w, void (*cb)(struct ev_loop *, ev_io *, int), int fd, int events) {
    ev_io_init(w, cb, fd, events);
}
static inline void drover_ev_timer_init(ev_timer *w, void (*cb)(struct ev_loop *, ev_timer *, int), ev_tstamp after, ev_tstamp repeat) {
    ev_timer_init(w, cb, after, repeat);
}
static inline void drover_ev_timer_set(ev_timer *w, ev_tstamp after, ev_tstamp repeat) {
    ev_timer_set(w, after, repeat);
}
static inline void drover_ev_signal_init(ev_signal *w, void (*cb)(struct ev_loop *, ev_signal *, int), int signum) {
    ev_signal_init(w, cb, signum);
}
static inline void drover_ev_child_init(ev_child *w, void (*cb)(struct ev_loop *, ev_child *, int), int pid, int trace) {
    ev_child_init(w, cb, pid, trace);
}
static inline int drover_ev_is_active(void *w) { return ev_is_active((ev_watcher *)w); }
static inline struct ev_loop *drover_ev_default_loop(unsigned int flags) { return ev_default_loop(flags); }
#endif
