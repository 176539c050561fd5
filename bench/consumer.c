/*-------------------------------------------------------------------------
 *
 * consumer.c
 *		The consumer of bench/consume.sh: one session that takes events in
 *		batches until none is left, through orderexp or through PgQ.
 *
 * Usage:  consumer CONNINFO MODE BATCH EXPECTED
 *
 * MODE is one of
 *	 claim   orderexp.claim(BATCH) then orderexp.ack(ids), what a relay did
 *			 up to 1.2 (each statement its own transaction)
 *	 batch   orderexp.next_batch(BATCH), get_batch_events(batch),
 *			 finish_batch(batch) (1.3)
 *	 pgq     pgq.next_batch('bench', 'bench'), pgq.get_batch_events(batch),
 *			 pgq.finish_batch(batch) (queue and consumer named "bench")
 *
 * Every batch is fetched whole into the client (PQexec) and every value of
 * it is touched, as a consumer that delivers the events would; the client
 * does nothing else, so that the figures are the database's.  Ends when a
 * batch comes back empty (orderexp) or there is no next batch (PgQ), and
 * prints "EVENTS BATCHES SECONDS".  Exits 1 on a failed statement or when
 * it took another number of events than EXPECTED, 2 on bad arguments.
 *
 *-------------------------------------------------------------------------
 */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static PGconn *conn;

/* run a statement with at most one text parameter; exit on failure */
static PGresult *
run(const char *sql, const char *param)
{
	PGresult   *res;

	res = PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? &param : NULL,
					   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
		PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "consumer: %s failed: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	return res;
}

/* what a consumer does with a batch: read every value (returns the bytes) */
static long
touch(const PGresult *res)
{
	long		bytes = 0;

	for (int i = 0; i < PQntuples(res); i++)
		for (int j = 0; j < PQnfields(res); j++)
			bytes += PQgetlength(res, i, j) + (PQgetvalue(res, i, j)[0] != '\0');
	return bytes;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *mode;
	char		batch_size[32];
	long		expected,
				events = 0,
				batches = 0,
				bytes = 0;
	double		t0;

	if (argc != 5 || atoi(argv[3]) <= 0 ||
		(strcmp(argv[2], "claim") != 0 && strcmp(argv[2], "batch") != 0 &&
		 strcmp(argv[2], "pgq") != 0))
	{
		fprintf(stderr, "usage: consumer CONNINFO claim|batch|pgq BATCH EXPECTED\n");
		return 2;
	}
	mode = argv[2];
	snprintf(batch_size, sizeof(batch_size), "%d", atoi(argv[3]));
	expected = atol(argv[4]);
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "consumer: %s", PQerrorMessage(conn));
		return 1;
	}

	t0 = now_s();
	for (;;)
	{
		PGresult   *res;
		int			n;

		if (strcmp(mode, "claim") == 0)
		{
			char	   *ids;
			size_t		len = 2;

			res = run("SELECT id, kind, order_key, channel, payload, attempts "
					  "FROM orderexp.claim($1::integer)", batch_size);
			n = PQntuples(res);
			if (n == 0)
			{
				PQclear(res);
				break;
			}
			bytes += touch(res);
			for (int i = 0; i < n; i++)
				len += PQgetlength(res, i, 0) + 1;
			ids = malloc(len + 1);
			strcpy(ids, "{");
			for (int i = 0; i < n; i++)
			{
				strcat(ids, PQgetvalue(res, i, 0));
				strcat(ids, i + 1 < n ? "," : "}");
			}
			PQclear(res);
			PQclear(run("SELECT orderexp.ack($1::bigint[])", ids));
			free(ids);
		}
		else
		{
			bool		pgq = strcmp(mode, "pgq") == 0;
			char		batch_id[32];

			res = pgq ? run("SELECT pgq.next_batch('bench', 'bench')", NULL)
				: run("SELECT orderexp.next_batch($1::integer)", batch_size);
			if (PQgetisnull(res, 0, 0))
			{
				PQclear(res);
				/* orderexp: no batch means nothing is due */
				break;
			}
			snprintf(batch_id, sizeof(batch_id), "%s", PQgetvalue(res, 0, 0));
			PQclear(res);
			res = pgq ? run("SELECT ev_id, ev_type, ev_extra1, ev_extra2, ev_data, ev_retry "
							"FROM pgq.get_batch_events($1::bigint)", batch_id)
				: run("SELECT id, kind, order_key, channel, payload, attempts "
					  "FROM orderexp.get_batch_events($1::bigint)", batch_id);
			n = PQntuples(res);
			bytes += touch(res);
			PQclear(res);
			PQclear(run(pgq ? "SELECT pgq.finish_batch($1::bigint)"
						: "SELECT orderexp.finish_batch($1::bigint)", batch_id));
		}
		events += n;
		batches++;
	}
	printf("%ld %ld %.6f\n", events, batches, now_s() - t0);
	PQfinish(conn);
	if (events != expected)
	{
		fprintf(stderr, "consumer: %s took %ld events, expected %ld (%ld bytes read)\n",
				mode, events, expected, bytes);
		return 1;
	}
	return 0;
}
