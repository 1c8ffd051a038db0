/*
 * The trivial FastCGI responder used by bench/run: the cheapest possible app,
 * so that what the benchmark measures is the process manager's own overhead
 * (Drover's worker relay vs. spawn-fcgi's direct accept).
 *
 * Built by bench/run:  cc -O2 -o OUT/responder bench/responder.c -lfcgi
 * (Debian: libfcgi-dev). libfcgi accepts on fd 0 (FCGI_LISTENSOCK_FILENO) and
 * honours FCGI_KEEP_CONN, so one connection from a Drover worker carries every
 * request.
 */
#include <fcgi_stdio.h>

int main(void)
{
    while (FCGI_Accept() >= 0)
        printf("Content-Type: text/plain\r\n\r\nHello\n");
    return 0;
}
