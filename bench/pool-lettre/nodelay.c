/* Preloaded by run.sh into the pool benchmark: sets TCP_NODELAY on every TCP socket the
 * process connects, because lettre does not set it and the comparison is meant to be
 * between the pools, not against Nagle's algorithm. smtpx sets it itself already. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) {
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    }
    int type = 0;
    socklen_t type_len = sizeof type;
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) &&
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM) {
        int one = 1;
        int saved = errno;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        errno = saved;
    }
    return real_connect(fd, addr, len);
}
