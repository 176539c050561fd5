/*-------------------------------------------------------------------------
 *
 * template.h
 *		orderexp-relay's text templates and the escaping of the values put
 *		into them: none (mail), JSON string content, form encoding.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_TEMPLATE_H
#define ORDEREXP_RELAY_TEMPLATE_H

#include <stddef.h>

/* a growing NUL-terminated string */
typedef struct StrBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} StrBuf;

/* how a value is written into the template's text */
typedef enum Escape
{
	ESCAPE_NONE,				/* as it is (mail subjects and bodies, SMS text) */
	ESCAPE_JSON,				/* the inside of a JSON string literal */
	ESCAPE_FORM					/* application/x-www-form-urlencoded */
} Escape;

/* the value of a {name}, NULL when there is none */
typedef const char *(*TemplateLookup) (void *arg, const char *name);

extern void sb_append(StrBuf *b, const char *s, size_t n);
extern void sb_puts(StrBuf *b, const char *s);
extern void sb_printf(StrBuf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void sb_escaped(StrBuf *b, const char *s, Escape esc);
extern char *template_expand(const char *tmpl, TemplateLookup lookup, void *arg,
							 Escape esc);

#endif							/* ORDEREXP_RELAY_TEMPLATE_H */
