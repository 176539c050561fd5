/*-------------------------------------------------------------------------
 *
 * files.c
 *		orderexp-relay's files: templates and config files read whole, and
 *		secret files, which only their owner may read.
 *
 * A secret file (--webhook-secret-file, --smtp-password-file) that its
 * group or others can access at all is refused, as libpq refuses such a
 * ~/.pgpass; the check is an fstat() of the file opened, not of a name
 * that could change meanwhile.  config.c decides what a config file that
 * is not private may hold.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "files.h"

/* a file's whole text, NUL-terminated */
char *
read_whole_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *buf;
	size_t		len = 0,
				cap = 4096,
				n;

	if (f == NULL)
		fatal(EXIT_USAGE, "could not open file \"%s\": %s", path, strerror(errno));
	buf = xmalloc(cap);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0)
	{
		len += n;
		if (cap - len < 2)
		{
			cap *= 2;
			buf = realloc(buf, cap);
			if (buf == NULL)
				fatal(EXIT_INTERNAL, "out of memory");
		}
	}
	if (ferror(f))
		fatal(EXIT_USAGE, "could not read file \"%s\": %s", path, strerror(errno));
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/*
 * Whether group and others have no access at all to the file open as f,
 * by fstat() of what was opened (not of a name that may change meanwhile).
 */
bool
file_is_private(FILE *f, const char *path)
{
	struct stat st;

	if (fstat(fileno(f), &st) != 0)
		fatal(EXIT_USAGE, "could not stat file \"%s\": %s", path, strerror(errno));
	return (st.st_mode & (S_IRWXG | S_IRWXO)) == 0;
}

/* the first line of a file holding a secret, which only its owner may read */
char *
read_secret_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];

	if (f == NULL)
		fatal(EXIT_USAGE, "could not open secret file \"%s\": %s", path, strerror(errno));
	if (!file_is_private(f, path))
		fatal(EXIT_USAGE, "secret file \"%s\" has group or world access; permissions should be u=rw (0600) or less",
			  path);
	if (fgets(line, sizeof(line), f) == NULL)
		fatal(EXIT_USAGE, "secret file \"%s\" is empty", path);
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (line[0] == '\0')
		fatal(EXIT_USAGE, "secret file \"%s\" has an empty first line", path);
	return xstrdup(line);
}
