/*-------------------------------------------------------------------------
 *
 * sms.c
 *		orderexp-relay's SMS sink: one text message per event, sent
 *		through an SMS provider's HTTP API.
 *
 * The recipient is the payload field --sms-to-field (default "phone", a
 * payload column of the orders table), which must be an E.164 number: "+"
 * and 8 to 15 digits, the first not 0.  An event without one, or with
 * anything else there, can never be sent: it fails for good (the relay
 * calls orderexp.fail(..., retryable => false)), and so does one the
 * provider refuses as such (HTTP 400, 413, 422 and the like).  A transport
 * error, a 5xx and the 4xx that mean the relay's own set-up is wrong (401,
 * 403, 404...) are retried: fix the set-up and the events go out.  A 429
 * pauses the sink for its Retry-After without spending an attempt
 * (sink.c, window.c).
 *
 * The text is the kind's SMS template (--sms-text KIND=TEXT, built-in
 * defaults like the mail templates), with the event's fields.  With -v
 * the log says how many SMS segments it takes: GSM 03.38 7-bit text is
 * 160 characters in one segment and 153 a segment beyond (the characters
 * of the extension table count two), any character outside that alphabet
 * makes it UCS-2, 70 in one segment and 67 a segment beyond (UTF-16 code
 * units; a character is never split).
 *
 * Providers (--sms-provider):
 *
 * twilio	Twilio's Messages API: POST URL/2010-04-01/Accounts/ACCOUNT/
 *			Messages.json, form-encoded To, From, Body, HTTP basic auth
 *			with the account SID and the auth token.  The default when the
 *			URL's host is api.twilio.com.
 * template	any other: --sms-method (POST), --sms-content-type json or form,
 *			--sms-header NAME: VALUE, and --sms-body-template, whose
 *			{placeholders} are those of the mail templates plus sms.to,
 *			sms.from and sms.text; values are escaped for JSON strings or
 *			form encoding (template.c).  A header's value may hold
 *			{sms.token}, {sms.account} and {sms.from} (nothing from the
 *			event, so no header injection).  With --sms-account, HTTP basic
 *			auth with the account and the token.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "common.h"
#include "config.h"
#include "easy.h"
#include "sms.h"
#include "template.h"

/* most of a provider's answer kept for the failure reason */
#define RESPONSE_MAX	4096

struct SmsRequest
{
	char	   *url;
	StrBuf		body;
	struct curl_slist *headers;
	StrBuf		response;
	char		errbuf[CURL_ERROR_SIZE];	/* libcurl's words on a failure */
};

/* what a template's {name} may be: the event's fields and the sms.* names */
typedef struct Lookup
{
	const Event *ev;			/* NULL: the sms.* names only (headers) */
	const char *to;
	const char *text;
} Lookup;


static const char *lookup_value(void *arg, const char *name);
static size_t utf8_next(const unsigned char *s, unsigned *cp);
static int	gsm_septets(unsigned cp);
static void mask_number(const char *num, char *out, size_t outlen);
static size_t keep_response(char *ptr, size_t size, size_t nmemb, void *userdata);
static bool permanent_status(long status);
static void provider_message(const char *body, char *out, size_t outlen);

/* the SMS settings fit together (config_finish(), --sms given) */
void
sms_check_config(void)
{
	int			i;

	if (cfg.sms_provider == SMS_PROVIDER_DEFAULT)
	{
		const char *host = strstr(cfg.sms_url, "://") + 3;
		size_t		hostlen = strcspn(host, ":/?#");

		cfg.sms_provider = (hostlen == strlen("api.twilio.com") &&
							strncmp(host, "api.twilio.com", hostlen) == 0)
			? SMS_PROVIDER_TWILIO : SMS_PROVIDER_TEMPLATE;
	}
	if (cfg.sms_provider == SMS_PROVIDER_TWILIO)
	{
		if (cfg.sms_account == NULL || cfg.sms_token == NULL || cfg.sms_from == NULL)
			fatal(EXIT_USAGE, "--sms-provider twilio needs --sms-account, --sms-token-file (or $%s) and --sms-from",
				  ENV_SMS_TOKEN);
		if (cfg.sms_body_template || cfg.nsms_headers > 0 || cfg.sms_method || cfg.sms_content_type_set)
			fatal(EXIT_USAGE, "--sms-body-template, --sms-header, --sms-method and --sms-content-type are for --sms-provider template");
	}
	if (cfg.sms_account != NULL && cfg.sms_token == NULL)
		fatal(EXIT_USAGE, "--sms-account needs the token: --sms-token-file (or $%s)", ENV_SMS_TOKEN);
	for (i = 0; i < cfg.nsms_headers; i++)
		if (strstr(cfg.sms_headers[i], "{sms.token}") != NULL && cfg.sms_token == NULL)
			fatal(EXIT_USAGE, "--sms-header \"%.*s\" uses {sms.token}, which needs --sms-token-file (or $%s)",
				  (int) strcspn(cfg.sms_headers[i], ":"), cfg.sms_headers[i], ENV_SMS_TOKEN);
}

