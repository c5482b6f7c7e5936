/*
 * supervise: taskbox's process supervisor inside a task's container (docs/architecture.md,
 * "Executions and their supervisor"). Built static by build.rs so that it runs in any Linux
 * image, glibc or musl; bind-mounted read-only at /.taskbox/bin/supervise.
 *
 *   supervise run --id ID [--user UID:GID [--home]] [--dir DIR [--attach] --cap BYTES --timeout S
 *                 --stall S [--redact]] [--grace S] -- CMD ARG...
 *   supervise signal SIGNAME WAIT_S ID...
 *   supervise reap ID...
 *   supervise relay PORT
 *
 * `run` makes itself a child subreaper (PR_SET_CHILD_SUBREAPER) and runs CMD, so that every
 * process CMD starts, however it forks, `setsid`s or clears its environment, stays a
 * descendant of the supervisor instead of escaping to PID 1. When the supervisor is asked to
 * end it, or (in the foreground) when CMD exits, the whole tree is ended: the signal goes to
 * every descendant, SIGKILL follows after the grace period, and the sweep repeats until none
 * is left. In the background the execution lasts until its whole tree has ended (a daemon
 * CMD started keeps it running). The supervisor then exits with CMD's status (128 + signal
 * when a signal ended it).
 *
 * Without --dir (foreground) CMD shares the supervisor's stdin/stdout/stderr. With --dir
 * (background) the supervisor detaches (new session, stdio on /dev/null) and, in DIR, which
 * must exist: holds an exclusive flock on `lock` for as long as it lives (how the server
 * tells a live supervisor from a dead one), gives CMD the FIFO `stdin` (kept open for
 * writing until SIGUSR2, so CMD sees end-of-input only when asked), copies CMD's stdout and
 * stderr to `stdout` and `stderr` up to --cap bytes each (the rest is counted, not kept),
 * and at the end writes `status` atomically. With --redact it first reads patterns from its
 * stdin and replaces them in the output files (see "redaction" below). With --stall, once CMD has printed nothing for
 * that many seconds it looks at the tree each second and writes `activity` (atomically, on
 * each change): `waiting_for_input` when a process of it blocks reading its standard input
 * (the FIFO, or a terminal), `stalled` with what one waits on when all sleep, `active` again
 * when output resumes or something runs. The first process exits once the supervisor is set
 * up (0, or 125 with the reason on stderr), so the caller knows it started.
 *
 * With --dir and --attach (a foreground command that may later be yielded to the background)
 * the supervisor stays the caller's process: no detaching, no FIFO (CMD shares the
 * supervisor's standard input, so a command given no input reads end-of-input at once), and,
 * as in the foreground, the processes CMD leaves behind end with it; but its output goes to
 * the files, the lock is held and `status` is written, exactly as in the background, so the
 * server can stop waiting at any moment and read the rest from the files later. Its own
 * stdout/stderr carry nothing but its own errors, so nothing blocks once nobody reads them.
 * --timeout then kills the tree at once (as the server does in the foreground). The files are
 * fsync'd at the end only when the server left a file `detached` in DIR (it stopped waiting);
 * otherwise the server reads them the moment the supervisor exits.
 *
 * With --user the supervisor is started as root and runs CMD as UID:GID (those numbers, the
 * GID as the only group; --home sets HOME to that uid's home in /etc/passwd, else `/`): CMD
 * then cannot signal or trace its supervisor (it is another user's, and not dumpable), so it
 * cannot end it to let its own processes escape to PID 1. The files it makes in DIR are given
 * to DIR's owner, as when it ran as that user.
 *
 * Signals to the supervisor: TERM, INT, HUP and QUIT are passed to the whole tree, then KILL
 * after the grace period; USR1 kills the tree at once; USR2 closes CMD's standard input.
 * `signal` sends one of those to the supervisors of the given execution ids (found by their
 * command lines in /proc) and waits up to WAIT_S seconds for them to exit; it exits 0 when
 * all are gone, 3 when none was found, 4 when some are still there.
 *
 * `reap` kills, with everything under them, the processes that escaped to PID 1: every child
 * of PID 1 but the container's own first process (the oldest) and the supervisors of the
 * given execution ids (the running background executions). It is run, as root, after a root
 * command that may have killed its supervisor; it prints how many processes it killed.
 *
 * `relay` connects to PORT on the container's loopback (127.0.0.1, else ::1) and copies its
 * standard input to the connection and the connection to its standard output: the server's
 * port forwards run it once per connection through `docker exec` (docs/architecture.md,
 * "Ports"), so a server listening only on 127.0.0.1 inside the container is reached, and no
 * network is needed. It exits 0 when the connection ends, 111 when nothing listens on PORT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define STATUS_VERSION 1

static int sigpipe_fds[2] = {-1, -1};

/* With --user: the owner of DIR, who gets the files the supervisor (root) makes in it. */
static uid_t files_uid = (uid_t)-1;
static gid_t files_gid = (gid_t)-1;

static void give_to_owner(int fd) {
    if (files_uid != (uid_t)-1 && fchown(fd, files_uid, files_gid) < 0) { /* keeps root's */ }
}

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sigpipe_fds[1], &b, 1) < 0) { /* full: the loop wakes anyway */ }
    errno = saved;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what) {
    fprintf(stderr, "supervise: %s: %s\n", what, strerror(errno));
    exit(125);
}

/* ---- the process tree ---------------------------------------------------------------- */

struct proc { pid_t pid, ppid; };

/* Every process's parent, from /proc/<pid>/stat (the field after the last ')' of comm). */
static size_t list_procs(struct proc **out) {
    size_t n = 0, cap = 256;
    struct proc *procs = malloc(cap * sizeof *procs);
    DIR *d = opendir("/proc");
    if (!procs || !d) { free(procs); if (d) closedir(d); *out = NULL; return 0; }
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = 0;
        char *paren = strrchr(buf, ')');
        if (!paren || strlen(paren) < 4) continue;
        long ppid = strtol(paren + 4, NULL, 10); /* ") S ppid" */
        if (n == cap) {
            struct proc *more = realloc(procs, 2 * cap * sizeof *procs);
            if (!more) break;
            procs = more; cap *= 2;
        }
        procs[n].pid = (pid_t)pid; procs[n].ppid = (pid_t)ppid; n++;
    }
    closedir(d);
    *out = procs;
    return n;
}

