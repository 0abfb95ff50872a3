/*
 * pause: the process that holds a pod sandbox's namespaces open.
 *
 * It does nothing but wait. It is PID 1 of the sandbox, so it must also
 * reap any orphaned children that end up re-parented to it, and it must
 * exit promptly and cleanly when the runtime stops the sandbox
 * (SIGTERM, or SIGINT by hand).
 *
 * Built static (gcc -static -Os) so the image needs no libc: see
 * e2e/images/build.py, image "pause".
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void on_child(int sig)
{
    (void)sig;
    int saved = errno;
    /* Several children may have exited behind one SIGCHLD. */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static void handle(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigfillset(&sa.sa_mask); /* handlers never interrupt one another */
    sa.sa_flags = (sig == SIGCHLD) ? (SA_RESTART | SA_NOCLDSTOP) : 0;
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("pause: sigaction");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;

    /* Block everything except the three signals we act on. */
    sigset_t blocked;
    sigfillset(&blocked);
    sigdelset(&blocked, SIGINT);
    sigdelset(&blocked, SIGTERM);
    sigdelset(&blocked, SIGCHLD);
    if (sigprocmask(SIG_SETMASK, &blocked, NULL) != 0) {
        perror("pause: sigprocmask");
        return 1;
    }

    handle(SIGINT, on_stop);
    handle(SIGTERM, on_stop);
    handle(SIGCHLD, on_child);

    if (getpid() != 1) {
        fputs("pause: warning: not running as PID 1\n", stderr);
    }

    for (;;) {
        pause();
    }
}