/* E.164: "+", then 8 to 15 digits, the first not 0 */
bool
sms_valid_number(const char *s)
{
	size_t		n;

	if (s == NULL || s[0] != '+' || s[1] < '1' || s[1] > '9')
		return false;
	for (n = 1; s[n]; n++)
		if (s[n] < '0' || s[n] > '9')
			return false;
	return n - 1 >= 8 && n - 1 <= 15;
}

static const char *
lookup_value(void *arg, const char *name)
{
	Lookup	   *l = arg;

	if (strcmp(name, "sms.to") == 0)
		return l->to;
	if (strcmp(name, "sms.text") == 0)
		return l->text;
	if (strcmp(name, "sms.from") == 0)
		return cfg.sms_from ? cfg.sms_from : "";
	if (strcmp(name, "sms.account") == 0)
		return cfg.sms_account ? cfg.sms_account : "";
	/* the token goes into headers, never into a body built from events */
	if (strcmp(name, "sms.token") == 0)
		return l->ev == NULL && cfg.sms_token ? cfg.sms_token : "";
	return l->ev ? event_field(l->ev, name) : NULL;
}

/* ---------------------------------------------------------------------
 * segments
 * ---------------------------------------------------------------------
 */

/* the code point at s and its length; a byte that is not UTF-8 is U+FFFD */
static size_t
utf8_next(const unsigned char *s, unsigned *cp)
{
	size_t		n,
				i;
	unsigned	c = s[0];

	if (c < 0x80)
	{
		*cp = c;
		return 1;
	}
	n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
	if (n == 0)
	{
		*cp = 0xFFFD;
		return 1;
	}
	c &= 0x3F >> (n - 1);
	for (i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
		{
			*cp = 0xFFFD;
			return 1;
		}
		c = (c << 6) | (s[i] & 0x3F);
	}
	*cp = c;
	return n;
}

/*
 * Septets of CP in the GSM 03.38 default alphabet: 1 for the basic table,
 * 2 for the extension table (escape + character), 0 when it has none.
 */
static int
gsm_septets(unsigned cp)
{
	/* the basic table's characters beyond printable ASCII, as code points */
	static const unsigned basic[] = {
		'\n', '\r', 0x00A3, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7,
		0x00D8, 0x00F8, 0x00C5, 0x00E5, 0x0394, 0x03A6, 0x0393, 0x039B, 0x03A9,
		0x03A0, 0x03A8, 0x03A3, 0x0398, 0x039E, 0x00C6, 0x00E6, 0x00DF, 0x00C9,
		0x00A4, 0x00A1, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, 0x00BF, 0x00E4,
		0x00F6, 0x00F1, 0x00FC, 0x00E0
	};
	size_t		i;

	/* printable ASCII is basic but for `, and ^ { } [ ] ~ | \ (extension) */
	if (cp >= 0x20 && cp < 0x7F)
	{
		if (cp == '`')
			return 0;
		if (strchr("^{}[]~|\\", (int) cp))
			return 2;
		return 1;
	}
	if (cp == 0x0C || cp == 0x20AC)	/* form feed, euro sign */
		return 2;
	for (i = 0; i < sizeof(basic) / sizeof(basic[0]); i++)
		if (basic[i] == cp)
			return 1;
	return 0;
}

/*
 * How many SMS segments TEXT takes; *ucs2 says whether it must go as UCS-2,
 * *units how long it is in septets (GSM-7) or UTF-16 code units (UCS-2).
 * Segments of a long message are filled one character at a time, so that
 * an escape pair or a surrogate pair is never split.
 */