/* Marks in `in` (n flags, zeroed) the descendants of this process; returns how many. */
static size_t mark_descendants(const struct proc *procs, size_t n, char *in) {
    size_t found = 0;
    pid_t self = getpid();
    int grown = 1;
    while (grown) {
        grown = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i]) continue;
            int parent_in = procs[i].ppid == self;
            for (size_t j = 0; !parent_in && j < n; j++)
                parent_in = in[j] && procs[j].pid == procs[i].ppid;
            if (parent_in) { in[i] = 1; grown = 1; found++; }
        }
    }
    return found;
}

/* Sends `sig` to every descendant of this process; returns how many there were. */
static size_t signal_tree(int sig) {
    struct proc *procs;
    size_t n = list_procs(&procs);
    if (!procs) return 0;
    char *in = calloc(n ? n : 1, 1);
    size_t found = in ? mark_descendants(procs, n, in) : 0;
    for (size_t i = 0; in && i < n; i++)
        if (in[i]) kill(procs[i].pid, sig);
    free(in);
    free(procs);
    return found;
}

/* ---- stalls -------------------------------------------------------------------------- */

/* A small /proc file of `pid`, as text (empty when it cannot be read). */
static void read_proc(pid_t pid, const char *name, char *buf, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t len = read(fd, buf, size - 1);
    close(fd);
    buf[len > 0 ? len : 0] = 0;
    buf[strcspn(buf, "\n")] = 0;
}

/* Whether `pid` is blocked reading its standard input, which is `fifo` or a terminal. */
static int reads_stdin(pid_t pid, const struct stat *fifo) {
    char path[64], text[256];
    snprintf(path, sizeof path, "/proc/%d/fd/0", (int)pid);
    struct stat sb;
    if (stat(path, &sb) < 0) return 0;
    int is_input = (sb.st_dev == fifo->st_dev && sb.st_ino == fifo->st_ino) || S_ISCHR(sb.st_mode);
    if (!is_input) return 0;
    read_proc(pid, "syscall", text, sizeof text);
    if (text[0] && strcmp(text, "running")) {
        long nr = strtol(text, NULL, 10);
        char *arg0 = strchr(text, ' ');
        long fd = arg0 ? strtol(arg0 + 1, NULL, 16) : -1;
#if defined(__x86_64__)
        if ((nr == 0 || nr == 17 || nr == 19) && fd == 0) return 1;         /* read, pread64, readv */
        if (nr == 7 || nr == 23 || nr == 270 || nr == 271) return 1;         /* poll, select, pselect6, ppoll */
        if (nr == 232 || nr == 281 || nr == 441) return 1;                   /* epoll_wait, epoll_pwait(2) */
#elif defined(__aarch64__)
        if ((nr == 63 || nr == 65 || nr == 67) && fd == 0) return 1;        /* read, readv, pread64 */
        if (nr == 72 || nr == 73 || nr == 22 || nr == 441) return 1;         /* pselect6, ppoll, epoll_pwait(2) */
#endif
        return 0;
    }
    /* No syscall file (a kernel without it, or not allowed): the wait channel tells. */
    read_proc(pid, "wchan", text, sizeof text);
    return strstr(text, "pipe_read") || strstr(text, "pipe_wait") || strstr(text, "n_tty_read") ||
           strstr(text, "wait_woken");
}

/* What the tree is doing after a silence: 1 waiting for input, 2 blocked on something else
 * (`what` says on what, where it can be read), 0 working (a process is running). */
static int assess_tree(const struct stat *fifo, char *what, size_t size) {
    struct proc *procs;
    size_t n = list_procs(&procs);
    what[0] = 0;
    if (!procs) return 0;
    char *in = calloc(n ? n : 1, 1);
    int result = 2;
    if (in) mark_descendants(procs, n, in);
    for (size_t i = 0; in && i < n && result != 0; i++) {
        if (!in[i]) continue;
        char stat[512], comm[64] = "?", wchan[128];
        read_proc(procs[i].pid, "stat", stat, sizeof stat);
        char *open_paren = strchr(stat, '('), *close_paren = strrchr(stat, ')');
        if (open_paren && close_paren && close_paren > open_paren) {
            size_t len = (size_t)(close_paren - open_paren - 1);
            if (len >= sizeof comm) len = sizeof comm - 1;
            memcpy(comm, open_paren + 1, len);
            comm[len] = 0;
        }
        char state = close_paren && close_paren[1] ? close_paren[2] : '?';
        if (state == 'R') { result = 0; break; }
        if (reads_stdin(procs[i].pid, fifo)) {
            snprintf(what, size, "%s (pid %d) reads its standard input", comm, (int)procs[i].pid);
            result = 1;
            continue;
        }
        if (result == 2) {
            read_proc(procs[i].pid, "wchan", wchan, sizeof wchan);
            if (wchan[0] && strcmp(wchan, "0"))
                snprintf(what, size, "%s (pid %d) waits in %s", comm, (int)procs[i].pid, wchan);
            else
                snprintf(what, size, "%s (pid %d) is asleep (state %c)", comm, (int)procs[i].pid, state);
        }
    }
    free(in);
    free(procs);
    return result;
}

