/*
 * kmh-agent: the guest side of the harness command channel (runs as PID 1 after /init).
 *
 * Why C and not a shell loop: under TCG every fork+exec costs ~5 ms, so a shell agent that
 * spawns helpers per command cannot meet a 10 ms round trip, cannot keep stdout and stderr apart
 * cheaply, and cannot read an exact byte count from the port (busybox tools read ahead). This
 * program forks exactly once per command, streams output as it comes, and never exits; a plain
 * `cat FILE...` is served by the forked child itself, without an exec (see plain_cat).
 *
 * Wire format, both directions: 1 byte type, 4 bytes little-endian payload length, payload.
 *   host -> guest  E argv (NUL-terminated strings)   run a command, stdin /dev/null
 *                  P path\0 mode-octal\0 data         write a file (parents created)
 *                  K signal-number                    signal the running command's process group
 *                  D (empty)                          flush new kernel log records now
 *                  Q (empty)                          sync and power off
 *   guest -> host  L one /dev/kmsg record             kernel log, streamed as it appears
 *                  R release                          ready (after the boot log)
 *                  O / W bytes                        command stdout / stderr
 *                  X exit-code                        decimal; 128+N when killed by signal N
 *                  A error-text                       upload done (empty text = success)
 *                  D (empty)                          log flushed up to now
 *
 * Usage: kmh-agent [MODULE.ko ...]  -- boot modules to load first, in dependency order.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static int port = -1;
static int kmsg = -1;

static void die(const char *what)
{
	/* PID 1 must not exit (that panics with a misleading message): report and power off. */
	fprintf(stderr, "kmh-agent: %s: %s\n", what, strerror(errno));
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("write to host");
		}
		p += n;
		len -= (size_t)n;
	}
}

static void send_frame(char type, const void *data, uint32_t len)
{
	unsigned char hdr[5] = { (unsigned char)type, len & 0xff, (len >> 8) & 0xff,
				 (len >> 16) & 0xff, (len >> 24) & 0xff };
	write_all(port, hdr, sizeof hdr);
	if (len)
		write_all(port, data, len);
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read one frame; the payload is malloc'ed and NUL-terminated for convenience. */
static int read_frame(char *type, char **payload, uint32_t *len)
{
	unsigned char hdr[5];
	if (read_all(port, hdr, sizeof hdr))
		return -1;
	*type = (char)hdr[0];
	*len = hdr[1] | (hdr[2] << 8) | (hdr[3] << 16) | ((uint32_t)hdr[4] << 24);
	*payload = malloc(*len + 1);
	if (!*payload)
		die("malloc");
	if (read_all(port, *payload, *len))
		return -1;
	(*payload)[*len] = 0;
	return 0;
}

/* Send every kernel log record not sent yet (the kmsg fd is non-blocking and keeps its place). */
static void flush_kmsg(void)
{
	char rec[8192];
	for (;;) {
		ssize_t n = read(kmsg, rec, sizeof rec);
		if (n < 0 && errno == EPIPE)
			continue; /* overwritten before we read it; go on with the next */
		if (n <= 0)
			return;
		send_frame('L', rec, (uint32_t)n);
	}
}

static void open_port(void)
{
	/* Find the port named "kmh" (no udev here, so no /dev/virtio-ports symlink). */
	for (int attempt = 0; attempt < 2000; attempt++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char path[300], name[64] = "";
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			FILE *f = fopen(path, "r");
			if (!f)
				continue;
			if (!fgets(name, sizeof name, f))
				name[0] = 0;
			fclose(f);
			if (strncmp(name, "kmh", 3) == 0 && (name[3] == '\n' || name[3] == 0)) {
				snprintf(path, sizeof path, "/dev/%s", e->d_name);
				/* A fresh port node can briefly answer ENXIO: retry. */
				port = open(path, O_RDWR | O_CLOEXEC);
				if (port >= 0) {
					closedir(d);
					return;
				}
			}
		}
		if (d)
			closedir(d);
		usleep(5000);
	}
	die("no virtio port named kmh");
}

static void load_boot_modules(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0)
			if (errno != EEXIST)
				fprintf(stderr, "kmh-agent: loading %s: %s\n", argv[i], strerror(errno));
		if (fd >= 0)
			close(fd);
	}
}

static void mkdirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
}

static void do_put(char *payload, uint32_t len)
{
	char *path = payload;
	size_t plen = strnlen(path, len);
	if (plen >= len) {
		send_frame('A', "malformed upload", 16);
		return;
	}
	char *mode_s = path + plen + 1;
	size_t mlen = strnlen(mode_s, len - plen - 1);
	char *data = mode_s + mlen + 1;
	size_t dlen = len - plen - 1 - mlen - 1;
	char tmp[4200], err[4400];
	snprintf(tmp, sizeof tmp, "%s.kmh-part", path);
	mkdirs(path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	write_all(fd, data, dlen);
	if (fchmod(fd, (mode_t)strtol(mode_s, NULL, 8)) || close(fd) || rename(tmp, path))
		goto fail;
	send_frame('A', "", 0);
	return;
fail:
	snprintf(err, sizeof err, "%s: %s", path, strerror(errno));
	send_frame('A', err, (uint32_t)strlen(err));
}

/*
 * `cat FILE...` (no options) is the harness's most frequent probe (/proc/modules, initstate):
 * the forked child copies the files itself instead of exec'ing busybox, which under TCG saves
 * the exec (~5 ms: new code to translate). It is still a child of its own, so a read that oopses
 * or hangs kills or blocks the child, never the agent. Output and exit code are busybox cat's.
 */
static int plain_cat(char **argv)
{
	if (strcmp(argv[0], "cat") && strcmp(argv[0], "/bin/cat"))
		return 0;
	for (int i = 1; argv[i]; i++)
		if (argv[i][0] == '-' || !argv[i][0])
			return 0;
	return argv[1] != NULL;
}

static int cat_files(char **argv)
{
	static char buf[65536];
	int rc = 0;
	for (int i = 1; argv[i]; i++) {
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			dprintf(2, "cat: can't open '%s': %s\n", argv[i], strerror(errno));
			rc = 1;
			continue;
		}
		ssize_t n;
		while ((n = read(fd, buf, sizeof buf)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				dprintf(2, "cat: read error: %s\n", strerror(errno));
				rc = 1;
				break;
			}
			for (ssize_t done = 0; done < n;) {
				ssize_t w = write(1, buf + done, (size_t)(n - done));
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					return 1;
				done += w;
			}
		}
		close(fd);
	}
	return rc;
}