int
sms_segments(const char *text, bool *ucs2, int *units)
{
	const unsigned char *p;
	int			total = 0,
				segments = 1,
				fill = 0,
				single,
				multi;

	*ucs2 = false;
	for (p = (const unsigned char *) text; *p;)
	{
		unsigned	cp;

		p += utf8_next(p, &cp);
		if (gsm_septets(cp) == 0)
			*ucs2 = true;
	}
	single = *ucs2 ? 70 : 160;
	multi = *ucs2 ? 67 : 153;
	for (p = (const unsigned char *) text; *p;)
	{
		unsigned	cp;
		int			w;

		p += utf8_next(p, &cp);
		w = *ucs2 ? (cp > 0xFFFF ? 2 : 1) : gsm_septets(cp);
		total += w;
		if (fill + w > multi)
		{
			segments++;
			fill = 0;
		}
		fill += w;
	}
	*units = total;
	if (total <= single)
		return total == 0 ? 0 : 1;
	return segments;
}

/* a number for the log: +491******67 */
static void
mask_number(const char *num, char *out, size_t outlen)
{
	size_t		n = strlen(num),
				i;

	snprintf(out, outlen, "%s", num);
	for (i = 4; i + 2 < n && i < outlen - 1; i++)
		out[i] = '*';
}

/* ---------------------------------------------------------------------
 * the request
 * ---------------------------------------------------------------------
 */
static size_t
keep_response(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	StrBuf	   *b = userdata;
	size_t		n = size * nmemb;

	if (b->len < RESPONSE_MAX)
		sb_append(b, ptr, n < RESPONSE_MAX - b->len ? n : RESPONSE_MAX - b->len);
	return n;
}

/*
 * Set up C to send EV's SMS; NULL when the event can never be sent (the
 * reason in err: a missing or invalid number, an empty text), which is a
 * permanent failure.
 */
SmsRequest *
sms_request(CURL *c, const Event *ev, char *err, size_t errlen)
{
	const char *to = event_field(ev, cfg.sms_to_field);
	const Template *t = template_for(ev->kind);
	SmsRequest *req;
	Lookup		l;
	char	   *text,
				masked[40];
	bool		ucs2;
	int			units,
				segments;

	if (to == NULL || *to == '\0')
	{
		snprintf(err, errlen, "sms: no recipient: the event has no field \"%s\"", cfg.sms_to_field);
		return NULL;
	}
	if (!sms_valid_number(to))
	{
		snprintf(err, errlen, "sms: invalid phone number in field \"%s\": E.164 expected (+ and 8 to 15 digits)",
				 cfg.sms_to_field);
		return NULL;
	}
	l.ev = ev;
	l.to = to;
	l.text = "";
	text = template_expand(t->sms, lookup_value, &l, ESCAPE_NONE);
	if (text[0] == '\0')
	{
		free(text);
		snprintf(err, errlen, "sms: the text of kind %s is empty", ev->kind);
		return NULL;
	}
	l.text = text;
	segments = sms_segments(text, &ucs2, &units);
	if (cfg.verbose > 0)
	{
		mask_number(to, masked, sizeof(masked));
		lognode(LOG_INFO, 0, ev->id, "sms", "event %lld: SMS to %s, %d segment%s (%s, %d %s)",
				ev->id, masked, segments, segments == 1 ? "" : "s",
				ucs2 ? "UCS-2" : "GSM-7", units, ucs2 ? "UTF-16 units" : "septets");
	}

	req = xmalloc(sizeof(SmsRequest));
	memset(req, 0, sizeof(*req));
	curl_easy_reset(c);
	if (cfg.sms_provider == SMS_PROVIDER_TWILIO)
	{
		StrBuf		url = {0};
		size_t		n = strlen(cfg.sms_url);

		sb_append(&url, cfg.sms_url, n > 0 && cfg.sms_url[n - 1] == '/' ? n - 1 : n);
		sb_puts(&url, "/2010-04-01/Accounts/");
		sb_escaped(&url, cfg.sms_account, ESCAPE_FORM);
		sb_puts(&url, "/Messages.json");
		req->url = url.data;
		sb_puts(&req->body, "To=");
		sb_escaped(&req->body, to, ESCAPE_FORM);
		sb_puts(&req->body, "&From=");
		sb_escaped(&req->body, cfg.sms_from, ESCAPE_FORM);
		sb_puts(&req->body, "&Body=");
		sb_escaped(&req->body, text, ESCAPE_FORM);
		req->headers = curl_slist_append(req->headers, "Content-Type: application/x-www-form-urlencoded");
		req->headers = curl_slist_append(req->headers, "Accept: application/json");
	}
	else
	{
		const char *tmpl = cfg.sms_body_template ? cfg.sms_body_template
			: cfg.sms_json ? "{\"to\":\"{sms.to}\",\"from\":\"{sms.from}\",\"text\":\"{sms.text}\"}"
			: "to={sms.to}&from={sms.from}&text={sms.text}";
		char	   *body = template_expand(tmpl, lookup_value, &l, cfg.sms_json ? ESCAPE_JSON : ESCAPE_FORM);
		Lookup		hl = {NULL, to, ""};
		int			i;

		req->url = xstrdup(cfg.sms_url);
		sb_puts(&req->body, body);
		free(body);
		req->headers = curl_slist_append(req->headers, cfg.sms_json
										 ? "Content-Type: application/json"
										 : "Content-Type: application/x-www-form-urlencoded");
		for (i = 0; i < cfg.nsms_headers; i++)
		{
			char	   *h = template_expand(cfg.sms_headers[i], lookup_value, &hl, ESCAPE_NONE);

			req->headers = curl_slist_append(req->headers, h);
			free(h);
		}
		if (cfg.sms_method && strcmp(cfg.sms_method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, cfg.sms_method);
	}
	free(text);
	sb_append(&req->body, "", 0);
	req->headers = curl_slist_append(req->headers, "Expect:");

	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body.data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) req->body.len);
	if (cfg.sms_account)
	{
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, cfg.sms_account);
		curl_easy_setopt(c, CURLOPT_PASSWORD, cfg.sms_token);
	}
	curl_easy_setopt(c, CURLOPT_USERAGENT, "orderexp-relay/" RELAY_VERSION);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (cfg.timeout * 1000));
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_response);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &req->response);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, req->errbuf);
	set_protocols(c, "http,https", CURLPROTO_HTTP | CURLPROTO_HTTPS);
	curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, set_cloexec);
	return req;
}