static void write_activity(int dirfd, int state, const char *what) {
    static const char *names[] = {"active", "waiting_for_input", "stalled"};
    char text[512];
    int len = snprintf(text, sizeof text, "version=1\nstate=%s\nsince_unix_ms=%lld\nblocked_on=%s\n",
                       names[state], wall_ms(), state ? what : "");
    if (len < 0 || len >= (int)sizeof text) return;
    unlinkat(dirfd, "activity.tmp", 0);
    int fd = openat(dirfd, "activity.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    give_to_owner(fd);
    if (write(fd, text, (size_t)len) != len) { close(fd); return; }
    close(fd);
    renameat(dirfd, "activity.tmp", dirfd, "activity");
}

/* ---- run ----------------------------------------------------------------------------- */

struct capped {
    int in;           /* pipe from CMD, -1 once closed */
    int out;          /* the file, -1 in the foreground */
    unsigned long long total, kept, cap;
    unsigned char *carry; /* redaction: the end of the output so far that may start a value */
    size_t carry_len;
};

static long long last_output_ms;

/* Counts `len` bytes of (redacted) output and writes what the cap still allows. */
static void keep(struct capped *c, const void *data, size_t len) {
    const char *buf = data;
    c->total += (unsigned long long)len;
    if (c->kept < c->cap) {
        unsigned long long room = c->cap - c->kept;
        size_t take = (unsigned long long)len < room ? len : (size_t)room;
        size_t done = 0;
        while (done < take) {
            ssize_t w = write(c->out, buf + done, take - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { c->cap = c->kept; break; } /* disk full: keep counting */
            done += (size_t)w;
        }
        c->kept += done;
    }
}

/* ---- redaction ------------------------------------------------------------------------
 * With --redact, the output files never hold a secret's value: the server passes the
 * patterns (a value and its encodings) on stdin, after a line with their length in bytes, one
 * `NAME HEX` line each, and every
 * occurrence becomes `[secret:NAME]` before it is written. The end of what was read is held
 * back while it could be the start of a pattern (and only then), so a value split across two
 * reads is still found and other output is written at once. The same algorithm as the
 * server's (src/task/redact.rs): leftmost match, the longest at one position. */

struct pattern { unsigned char *bytes; size_t len; char *replacement; size_t rlen; };
static struct pattern *patterns;
static size_t npatterns, longest;
static unsigned char starts[256];
static size_t *next_hit; /* per pattern: its next occurrence in the buffer being redacted */

#define MAX_PATTERN_INPUT (4u << 20)

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* Reads the patterns from stdin: a header line with their length in bytes, then exactly that
 * many bytes, read to the byte so that what follows on stdin (an attached command's input)
 * stays for CMD. 0, or -1 with `why` set. */
static int read_patterns(const char **why) {
    size_t len = 0;
    for (int digits = 0;; digits++) {
        char ch;
        ssize_t n = read(0, &ch, 1);
        if (n < 0 && errno == EINTR) { digits--; continue; }
        if (n <= 0) { *why = "the patterns' length is missing"; return -1; }
        if (ch == '\n' && digits > 0) break;
        if (ch < '0' || ch > '9' || digits >= 8) { *why = "the patterns' length is not a number"; return -1; }
        len = len * 10 + (size_t)(ch - '0');
    }
    if (len > MAX_PATTERN_INPUT) { *why = "more than 4 MiB of patterns"; return -1; }
    char *in = malloc(len ? len : 1);
    if (!in) { *why = "out of memory"; return -1; }
    for (size_t got = 0; got < len;) {
        ssize_t n = read(0, in + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { *why = "the patterns end early"; return -1; }
        got += (size_t)n;
    }
    for (size_t at = 0; at < len;) {
        char *line = in + at;
        char *end = memchr(line, '\n', len - at);
        if (!end) { *why = "a pattern line without its end"; return -1; }
        at = (size_t)(end - in) + 1;
        char *space = memchr(line, ' ', (size_t)(end - line));
        if (!space || space == line) { *why = "a pattern line without a name"; return -1; }
        for (char *p = line; p < space; p++)
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
                *why = "a pattern's name is not a variable name"; return -1;
            }
        size_t hex = (size_t)(end - space - 1);
        if (hex == 0 || hex % 2) { *why = "a pattern is not hex"; return -1; }
        struct pattern pat;
        pat.len = hex / 2;
        pat.bytes = malloc(pat.len);
        size_t name_len = (size_t)(space - line);
        pat.rlen = name_len + 9; /* "[secret:" NAME "]" */
        pat.replacement = malloc(pat.rlen + 1);
        if (!pat.bytes || !pat.replacement) { *why = "out of memory"; return -1; }
        for (size_t k = 0; k < pat.len; k++) {
            int hi = hexval(space[1 + 2 * k]), lo = hexval(space[2 + 2 * k]);
            if (hi < 0 || lo < 0) { *why = "a pattern is not hex"; return -1; }
            pat.bytes[k] = (unsigned char)(hi << 4 | lo);
        }
        snprintf(pat.replacement, pat.rlen + 1, "[secret:%.*s]", (int)name_len, line);
        struct pattern *more = realloc(patterns, (npatterns + 1) * sizeof *patterns);
        if (!more) { *why = "out of memory"; return -1; }
        patterns = more;
        patterns[npatterns++] = pat;
        starts[pat.bytes[0]] = 1;
        if (pat.len > longest) longest = pat.len;
    }
    free(in);
    next_hit = calloc(npatterns ? npatterns : 1, sizeof *next_hit);
    if (!next_hit) { *why = "out of memory"; return -1; }
    return 0;
}

/* How many bytes at the end of `d` could start a pattern (the longest suffix that is a
 * proper prefix of one). */
static size_t held_back(const unsigned char *d, size_t len) {
    size_t most = longest ? longest - 1 : 0;
    if (most > len) most = len;
    for (size_t k = most; k >= 1; k--) {
        const unsigned char *suffix = d + len - k;
        if (!starts[*suffix]) continue;
        for (size_t i = 0; i < npatterns; i++)
            if (patterns[i].len > k && !memcmp(patterns[i].bytes, suffix, k)) return k;
    }
    return 0;
}

static size_t find_from(const unsigned char *d, size_t len, size_t from, size_t i) {
    if (from >= len || patterns[i].len > len - from) return (size_t)-1;
    const unsigned char *hit = memmem(d + from, len - from, patterns[i].bytes, patterns[i].len);
    return hit ? (size_t)(hit - d) : (size_t)-1;
}

/* Writes `d` redacted up to `boundary` (through the end of a match that starts before it);
 * returns where it stopped. */
static size_t redact_out(struct capped *c, const unsigned char *d, size_t len, size_t boundary) {
    for (size_t i = 0; i < npatterns; i++) next_hit[i] = find_from(d, len, 0, i);
    size_t at = 0;
    for (;;) {
        size_t best = (size_t)-1, which = 0;
        for (size_t i = 0; i < npatterns; i++) {
            if (next_hit[i] < at) next_hit[i] = find_from(d, len, at, i);
            if (next_hit[i] < best || (next_hit[i] == best && best != (size_t)-1 && patterns[i].len > patterns[which].len)) {
                best = next_hit[i];
                which = i;
            }
        }
        if (best == (size_t)-1 || best >= boundary) break;
        keep(c, d + at, best - at);
        keep(c, patterns[which].replacement, patterns[which].rlen);
        at = best + patterns[which].len;
    }
    size_t end = boundary > at ? boundary : at;
    keep(c, d + at, end - at);
    return end;
}

/* Adds `n` bytes read from CMD: writes what is certain, holds back a possible start. */
static void redact_push(struct capped *c, const char *buf, size_t n) {
    unsigned char *d = realloc(c->carry, c->carry_len + n);
    if (!d) {
        static const char withheld[] = "[taskbox: output withheld: out of memory]\n";
        keep(c, withheld, sizeof withheld - 1);
        return;
    }
    memcpy(d + c->carry_len, buf, n);
    size_t len = c->carry_len + n;
    size_t end = redact_out(c, d, len, len - held_back(d, len));
    memmove(d, d + end, len - end);
    c->carry = d;
    c->carry_len = len - end;
}

/* The stream ended: what was held back, redacted. */
static void redact_flush(struct capped *c) {
    if (c->carry_len) redact_out(c, c->carry, c->carry_len, c->carry_len);
    c->carry_len = 0;
}

static void take(struct capped *c, const char *buf, size_t n);

static void pump(struct capped *c) {
    char buf[65536];
    ssize_t n = read(c->in, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        close(c->in);
        c->in = -1;
        if (npatterns) redact_flush(c);
        return;
    }
    take(c, buf, (size_t)n);
}

/* Output from CMD (its pipes, or its terminal): redacted when there are patterns, then kept. */
static void take(struct capped *c, const char *buf, size_t n) {
    last_output_ms = now_ms();
    if (npatterns) redact_push(c, buf, n);
    else keep(c, buf, n);
}

/* A terminal for CMD's standard input (background): a tool that prompts only on a terminal
 * (bash's `read -p`, many installers) then prints its prompt, which the server reports. Not
 * CMD's controlling terminal (O_NOCTTY, and CMD is no session leader), so nothing gets SIGHUP
 * or job-control signals from it. Canonical mode, so that end of input can be its EOF
 * character: a read already waiting in raw mode would never see it (the kernel wants at least
 * one byte there), and closing the master makes reads fail with EIO instead. Everything else a
 * terminal does is off (no echo, no signals, no line editing: `encode_input` escapes control
 * bytes with ^V and ends a long line with ^D, which hands it over without a newline), so what
 * send_input writes reaches CMD byte for byte. Returns 0, or -1 when the image has no usable
 * /dev/ptmx (the FIFO is then CMD's standard input, as before). */
static int open_terminal(int *master, int *slave) {
    *master = *slave = -1;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return -1;
    int unlock = 0;
    int s = -1;
    if (ioctl(m, TIOCSPTLCK, &unlock) == 0) {
#ifdef TIOCGPTPEER
        s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
#endif
        if (s < 0) {
            unsigned int n;
            char path[64];
            if (ioctl(m, TIOCGPTN, &n) == 0) {
                snprintf(path, sizeof path, "/dev/pts/%u", n);
                s = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
            }
        }
    }
    struct termios t;
    if (s < 0 || tcgetattr(s, &t) < 0) { if (s >= 0) close(s); close(m); return -1; }
    t.c_iflag = 0;
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag = ICANON | IEXTEN;
    t.c_cflag = (t.c_cflag & ~(tcflag_t)(CSIZE | PARENB)) | CS8 | CREAD;
    for (int k = 0; k < NCCS; k++) t.c_cc[k] = _POSIX_VDISABLE;
    t.c_cc[VEOF] = 4;    /* ^D: end of input, or a long line handed over */
    t.c_cc[VLNEXT] = 22; /* ^V: the next byte as is */
    t.c_cc[VMIN] = 1;
    tcsetattr(s, TCSANOW, &t);
    fcntl(m, F_SETFL, O_NONBLOCK);
    *master = m;
    *slave = s;
    return 0;
}

/* Bytes written to the terminal since the last line end, and the longest run handed over. */
static size_t line_fill;
#define LINE_PUSH 2048

/* `n` bytes of input as the terminal must get them (up to 2n + n / LINE_PUSH + 1 bytes):
 * while it is in canonical mode (CMD may switch it), control bytes behind ^V and a ^D every
 * LINE_PUSH bytes of a line, which a canonical terminal (4 KiB) would otherwise cut. */
static ssize_t encode_input(int slave, const char *src, ssize_t n, char *dst) {
    struct termios t;
    int canonical = tcgetattr(slave, &t) == 0 && (t.c_lflag & ICANON);
    ssize_t o = 0;
    for (ssize_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)src[k];
        if (!canonical) { dst[o++] = (char)c; continue; }
        if (c == '\n') { dst[o++] = '\n'; line_fill = 0; continue; }
        if (line_fill >= LINE_PUSH) { dst[o++] = 4; line_fill = 0; }
        if (c < 0x20 || c == 0x7f) dst[o++] = 22;
        dst[o++] = (char)c;
        line_fill++;
    }
    return o;
}

static int open_in(int dirfd, const char *name, int flags, mode_t mode) {
    int fd = openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) die(name);
    if (flags & O_CREAT) give_to_owner(fd);
    return fd;
}

/* A decimal id, all digits, below 2^31 (so never the -1 of "unchanged"). */
static int parse_id(const char *text, unsigned long *out) {
    char *end;
    if (!*text || *text < '0' || *text > '9') return 0;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return !errno && !*end && *out < 0x7fffffffUL;
}

/* `uid`'s home in /etc/passwd, into `home` ("/" when it is not there). The file is the
 * container's own: it is read only as a regular file, at most 1 MiB, without following a
 * link, so it cannot hang or flood the supervisor. */
static void home_of(unsigned long uid, char *home, size_t size) {
    snprintf(home, size, "/");
    int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return;
    struct stat sb;
    static char text[1 << 20];
    ssize_t len = 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        ssize_t n;
        while (len < (ssize_t)sizeof text - 1 && (n = read(fd, text + len, sizeof text - 1 - len)) > 0) len += n;
    }
    close(fd);
    text[len] = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        /* name:password:uid:gid:gecos:home:shell */
        char *field[7];
        int n = 0;
        for (char *p = line; n < 7; n++) {
            field[n] = p;
            p = strchr(p, ':');
            if (!p) { n++; break; }
            *p++ = 0;
        }
        unsigned long id;
        if (n >= 6 && parse_id(field[2], &id) && id == uid && field[5][0] == '/') {
            snprintf(home, size, "%s", field[5]);
            return;
        }
    }
}

