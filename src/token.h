/*-------------------------------------------------------------------------
 *
 * token.h
 *		Signed extension tokens.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_TOKEN_H
#define ORDEREXP_TOKEN_H

extern void orderexp_token_check_form(const char *token);
extern void orderexp_invalid_token(const char *detail) pg_attribute_noreturn();

#endif							/* ORDEREXP_TOKEN_H */
