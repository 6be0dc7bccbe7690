/* bench/compare's policy as a C milter (libmilter): refuse HELO/EHLO
 * bad.example, refuse RCPT blocked@dest.example, add one header at end of
 * message. The peer "postfix_c_policy_milter": what the same policy costs
 * when written by hand in C. bench/compare compiles it with
 *   cc -O2 -o policy_milter policy_milter.c -lmilter -lpthread
 * Usage: policy_milter inet:PORT@127.0.0.1  (runs in the foreground until
 * SIGTERM/SIGINT). No I/O besides the milter socket. */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static sfsistat on_helo(SMFICTX *ctx, char *helohost)
{
    if (helohost != NULL && strcasecmp(helohost, "bad.example") == 0) {
        smfi_setreply(ctx, "550", "5.7.1", "HELO bad.example refused by policy");
        return SMFIS_REJECT;
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
    const char *rcpt = argv[0];
    size_t len = strlen(rcpt);
    /* Postfix passes the address with its angle brackets. */
    if (len >= 2 && rcpt[0] == '<' && rcpt[len - 1] == '>') {
        rcpt++;
        len -= 2;
    }
    if (len == strlen("blocked@dest.example") && strncasecmp(rcpt, "blocked@dest.example", len) == 0) {
        smfi_setreply(ctx, "550", "5.7.1", "Recipient blocked@dest.example refused by policy");
        return SMFIS_REJECT;
    }
    return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
    smfi_addheader(ctx, "X-Bench-Policy", "c-milter");
    return SMFIS_CONTINUE;
}

static struct smfiDesc policy = {
    .xxfi_name = "bench-c-policy",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS,
    .xxfi_helo = on_helo,
    .xxfi_envrcpt = on_envrcpt,
    .xxfi_eom = on_eom,
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s inet:PORT@HOST\n", argv[0]);
        return 2;
    }
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(policy) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot set up the milter on %s\n", argv[0], argv[1]);
        return 1;
    }
    smfi_setbacklog(256);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