/* In CMD's process, before exec: become UID:GID with GID as the only group. */
static void become(unsigned long uid, unsigned long gid, int set_home) {
    if (set_home) {
        char home[4096];
        home_of(uid, home, sizeof home);
        setenv("HOME", home, 1);
    }
    gid_t groups[1] = {(gid_t)gid};
    if (setgroups(1, groups) < 0 || setgid((gid_t)gid) < 0 || setuid((uid_t)uid) < 0) {
        fprintf(stderr, "supervise: cannot become %lu:%lu: %s\n", uid, gid, strerror(errno));
        _exit(125);
    }
    if (getuid() != (uid_t)uid || geteuid() != (uid_t)uid || getgid() != (gid_t)gid) {
        fprintf(stderr, "supervise: still not %lu:%lu after setuid\n", uid, gid);
        _exit(125);
    }
}

static void write_status(int dirfd, const char *ended_by, int status, struct capped *out,
                         struct capped *err, long long started, int durable) {
    char text[1024];
    int len = snprintf(text, sizeof text,
        "version=%d\nended_by=%s\n%s=%d\nstdout_bytes=%llu\nstdout_kept=%llu\n"
        "stderr_bytes=%llu\nstderr_kept=%llu\nstarted_unix_ms=%lld\nfinished_unix_ms=%lld\n",
        STATUS_VERSION, ended_by, WIFEXITED(status) ? "exit_code" : "signal",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
        out->total, out->kept, err->total, err->kept, started, wall_ms());
    unlinkat(dirfd, "status.tmp", 0);
    int fd = openat(dirfd, "status.tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    give_to_owner(fd);
    if (write(fd, text, (size_t)len) == len && durable) fsync(fd);
    close(fd);
    renameat(dirfd, "status.tmp", dirfd, "status");
}

static int run(int argc, char **argv) {
    const char *id = NULL, *dir = NULL, *user = NULL;
    unsigned long long cap = 1ULL << 28;
    long timeout_s = 0, grace_s = 5, stall_s = 0;
    int set_home = 0, attach = 0;
    int redact = 0;
    int i = 2;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) { i++; break; }
        if (!strcmp(argv[i], "--home")) { set_home = 1; continue; }
        if (!strcmp(argv[i], "--redact")) { redact = 1; continue; }
        if (!strcmp(argv[i], "--attach")) { attach = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "supervise: %s needs a value\n", argv[i]); return 125; }
        if (!strcmp(argv[i], "--id")) id = argv[++i];
        else if (!strcmp(argv[i], "--dir")) dir = argv[++i];
        else if (!strcmp(argv[i], "--user")) user = argv[++i];
        else if (!strcmp(argv[i], "--cap")) cap = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--timeout")) timeout_s = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--grace")) grace_s = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--stall")) stall_s = strtol(argv[++i], NULL, 10);
        else { fprintf(stderr, "supervise: unknown option %s\n", argv[i]); return 125; }
    }
    if (!id || i >= argc) { fprintf(stderr, "supervise: run needs --id and a command\n"); return 125; }
    if (redact && !dir) { fprintf(stderr, "supervise: --redact needs --dir\n"); return 125; }
    if (attach && !dir) { fprintf(stderr, "supervise: --attach needs --dir\n"); return 125; }
    if (redact) {
        const char *why = NULL;
        if (read_patterns(&why) < 0) { fprintf(stderr, "supervise: --redact: %s\n", why); return 125; }
    }
    char **cmd = argv + i;
    long long started = wall_ms();
    unsigned long uid = 0, gid = 0;
    if (user) {
        char ids[64];
        snprintf(ids, sizeof ids, "%s", user);
        char *colon = strchr(ids, ':');
        if (colon) *colon = 0;
        if (!colon || !parse_id(ids, &uid) || !parse_id(colon + 1, &gid)) {
            fprintf(stderr, "supervise: --user needs UID:GID as numbers, not %s\n", user);
            return 125;
        }
    }
    /* Not traceable (nor its memory readable) by CMD, even as root without CAP_SYS_PTRACE. */
    prctl(PR_SET_DUMPABLE, 0);

    int dirfd = -1, lockfd = -1, stdin_read = -1, stdin_keep = -1;
    int pty_master = -1, pty_slave = -1;
    struct stat fifo;
    memset(&fifo, 0, sizeof fifo);
    int ready[2] = {-1, -1};
    if (dir) {
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0) die(dir);
        struct stat dir_stat;
        if (user && fstat(dirfd, &dir_stat) == 0) {
            files_uid = dir_stat.st_uid;
            files_gid = dir_stat.st_gid;
        }
    }
    if (dir && !attach) {
        if (pipe2(ready, O_CLOEXEC) < 0) die("pipe");
        pid_t first = fork();
        if (first < 0) die("fork");
        if (first > 0) {
            /* The caller's process: report how the set-up went, then leave. */
            close(ready[1]);
            char msg[512];
            ssize_t n = read(ready[0], msg, sizeof msg - 1);
            if (n == 1 && msg[0] == 0) return 0;
            if (n > 0 && msg[0] != 0) { msg[n] = 0; fprintf(stderr, "%s", msg); }
            else fprintf(stderr, "supervise: the supervisor died during set-up\n");
            return 125;
        }
        close(ready[0]);
        setsid();
        /* Errors from here on go to the caller through the pipe. */
        dup2(ready[1], 2);
    }
    if (dir) {
        lockfd = open_in(dirfd, "lock", O_RDWR | O_CREAT | O_EXCL, 0600);
        if (flock(lockfd, LOCK_EX) < 0) die("flock");
    }
    if (dir && !attach) {
        if (mkfifoat(dirfd, "stdin", 0600) < 0) die("stdin fifo");
        stdin_read = open_in(dirfd, "stdin", O_RDONLY | O_NONBLOCK, 0);
        stdin_keep = open_in(dirfd, "stdin", O_WRONLY, 0);
        give_to_owner(stdin_read);
        if (fstat(stdin_read, &fifo) < 0) die("stdin fifo");
        /* With a terminal, the supervisor copies the FIFO to it (non-blocking reads);
         * without one, CMD reads the FIFO itself (blocking). */
        if (open_terminal(&pty_master, &pty_slave) < 0) fcntl(stdin_read, F_SETFL, 0);
    }

    /* gVisor has no child subreapers (EINVAL): the tree is then what keeps its parent links,
     * and the server's marker sweep finds what double-forked away. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0 && errno != EINVAL) die("PR_SET_CHILD_SUBREAPER");
    if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) die("pipe");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    int handled[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM};
    for (size_t k = 0; k < sizeof handled / sizeof *handled; k++) sigaction(handled[k], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct capped out = {-1, -1, 0, 0, cap, NULL, 0}, err = {-1, -1, 0, 0, cap, NULL, 0};
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    if (dir) {
        out.out = open_in(dirfd, "stdout", O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
        err.out = open_in(dirfd, "stderr", O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600);
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) die("pipe");
    }

    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (size_t k = 0; k < sizeof handled / sizeof *handled; k++) sigaction(handled[k], &dfl, NULL);
        signal(SIGPIPE, SIG_DFL);
        if (dir) {
            if (!attach) dup2(pty_slave >= 0 ? pty_slave : stdin_read, 0);
            dup2(out_pipe[1], 1);
            dup2(err_pipe[1], 2);
        }
        if (user) become(uid, gid, set_home);
        execvp(cmd[0], cmd);
        fprintf(stderr, "supervise: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    if (dir) {
        close(out_pipe[1]);
        close(err_pipe[1]);
        out.in = out_pipe[0];
        err.in = err_pipe[0];
    }
    if (dir && !attach) {
        /* With a terminal, the supervisor keeps its end of it (to see its mode). */
        if (pty_master < 0) { close(stdin_read); stdin_read = -1; }
        /* Started: hold none of the caller's streams, then tell it. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); }
        unsigned char ok = 0;
        if (write(ready[1], &ok, 1) < 0) { /* the caller went away; carry on */ }
        if (null >= 0) { dup2(null, 2); close(null); }
        close(ready[1]);
    }
    if (timeout_s > 0) alarm((unsigned)timeout_s);

    const char *ended_by = "exited";
    int main_status = 0, main_done = 0, ending = 0;
    long long kill_at = -1;
    /* Stall detection (background): after stall_s without output, what the tree does. */
    int activity = 0;
    long long assessed_at = 0;
    last_output_ms = now_ms();
    /* Input on its way from the FIFO to the terminal, encoded. */
    char raw[4096], pending[2 * sizeof raw + sizeof raw / LINE_PUSH + 2];
    ssize_t pending_len = 0, pending_off = 0;
    int input_ended = 0, master_readable = pty_master >= 0;
    for (;;) {
        struct pollfd fds[6];
        int nfds = 0, i_out = -1, i_err = -1, i_fifo = -1, i_to_pty = -1, i_from_pty = -1;
        fds[nfds++] = (struct pollfd){sigpipe_fds[0], POLLIN, 0};
        if (out.in >= 0) { i_out = nfds; fds[nfds++] = (struct pollfd){out.in, POLLIN, 0}; }
        if (err.in >= 0) { i_err = nfds; fds[nfds++] = (struct pollfd){err.in, POLLIN, 0}; }
        if (pty_master >= 0) {
            if (pending_off < pending_len) { i_to_pty = nfds; fds[nfds++] = (struct pollfd){pty_master, POLLOUT, 0}; }
            else if (stdin_read >= 0) { i_fifo = nfds; fds[nfds++] = (struct pollfd){stdin_read, POLLIN, 0}; }
            if (master_readable) { i_from_pty = nfds; fds[nfds++] = (struct pollfd){pty_master, POLLIN, 0}; }
        }
        int wait_ms = ending ? 100 : 1000;
        poll(fds, (nfds_t)nfds, wait_ms);
        if (i_out >= 0 && fds[i_out].revents) pump(&out);
        if (i_err >= 0 && fds[i_err].revents) pump(&err);
        if (i_fifo >= 0 && fds[i_fifo].revents) {
            ssize_t n = read(stdin_read, raw, sizeof raw);
            if (n > 0) { pending_len = encode_input(pty_slave, raw, n, pending); pending_off = 0; }
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                /* Every writer is gone, ours included (send_input's eof): end of input. */
                close(stdin_read);
                stdin_read = -1;
                input_ended = 1;
            }
        }
        if (i_to_pty >= 0 && fds[i_to_pty].revents) {
            ssize_t n = write(pty_master, pending + pending_off, (size_t)(pending_len - pending_off));
            if (n > 0) pending_off += n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) pending_off = pending_len; /* nobody reads */
        }
        if (i_from_pty >= 0 && fds[i_from_pty].revents) {
            /* What a process writes to its terminal is its output too. */
            char buf[4096];
            ssize_t n = read(pty_master, buf, sizeof buf);
            if (n > 0) take(&out, buf, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) master_readable = 0;
        }
        if (input_ended && pty_master >= 0 && pending_off >= pending_len) {
            /* End of input: ^D at the start of a line (a second one after a line in progress,
             * which the first hands over). */
            char eof[2] = {4, 4};
            size_t count = line_fill > 0 ? 2 : 1;
            if (write(pty_master, eof, count) < 0) { /* nobody reads: nothing to end */ }
            line_fill = 0;
            input_ended = 0; /* done: the terminal stays, so a process reading again waits */
        }

        unsigned char sigs[64];
        ssize_t got;
        while ((got = read(sigpipe_fds[0], sigs, sizeof sigs)) > 0) {
            for (ssize_t k = 0; k < got; k++) {
                int sig = sigs[k];
                if (sig == SIGCHLD) continue;
                if (sig == SIGUSR2) {
                    if (stdin_keep >= 0) { close(stdin_keep); stdin_keep = -1; }
                    continue;
                }
                /* What ended CMD: the first request that came while it still ran. */
                if (!main_done && !strcmp(ended_by, "exited"))
                    ended_by = sig == SIGALRM ? "timeout" : "signal";
                ending = 1;
                if (sig == SIGUSR1 || (sig == SIGALRM && attach)) kill_at = now_ms();
                else {
                    signal_tree(sig == SIGALRM ? SIGTERM : sig);
                    long long at = now_ms() + grace_s * 1000;
                    if (kill_at < 0 || at < kill_at) kill_at = at;
                }
            }
        }

        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (pid == child) { main_status = st; main_done = 1; }
        int none_left = pid < 0 && errno == ECHILD;

        if (main_done && !ending && (!dir || attach)) {
            /* A foreground CMD is over: so are the processes it left behind. (In the
             * background they are the execution too: a daemon it started keeps it running.) */
            ending = 1;
            if (!none_left) {
                signal_tree(SIGTERM);
                kill_at = now_ms() + grace_s * 1000;
            }
        }
        if (ending && kill_at >= 0 && now_ms() >= kill_at) signal_tree(SIGKILL);
        if (dir && stall_s > 0 && !ending) {
            long long now = now_ms();
            int silent = now - last_output_ms >= stall_s * 1000;
            if (!silent && activity != 0) {
                activity = 0;
                write_activity(dirfd, 0, "");
            } else if (silent && now - assessed_at >= 1000) {
                char what[256];
                /* As CMD's user on the file system side: root without CAP_SYS_PTRACE may not
                 * read another user's /proc/<pid>/fd or syscall, but their owner may. */
                if (user) { setfsgid((gid_t)gid); setfsuid((uid_t)uid); }
                int state = assess_tree(&fifo, what, sizeof what);
                if (user) { setfsuid(0); setfsgid(0); }
                assessed_at = now;
                /* Rewritten only on a change of state (what it waits on may vary meanwhile). */
                if (state != activity) {
                    activity = state;
                    write_activity(dirfd, state, what);
                }
            }
        }
        if (main_done && none_left) break;
    }
    /* Every writer is gone; collect what is still in the pipes. */
    long long drain_until = now_ms() + 1000;
    while ((out.in >= 0 || err.in >= 0) && now_ms() < drain_until) {
        struct pollfd fds[2];
        int nfds = 0;
        if (out.in >= 0) fds[nfds++] = (struct pollfd){out.in, POLLIN, 0};
        if (err.in >= 0) fds[nfds++] = (struct pollfd){err.in, POLLIN, 0};
        if (poll(fds, (nfds_t)nfds, 100) <= 0) break;
        for (int k = 0; k < nfds; k++)
            if (fds[k].revents) pump(fds[k].fd == out.in ? &out : &err);
    }
    if (dir) {
        /* A stream some escaped process still holds open: what was held back goes too. */
        if (npatterns) { redact_flush(&out); redact_flush(&err); }
        /* Attached, the server reads the files as soon as this exits: no need to wait for
         * the disk, unless it stopped waiting (`detached`). */
        int durable = !attach || faccessat(dirfd, "detached", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        if (durable && out.out >= 0) fsync(out.out);
        if (durable && err.out >= 0) fsync(err.out);
        write_status(dirfd, ended_by, main_status, &out, &err, started, durable);
    }
    if (WIFEXITED(main_status)) return WEXITSTATUS(main_status);
    return 128 + WTERMSIG(main_status);
}

