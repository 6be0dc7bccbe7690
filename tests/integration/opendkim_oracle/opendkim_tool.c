/*
 * libopendkim (OpenDKIM's library, Debian libopendkim-dev) as the oracle
 * of mailhook's DKIM: test_dkim.py signs messages with it for dkim.verify
 * and verifies what dkim.sign made. Debian 12's opendkim-testmsg fails on
 * every message ("dkim_chunk(): Syntax error"), and it has no choice of
 * algorithm, canonicalization or key source, so this drives the library
 * the same way, through dkim_header/dkim_eoh/dkim_body/dkim_eom.
 *
 *   opendkim_tool sign KEYFILE DOMAIN SELECTOR ALG HCANON BCANON [length] [time T ttl S] < msg
 *       prints the DKIM-Signature field (CRLF folded), ALG rsa-sha256 or
 *       ed25519-sha256, *CANON simple or relaxed; "length" adds l=,
 *       "time T ttl S" signs as at T with x= T+S
 *   opendkim_tool verify KEYS < msg
 *       KEYS: lines "selector._domainkey.domain record" (DKIM_QUERY_FILE);
 *       prints "domain selector pass|fail|error <text>" per signature
 *   opendkim_tool features
 *       prints "ed25519" when the library has it
 * Exit 0 when the library ran (whatever the verdicts), 2 on misuse.
 * A test tool: it reads one message from stdin, never the network.
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <opendkim/dkim.h>

static char *read_all(FILE *f, size_t *len) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  *len = n;
  return buf;
}

/* Feeds the message: each header field (folding kept, no final CRLF),
 * then the body. */
static DKIM_STAT feed(DKIM *dkim, const char *msg, size_t len) {
  size_t pos = 0;
  DKIM_STAT st = DKIM_STAT_OK;
  while (pos < len) {
    size_t end = pos;
    /* the field ends at a CRLF not followed by WSP */
    for (;;) {
      const char *crlf = NULL;
      for (size_t i = end; i + 1 < len; i++) {
        if (msg[i] == '\r' && msg[i + 1] == '\n') {
          crlf = msg + i;
          break;
        }
      }
      if (crlf == NULL) {
        end = len;
        break;
      }
      end = (size_t)(crlf - msg);
      if (end == pos) break; /* the empty line */
      if (end + 2 < len && (msg[end + 2] == ' ' || msg[end + 2] == '\t')) {
        end += 2;
        continue;
      }
      break;
    }
    if (end == pos) {
      pos += 2;
      break;
    }
    st = dkim_header(dkim, (unsigned char *)msg + pos, end - pos);
    if (st != DKIM_STAT_OK) return st;
    pos = end + 2;
  }
  st = dkim_eoh(dkim);
  if (st != DKIM_STAT_OK && st != DKIM_STAT_NOSIG) return st;
  if (pos < len) {
    st = dkim_body(dkim, (unsigned char *)msg + pos, len - pos);
    if (st != DKIM_STAT_OK) return st;
  }
  return DKIM_STAT_OK;
}

static dkim_canon_t canon(const char *s) { return strcmp(s, "simple") == 0 ? DKIM_CANON_SIMPLE : DKIM_CANON_RELAXED; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  DKIM_LIB *lib = dkim_init(NULL, NULL);
  if (lib == NULL) return 3;
  if (strcmp(argv[1], "features") == 0) {
    if (dkim_libfeature(lib, DKIM_FEATURE_ED25519)) printf("ed25519\n");
    return 0;
  }
  size_t len = 0;
  char *msg = read_all(stdin, &len);
  DKIM_STAT st;
  if (strcmp(argv[1], "sign") == 0 && argc >= 8) {
    FILE *kf = fopen(argv[2], "rb");
    if (kf == NULL) return 2;
    size_t klen = 0;
    char *key = read_all(kf, &klen);
    fclose(kf);
    key = realloc(key, klen + 1);
    key[klen] = '\0';
    dkim_alg_t alg = strcmp(argv[5], "ed25519-sha256") == 0 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256;
    for (int i = 8; i < argc; i++) {
      if (strcmp(argv[i], "length") == 0) { /* l=: the library's SIGNLEN flag */
        unsigned int flags = DKIM_LIBFLAGS_SIGNLEN;
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags);
      } else if (strcmp(argv[i], "time") == 0 && i + 3 < argc && strcmp(argv[i + 2], "ttl") == 0) {
        uint64_t when = strtoull(argv[i + 1], NULL, 10), ttl = strtoull(argv[i + 3], NULL, 10);
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &when, sizeof when);
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof ttl);
        i += 3;
      } else {
        return 2;
      }
    }
    DKIM *dkim = dkim_sign(lib, (unsigned char *)"oracle", NULL, (dkim_sigkey_t)key, (unsigned char *)argv[4],
                           (unsigned char *)argv[3], canon(argv[6]), canon(argv[7]), alg, (ssize_t)-1, &st);
    if (dkim == NULL) {
      fprintf(stderr, "dkim_sign: %s\n", dkim_getresultstr(st));
      return 1;
    }
    st = feed(dkim, msg, len);
    if (st == DKIM_STAT_OK) st = dkim_eom(dkim, NULL);
    if (st != DKIM_STAT_OK) {
      fprintf(stderr, "sign: %s (%s)\n", dkim_getresultstr(st), dkim_geterror(dkim) ? dkim_geterror(dkim) : "");
      return 1;
    }
    unsigned char *hdr = NULL;
    size_t hlen = 0;
    st = dkim_getsighdr_d(dkim, strlen(DKIM_SIGNHEADER) + 2, &hdr, &hlen);
    if (st != DKIM_STAT_OK) {
      fprintf(stderr, "dkim_getsighdr_d: %s\n", dkim_getresultstr(st));
      return 1;
    }
    /* the library folds with CRLF after a CRLF message, else a bare LF */
    printf("%s: ", DKIM_SIGNHEADER);
    for (size_t i = 0; i < hlen; i++) {
      if (hdr[i] == '\n' && (i == 0 || hdr[i - 1] != '\r')) putchar('\r');
      putchar(hdr[i]);
    }
    printf("\r\n");
    dkim_free(dkim);
    return 0;
  }
  if (strcmp(argv[1], "verify") == 0 && argc == 3) {
    int method = DKIM_QUERY_FILE;
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYMETHOD, &method, sizeof method);
    dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_QUERYINFO, argv[2], strlen(argv[2]));
    DKIM *dkim = dkim_verify(lib, (unsigned char *)"oracle", NULL, &st);
    if (dkim == NULL) return 1;
    st = feed(dkim, msg, len);
    DKIM_STAT eom = st == DKIM_STAT_OK ? dkim_eom(dkim, NULL) : st;
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
      printf("- - none %s\n", dkim_getresultstr(eom));
      return 0;
    }
    for (int i = 0; i < nsigs; i++) {
      DKIM_SIGINFO *sig = sigs[i];
      if ((dkim_sig_getflags(sig) & DKIM_SIGFLAG_PROCESSED) == 0) dkim_sig_process(dkim, sig);
      const char *verdict = DKIM_SIG_CHECK(sig) ? "pass" : dkim_sig_geterror(sig) == DKIM_SIGERROR_OK ? "fail" : "error";
      printf("%s %s %s %s\n", dkim_sig_getdomain(sig), dkim_sig_getselector(sig), verdict,
             dkim_sig_geterrorstr(dkim_sig_geterror(sig)));
    }
    dkim_free(dkim);
    return 0;
  }
  return 2;
}
