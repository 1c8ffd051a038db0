/* What `make` decided when it built Drover (php-fpm's --with-fpm-* configure
 * flags): the install locations compiled in as defaults, and build facts for
 * `drover -v`. `make` writes generated/build_info.h (see the Makefile's
 * build-info target); a plain `swift build` has none and gets the defaults
 * below. */
#include "CDroverSys.h"

#include <string.h>

#if __has_include("generated/build_info.h")
#include "generated/build_info.h"
#endif

#ifndef DROVER_SYSCONFDIR
#define DROVER_SYSCONFDIR "/etc"
#endif
#ifndef DROVER_LOCALSTATEDIR
#define DROVER_LOCALSTATEDIR "/var"
#endif
#ifndef DROVER_RUNDIR
#define DROVER_RUNDIR "/run"
#endif
#ifndef DROVER_USER
#define DROVER_USER "www-data"
#endif
#ifndef DROVER_GROUP
#define DROVER_GROUP "www-data"
#endif
#ifndef DROVER_GIT_COMMIT
#define DROVER_GIT_COMMIT ""
#endif
#ifndef DROVER_BUILD_DATE
#define DROVER_BUILD_DATE ""
#endif
#ifndef DROVER_BUILT_BY
#define DROVER_BUILT_BY "swift build"
#endif

const char *drover_build_value(const char *key) {
    static const struct { const char *key, *value; } values[] = {
        {"sysconfdir", DROVER_SYSCONFDIR},
        {"localstatedir", DROVER_LOCALSTATEDIR},
        {"rundir", DROVER_RUNDIR},
        {"user", DROVER_USER},
        {"group", DROVER_GROUP},
        {"git_commit", DROVER_GIT_COMMIT},
        {"build_date", DROVER_BUILD_DATE},
        {"built_by", DROVER_BUILT_BY},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (strcmp(values[i].key, key) == 0) return values[i].value;
    }
    return "";
}
