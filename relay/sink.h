/*-------------------------------------------------------------------------
 *
 * sink.h
 *		Where orderexp-relay delivers events: stdout, a command, a webhook,
 *		an SMTP server.
 *
 * sinks_init() after the settings are in, sink_deliver() for every event,
 * sinks_cleanup() at the end.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_SINK_H
#define ORDEREXP_RELAY_SINK_H

#include "common.h"
#include "config.h"

extern void sinks_init(void);
extern void sinks_cleanup(void);
extern bool sink_deliver(SinkType type, const Event *ev, char *err, size_t errlen);

#endif							/* ORDEREXP_RELAY_SINK_H */
