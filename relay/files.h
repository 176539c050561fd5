/*-------------------------------------------------------------------------
 *
 * files.h
 *		orderexp-relay's files: whole files and secret files.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_FILES_H
#define ORDEREXP_RELAY_FILES_H

#include <stdbool.h>
#include <stdio.h>

extern char *read_whole_file(const char *path);
extern bool file_is_private(FILE *f, const char *path);
extern char *read_secret_file(const char *path);

#endif							/* ORDEREXP_RELAY_FILES_H */