/*
 * A 4xx that says this message can never be sent (400 Bad Request, 413,
 * 422...), not one about the relay's own set-up (credentials, URL, method)
 * or the provider's load, which are retried.
 */
static bool
permanent_status(long status)
{
	switch (status)
	{
		case 401:				/* credentials */
		case 403:
		case 404:				/* URL */
		case 405:				/* method */
		case 407:				/* proxy credentials */
		case 408:				/* request time-out */
		case 409:				/* conflict */
		case 425:				/* too early */
		case 429:				/* too many requests */
			return false;
	}
	return status >= 400 && status < 500;
}

/*
 * The provider's own words from an error answer: the "message" of a JSON
 * body (Twilio's {"code": 21211, "message": "The 'To' number ...", ...}),
 * else the body's first line; one line, at most 200 bytes.
 */
static void
provider_message(const char *body, char *out, size_t outlen)
{
	const char *m = strstr(body, "\"message\"");
	size_t		o = 0,
				max = outlen - 1 < 200 ? outlen - 1 : 200;

	if (m != NULL && (m = strchr(m + 9, '"')) != NULL)
	{
		for (m++; *m && *m != '"' && o < max; m++)
		{
			if (*m == '\\' && m[1] != '\0')
				m++;
			out[o++] = ((unsigned char) *m < 32) ? ' ' : *m;
		}
	}
	else
	{
		for (m = body; *m && *m != '\n' && *m != '\r' && o < max; m++)
			out[o++] = ((unsigned char) *m < 32) ? ' ' : *m;
	}
	out[o] = '\0';
}

/* what the finished transfer of REQ on C (libcurl's RC) means for the event */
Outcome
sms_result(SmsRequest *req, CURL *c, CURLcode rc, char *err, size_t errlen)
{
	long		status = 0;
	char		said[256];

	if (rc != CURLE_OK)
	{
		snprintf(err, errlen, "sms: %s", req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc));
		return OUTCOME_RETRY;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status <= 299)
		return OUTCOME_DELIVERED;
	sb_append(&req->response, "", 0);
	provider_message(req->response.data, said, sizeof(said));
	snprintf(err, errlen, "sms: HTTP status %ld%s%s%s", status,
			 said[0] ? " (provider said: " : "", said, said[0] ? ")" : "");
	return permanent_status(status) ? OUTCOME_PERMANENT : OUTCOME_RETRY;
}

void
sms_request_free(SmsRequest *req)
{
	if (req == NULL)
		return;
	free(req->url);
	free(req->body.data);
	free(req->response.data);
	curl_slist_free_all(req->headers);
	free(req);
}
