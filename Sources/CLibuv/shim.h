/* libuv for the agent process (log sink, status server, control socket).
 * libuv's API is plain functions, so this only pulls in the header. */
#ifndef DROVER_CLIBUV_SHIM_H
#define DROVER_CLIBUV_SHIM_H
#include <uv.h>
#endif
