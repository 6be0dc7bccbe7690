/* A milter that does nothing (libmilter): the peer "postfix_noop_milter",
 * the cost of the milter protocol alone. It registers the same callbacks
 * as policy_milter.c (helo, envrcpt, eom), each answering "continue", so
 * Postfix makes the same round trips as with the policy milters; the
 * difference between the two is the policy's own work.
 *   cc -O2 -o noop_milter noop_milter.c -lmilter -lpthread
 * Usage: noop_milter inet:PORT@127.0.0.1 */
#include <libmilter/mfapi.h>
#include <stdio.h>

static sfsistat on_helo(SMFICTX *ctx, char *helohost) { (void)ctx; (void)helohost; return SMFIS_CONTINUE; }
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) { (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_eom(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }

static struct smfiDesc noop = {
    .xxfi_name = "bench-noop",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = 0,
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
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(noop) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot set up the milter on %s\n", argv[0], argv[1]);
        return 1;
    }
    smfi_setbacklog(256);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