/* ---- signal -------------------------------------------------------------------------- */

/* Whether /proc/<pid>/cmdline is `…/supervise run … --id ID …`. */
static int is_supervisor_of(long pid, char **ids, int nids) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) return 0;
    buf[len] = 0;
    char *args[16];
    int n = 0;
    for (char *p = buf; p < buf + len && n < 16; p += strlen(p) + 1) args[n++] = p;
    if (n < 4) return 0;
    const char *base = strrchr(args[0], '/');
    base = base ? base + 1 : args[0];
    if (strcmp(base, "supervise") || strcmp(args[1], "run")) return 0;
    for (int k = 2; k + 1 < n && strcmp(args[k], "--"); k++) {
        if (strcmp(args[k], "--id")) continue;
        for (int j = 0; j < nids; j++)
            if (!strcmp(args[k + 1], ids[j])) return 1;
    }
    return 0;
}

static int find_supervisors(char **ids, int nids, long *pids, int max) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid()) continue;
        if (is_supervisor_of(pid, ids, nids)) pids[n++] = pid;
    }
    closedir(d);
    return n;
}

static int signal_cmd(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "supervise: signal SIGNAME WAIT_S ID...\n"); return 2; }
    static const struct { const char *name; int sig; } names[] = {
        {"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
        {"KILL", SIGUSR1}, {"EOF", SIGUSR2},
    };
    int sig = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++)
        if (!strcmp(argv[2], names[k].name)) sig = names[k].sig;
    if (!sig) { fprintf(stderr, "supervise: unknown signal %s\n", argv[2]); return 2; }
    long wait_s = strtol(argv[3], NULL, 10);
    long pids[256];
    int n = find_supervisors(argv + 4, argc - 4, pids, 256);
    if (n == 0) return 3;
    for (int k = 0; k < n; k++) kill((pid_t)pids[k], sig);
    if (sig == SIGUSR2) return 0;
    long long until = now_ms() + wait_s * 1000;
    for (;;) {
        int alive = 0;
        for (int k = 0; k < n; k++) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%ld", pids[k]);
            struct stat sb;
            /* A zombie still has its /proc entry; its cmdline is empty, so it no longer matches. */
            if (stat(path, &sb) == 0 && is_supervisor_of(pids[k], argv + 4, argc - 4)) alive++;
        }
        if (!alive) return 0;
        if (now_ms() >= until) return 4;
        usleep(50000);
    }
}