static void do_exec(char *payload, uint32_t len, int sigfd)
{
	char *argv[256];
	int argc = 0;
	for (uint32_t i = 0; i < len && argc < 255; i += (uint32_t)strlen(payload + i) + 1)
		argv[argc++] = payload + i;
	argv[argc] = NULL;
	if (argc == 0) {
		send_frame('X', "127", 3);
		return;
	}
	int out[2], err[2];
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (chdir("/root"))
			(void)!chdir("/");
		if (plain_cat(argv))
			_exit(cat_files(argv));
		execvp(argv[0], argv);
		fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(out[1]);
	close(err[1]);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	int code = -1, exited = 0, killed = 0;
	struct pollfd fds[5] = {
		{ out[0], POLLIN, 0 }, { err[0], POLLIN, 0 }, { sigfd, POLLIN, 0 },
		{ port, POLLIN, 0 },   { kmsg, POLLIN, 0 },
	};
	char buf[65536];
	for (;;) {
		/*
		 * Done when the command exited and its pipes are drained; but after a kill request,
		 * only when its whole process group is gone: a shell dies at once while the insmod
		 * it started may be stuck in the kernel, and that must read as "still running".
		 */
		int group_alive = killed && exited && kill(-pid, 0) == 0;
		if (exited && fds[0].fd < 0 && fds[1].fd < 0 && !group_alive)
			break;
		int n = poll(fds, 5, group_alive ? 100 : exited ? 0 : -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 && group_alive) {
			kill(-pid, SIGKILL);
			continue;
		}
		if (n <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			ssize_t r = read(fds[i].fd, buf, sizeof buf);
			if (r > 0) {
				send_frame(i == 0 ? 'O' : 'W', buf, (uint32_t)r);
			} else if (r == 0 || errno != EAGAIN) {
				close(fds[i].fd);
				fds[i].fd = -1;
			}
		}
		if (fds[2].revents) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof si) > 0)
				;
			int status;
			pid_t w;
			while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
				if (w != pid)
					continue; /* an orphan reparented to us */
				exited = 1;
				code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			}
		}
		if (fds[3].revents) {
			char type, *p;
			uint32_t plen;
			if (read_frame(&type, &p, &plen))
				die("host closed the channel");
			if (type == 'K') {
				killed = 1;
				kill(-pid, atoi(p) > 0 ? atoi(p) : SIGKILL);
			} else if (type == 'D') {
				flush_kmsg(), send_frame('D', "", 0);
			}
			free(p);
		}
		if (fds[4].revents)
			flush_kmsg();
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	flush_kmsg();
	char num[16];
	int l = snprintf(num, sizeof num, "%d", code);
	send_frame('X', num, (uint32_t)l);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, text, strlen(text));
		close(fd);
	}
}

static void setup_system(void)
{
	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	mkdir("/root", 0700);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL);
	/* Boot is "quiet" for speed; from now on the console shows every report in full. */
	write_file("/proc/sys/kernel/printk", "7");
	sethostname("kmh", 3);
}

int main(int argc, char **argv)
{
	setup_system();
	load_boot_modules(argc, argv);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		die("signalfd");
	kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg < 0)
		die("/dev/kmsg");
	open_port();
	flush_kmsg();
	struct utsname u;
	uname(&u);
	send_frame('R', u.release, (uint32_t)strlen(u.release));
	for (;;) {
		/* Idle: keep streaming the kernel log, so trouble that starts between commands (a
		 * timer or work item of a module) reaches the host before the next command. */
		struct pollfd idle[2] = { { port, POLLIN, 0 }, { kmsg, POLLIN, 0 } };
		if (poll(idle, 2, -1) < 0)
			continue;
		if (idle[1].revents)
			flush_kmsg();
		if (!idle[0].revents)
			continue;
		char type, *p;
		uint32_t len;
		if (read_frame(&type, &p, &len))
			die("host closed the channel");
		switch (type) {
		case 'E':
			do_exec(p, len, sigfd);
			break;
		case 'P':
			do_put(p, len);
			break;
		case 'D':
			flush_kmsg();
			send_frame('D', "", 0);
			break;
		case 'Q':
			sync();
			reboot(RB_POWER_OFF);
			break;
		default:
			break; /* K with nothing running, or unknown: ignore */
		}
		free(p);
		/* Reap orphans that exited while idle. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		struct signalfd_siginfo si;
		while (read(sigfd, &si, sizeof si) > 0)
			;
	}
}
