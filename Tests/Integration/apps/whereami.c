/*
 * A FastCGI app for the chroot tests (test_privileges.py), built there with
 * `cc -static ... -lfcgi` so that it runs in an empty chroot: it answers
 * with what the process sees -- its working directory, whether a file
 * exists at the root, its uid.
 */
#include <fcgi_stdio.h>
#include <unistd.h>

int main(void)
{
    char cwd[4096];
    while (FCGI_Accept() >= 0) {
        if (getcwd(cwd, sizeof cwd) == NULL)
            cwd[0] = '\0';
        printf("Content-Type: text/plain\r\n\r\ncwd=%s marker=%s uid=%d\n", cwd,
               access("/inside-the-jail", F_OK) == 0 ? "yes" : "no", (int)getuid());
    }
    return 0;
}