/* ---- reap --------------------------------------------------------------------------- */

/* Field 22 of /proc/<pid>/stat: when it started, in clock ticks since boot (0 if unknown). */
static unsigned long long start_ticks(pid_t pid) {
    char text[1024];
    read_proc(pid, "stat", text, sizeof text);
    char *p = strrchr(text, ')');
    if (!p) return 0;
    /* After ") ": state is field 3; starttime is field 22, 19 fields on. */
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Whether `pid` may run the supervisor's binary: its exe link says so, or cannot be read (a
 * supervisor is not dumpable, so even root without CAP_SYS_PTRACE cannot read it). */
static int may_be_supervisor_binary(pid_t pid) {
    char path[64], exe[256];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t len = readlink(path, exe, sizeof exe - 1);
    if (len <= 0) return errno == EACCES || errno == EPERM;
    exe[len] = 0;
    return !strcmp(exe, "/.taskbox/bin/supervise");
}

static int reap_cmd(int argc, char **argv) {
    char **ids = argv + 2;
    int nids = argc - 2;
    size_t killed = 0;
    for (int round = 0; round < 10; round++) {
        struct proc *procs;
        size_t n = list_procs(&procs);
        if (!procs) break;
        char *doomed = calloc(n ? n : 1, 1);
        if (!doomed) { free(procs); break; }
        /* The container's first process: the oldest child of PID 1. */
        size_t first = n;
        for (size_t i = 0; i < n; i++)
            if (procs[i].ppid == 1 && (first == n || start_ticks(procs[i].pid) < start_ticks(procs[first].pid)))
                first = i;
        size_t found = 0;
        for (size_t i = 0; i < n; i++) {
            if (procs[i].ppid != 1 || i == first || procs[i].pid == getpid()) continue;
            if (may_be_supervisor_binary(procs[i].pid) && is_supervisor_of(procs[i].pid, ids, nids)) continue;
            doomed[i] = 1;
            found++;
        }
        /* And everything under them. */
        for (int grown = 1; grown;) {
            grown = 0;
            for (size_t i = 0; i < n; i++) {
                if (doomed[i]) continue;
                for (size_t j = 0; j < n; j++)
                    if (doomed[j] && procs[j].pid == procs[i].ppid) { doomed[i] = 1; grown = 1; found++; break; }
            }
        }
        for (size_t i = 0; i < n; i++)
            if (doomed[i]) kill(procs[i].pid, SIGKILL);
        free(doomed);
        free(procs);
        if (!found) break;
        killed += found;
        usleep(20000);
    }
    printf("%zu\n", killed);
    return 0;
}

