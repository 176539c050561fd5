/*-------------------------------------------------------------------------
 *
 * template.c
 *		orderexp-relay's text templates: {name} replaced by a value, and
 *		the escaping of values for the text they go into.
 *
 * A template is text with {name} placeholders.  In a text template (mail,
 * SMS text, headers: no escaping) {{ and }} are literal braces, and a {
 * without a closing } within 128 bytes is literal too, as they always
 * were for mail.  In a request body template (JSON or form escaping) a
 * placeholder's name is letters, digits, _ . and - only, and every other
 * brace is literal, so that JSON's own braces need no escaping:
 * {"to":"{sms.to}","data":{"text":"{sms.text}"}} is a template.
 * The caller says where a name's value comes from (an event's fields, and
 * for the SMS sink its own sms.* names) and how values are escaped: not at
 * all for mail and SMS text, as the inside of a JSON string or form-encoded
 * for an HTTP request body.  Only the values are escaped, never the
 * template's own text: the template's author writes the JSON or form
 * syntax around the placeholders, e.g. {"to":"{sms.to}"} or to={sms.to}.
 *
 * JSON escaping writes printable ASCII as it is (with \" and \\), control
 * characters and everything beyond ASCII as \uXXXX (UTF-16, surrogate pairs
 * above U+FFFF), so that the body is ASCII whatever the receiver's idea of
 * its charset; bytes that are not UTF-8 become U+FFFD.  Form encoding is
 * the WHATWG application/x-www-form-urlencoded serializer: alphanumerics
 * and *-._ stay, a space becomes +, every other byte of the UTF-8 is %XX.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "template.h"

static size_t utf8_decode(const unsigned char *s, unsigned *cp);
static void json_escape(StrBuf *b, const char *s);
static void form_escape(StrBuf *b, const char *s);
static bool body_name(const char *s, size_t n);

void
sb_append(StrBuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			fatal(EXIT_INTERNAL, "out of memory");
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sb_puts(StrBuf *b, const char *s)
{
	sb_append(b, s, strlen(s));
}

/* append a formatted string, however long */
void
sb_printf(StrBuf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	sb_append(b, "", 0);		/* data allocated */
	if (b->len + (size_t) n + 1 > b->cap)
	{
		size_t		cap = b->cap;

		while (cap < b->len + (size_t) n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			fatal(EXIT_INTERNAL, "out of memory");
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t) n;
}

/*
 * The code point at s (not NUL) into *cp and the bytes it takes; a byte
 * that does not start a well-formed UTF-8 sequence (overlong, surrogate,
 * beyond U+10FFFF, cut short) is one byte of U+FFFD.
 */
static size_t
utf8_decode(const unsigned char *s, unsigned *cp)
{
	unsigned	c = s[0],
				min;
	size_t		n,
				i;

	if (c < 0x80)
	{
		*cp = c;
		return 1;
	}
	if ((c & 0xE0) == 0xC0)
	{
		n = 2;
		c &= 0x1F;
		min = 0x80;
	}
	else if ((c & 0xF0) == 0xE0)
	{
		n = 3;
		c &= 0x0F;
		min = 0x800;
	}
	else if ((c & 0xF8) == 0xF0)
	{
		n = 4;
		c &= 0x07;
		min = 0x10000;
	}
	else
	{
		*cp = 0xFFFD;
		return 1;
	}
	for (i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
		{
			*cp = 0xFFFD;
			return 1;
		}
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
	{
		*cp = 0xFFFD;
		return 1;
	}
	*cp = c;
	return n;
}

/* s as the inside of a JSON string literal, in ASCII */
static void
json_escape(StrBuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;
	char		tmp[16];

	while (*p)
	{
		unsigned	cp;
		size_t		n = utf8_decode(p, &cp);

		p += n;
		if (cp == '"')
			sb_append(b, "\\\"", 2);
		else if (cp == '\\')
			sb_append(b, "\\\\", 2);
		else if (cp == '\n')
			sb_append(b, "\\n", 2);
		else if (cp == '\r')
			sb_append(b, "\\r", 2);
		else if (cp == '\t')
			sb_append(b, "\\t", 2);
		else if (cp >= 0x20 && cp < 0x7F)
		{
			tmp[0] = (char) cp;
			sb_append(b, tmp, 1);
		}
		else if (cp < 0x10000)
		{
			snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
			sb_puts(b, tmp);
		}
		else
		{
			cp -= 0x10000;
			snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x",
					 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
			sb_puts(b, tmp);
		}
	}
}

/* s form-encoded (WHATWG application/x-www-form-urlencoded) */
static void
form_escape(StrBuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
	{
		char		tmp[3];

		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '*' || *p == '-' || *p == '.' || *p == '_')
			sb_append(b, (const char *) p, 1);
		else if (*p == ' ')
			sb_append(b, "+", 1);
		else
		{
			tmp[0] = '%';
			tmp[1] = hex[*p >> 4];
			tmp[2] = hex[*p & 15];
			sb_append(b, tmp, 3);
		}
	}
}

/* s appended to b, escaped as esc says */
void
sb_escaped(StrBuf *b, const char *s, Escape esc)
{
	switch (esc)
	{
		case ESCAPE_NONE:
			sb_puts(b, s);
			break;
		case ESCAPE_JSON:
			json_escape(b, s);
			break;
		case ESCAPE_FORM:
			form_escape(b, s);
			break;
	}
}

/* whether s[0..n) is a name a request body's placeholder may have */
static bool
body_name(const char *s, size_t n)
{
	size_t		i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			  (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

/*
 * TMPL with every {name} replaced by lookup(arg, name), escaped as esc
 * says ("" when lookup has no value); a malloc'd string.
 */
char *
template_expand(const char *tmpl, TemplateLookup lookup, void *arg, Escape esc)
{
	StrBuf		b = {0};
	const char *p = tmpl;
	bool		text = (esc == ESCAPE_NONE);

	sb_append(&b, "", 0);
	while (*p)
	{
		const char *close;

		if (text && p[0] == '{' && p[1] == '{')
		{
			sb_append(&b, "{", 1);
			p += 2;
		}
		else if (text && p[0] == '}' && p[1] == '}')
		{
			sb_append(&b, "}", 1);
			p += 2;
		}
		else if (p[0] == '{' && (close = strchr(p, '}')) != NULL && close - p < 128 &&
				 (text || body_name(p + 1, close - p - 1)))
		{
			char		name[128];
			const char *v;

			memcpy(name, p + 1, close - p - 1);
			name[close - p - 1] = '\0';
			v = lookup(arg, name);
			if (v)
				sb_escaped(&b, v, esc);
			p = close + 1;
		}
		else
			sb_append(&b, p++, 1);
	}
	return b.data;
}
