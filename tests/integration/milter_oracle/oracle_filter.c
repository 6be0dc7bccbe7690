/* The reference milter for test_milter_oracle.py: a libmilter filter that
 * registers callbacks and answers SMFIS_CONTINUE to each, so what goes
 * back on the wire is libmilter's own protocol answer for a filter that
 * accepts everything. It must never build protocol bytes itself: every
 * byte it sends is libmilter's, which is what makes it an oracle.
 *
 *   oracle_filter inet:PORT@127.0.0.1 [all|rcpt|refuse]
 *
 * all (the default): every callback, negotiate answering SMFIS_ALL_OPTS;
 * rcpt: envrcpt only and no negotiate callback, so libmilter asks the MTA
 * to skip every other step (beside a policyd script with hook.rcpt only);
 * refuse: as all, but CONNECT from refuse.example, HELO bad.example, MAIL <temp@example.org> and RCPT
 * <no@example.com> are refused with a reply text (smfi_setreply,
 * smfi_setmlreply), like test_milter_oracle.py's REFUSES script.
 * Prints "oracle listening" once the socket is open. */
#include <dirent.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int refuse;

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
  if (refuse && strcmp(host, "refuse.example") == 0) {
    smfi_setreply(ctx, "554", "5.7.1", "go away");
    return SMFIS_REJECT;
  }
  return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *helo) {
  if (refuse && strcmp(helo, "bad.example") == 0) {
    smfi_setreply(ctx, "550", "5.7.1", "helo refused");
    return SMFIS_REJECT;
  }
  return SMFIS_CONTINUE;
}
static sfsistat on_envfrom(SMFICTX *ctx, char **argv) {
  if (refuse && strcmp(argv[0], "<temp@example.org>") == 0) {
    smfi_setreply(ctx, "451", "4.3.2", "try later");
    return SMFIS_TEMPFAIL;
  }
  return SMFIS_CONTINUE;
}
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) {
  if (refuse && strcmp(argv[0], "<no@example.com>") == 0) {
    smfi_setmlreply(ctx, "550", "5.1.1", "no such user", "see postmaster", (char *)NULL);
    return SMFIS_REJECT;
  }
  return SMFIS_CONTINUE;
}
static sfsistat on_header(SMFICTX *ctx, char *name, char *value) { return SMFIS_CONTINUE; }
static sfsistat on_eoh(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len) { return SMFIS_CONTINUE; }
static sfsistat on_eom(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_abort(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_close(SMFICTX *ctx) { return SMFIS_CONTINUE; }
static sfsistat on_unknown(SMFICTX *ctx, const char *cmd) { return SMFIS_CONTINUE; }
static sfsistat on_data(SMFICTX *ctx) { return SMFIS_CONTINUE; }

/* Everything the MTA offers, every step sent (libmilter fills the reply). */
static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
                             unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3) {
  return SMFIS_ALL_OPTS;
}

/* libmilter writes each reply with Nagle on. When it closes a connection with
 * bytes it has not read (a refused packet with more after it), the kernel
 * sends RST and drops replies Nagle still held, so how many answers the test
 * saw depended on timing (once 'O c c c' instead of 'O c c c c c' under
 * load). libmilter has no hook on its sockets; on Linux an accepted socket
 * inherits TCP_NODELAY from the listening one, so set it there: every reply
 * is on the wire before the close. Returns the number of sockets set. */
static int no_delay_on_listening_sockets(void) {
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL) return 0;
  int set = 0;
  for (struct dirent *e; (e = readdir(dir)) != NULL;) {
    const int fd = atoi(e->d_name);
    int listening = 0;
    socklen_t len = sizeof listening;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(dir)) continue;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    const int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) set++;
  }
  closedir(dir);
  return set;
}

int main(int argc, char **argv) {
  if (argc < 2 || (argc > 2 && strcmp(argv[2], "all") != 0 && strcmp(argv[2], "rcpt") != 0 &&
                    strcmp(argv[2], "refuse") != 0)) {
    fprintf(stderr, "usage: %s inet:PORT@127.0.0.1 [all|rcpt|refuse]\n", argv[0]);
    return 2;
  }
  refuse = argc > 2 && strcmp(argv[2], "refuse") == 0;
  const int all = argc < 3 || strcmp(argv[2], "rcpt") != 0;
  struct smfiDesc desc;
  memset(&desc, 0, sizeof desc);
  desc.xxfi_name = "mailhook-oracle";
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = 0;  /* no action: SMFIS_ALL_OPTS takes what the MTA offers */
  desc.xxfi_envrcpt = on_envrcpt;
  if (all) {
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_helo;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_header = on_header;
    desc.xxfi_eoh = on_eoh;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = on_eom;
    desc.xxfi_abort = on_abort;
    desc.xxfi_close = on_close;
    desc.xxfi_unknown = on_unknown;
    desc.xxfi_data = on_data;
    desc.xxfi_negotiate = on_negotiate;
  }
  if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
    fprintf(stderr, "oracle: cannot set up %s\n", argv[1]);
    return 1;
  }
  if (smfi_opensocket(1) != MI_SUCCESS) {
    fprintf(stderr, "oracle: cannot listen on %s\n", argv[1]);
    return 1;
  }
  if (no_delay_on_listening_sockets() != 1) {
    fprintf(stderr, "oracle: cannot set TCP_NODELAY on the socket of %s\n", argv[1]);
    return 1;
  }
  printf("oracle listening on %s\n", argv[1]);
  fflush(stdout);
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