/* ---- relay --------------------------------------------------------------------------- */

static int connect_loopback(long port, int *err) {
    struct sockaddr_in v4;
    memset(&v4, 0, sizeof v4);
    v4.sin_family = AF_INET;
    v4.sin_port = htons((unsigned short)port);
    v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof v6);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons((unsigned short)port);
    v6.sin6_addr = in6addr_loopback;
    struct { struct sockaddr *addr; socklen_t len; int family; } tries[] = {
        {(struct sockaddr *)&v4, sizeof v4, AF_INET},
        {(struct sockaddr *)&v6, sizeof v6, AF_INET6},
    };
    *err = ECONNREFUSED;
    for (size_t k = 0; k < sizeof tries / sizeof *tries; k++) {
        int fd = socket(tries[k].family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { *err = errno; continue; }
        if (connect(fd, tries[k].addr, tries[k].len) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        *err = errno;
        close(fd);
    }
    return -1;
}

/* Writes all of buf; 0 on success. */
static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w; len -= (size_t)w;
    }
    return 0;
}

static int relay_cmd(int argc, char **argv) {
    char *end;
    long port = argc == 3 ? strtol(argv[2], &end, 10) : 0;
    if (argc != 3 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "supervise: relay PORT (1-65535)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int err;
    int sock = connect_loopback(port, &err);
    if (sock < 0) {
        fprintf(stderr, "supervise: nothing answers on port %ld in the container: %s\n", port, strerror(err));
        return 111;
    }
    char buf[65536];
    int in_open = 1;
    for (;;) {
        struct pollfd fds[2] = {{sock, POLLIN, 0}, {0, in_open ? POLLIN : 0, 0}};
        if (poll(fds, in_open ? 2 : 1, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (fds[0].revents) {
            ssize_t n = read(sock, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break; /* the server closed: the exchange is over */
            if (write_all(1, buf, (size_t)n)) break;
        }
        if (in_open && fds[1].revents) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { in_open = 0; shutdown(sock, SHUT_WR); continue; }
            if (write_all(sock, buf, (size_t)n)) break;
        }
    }
    close(sock);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "run")) return run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "signal")) return signal_cmd(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "reap")) return reap_cmd(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "relay")) return relay_cmd(argc, argv);
    fprintf(stderr, "usage: supervise run --id ID [--user UID:GID [--home]] [--dir DIR [--attach] --cap BYTES --timeout S --stall S [--redact]]\n"
                    "                     [--grace S] -- CMD...\n"
                    "       supervise signal TERM|INT|HUP|QUIT|KILL|EOF WAIT_S ID...\n"
                    "       supervise reap [ID...]\n"
                    "       supervise relay PORT\n");
    return 2;
}
