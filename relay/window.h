/*-------------------------------------------------------------------------
 *
 * window.h
 *		orderexp-relay's deliveries in flight: per sink a window of
 *		concurrent deliveries, a rate limit, and the events' leases.
 *
 * Copyright (c) 2026, orderexp developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDEREXP_RELAY_WINDOW_H
#define ORDEREXP_RELAY_WINDOW_H

#include "common.h"
#include "node.h"

extern void window_init(void);
extern int	window_room(void);
extern void window_claiming(int rows);
extern void window_claimed(Node *n, Event *evs, int nevs, double claimed_at);
extern void window_run(bool stopping);
extern double window_wake(void);
extern int	window_held(void);
extern void window_leave_queued(void);

#endif							/* ORDEREXP_RELAY_WINDOW_H */
