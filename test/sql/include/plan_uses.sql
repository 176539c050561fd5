-- pg_temp.plan_uses(query, index): whether the plan of query names index
-- (a whole word), for tests that check which indexes a statement uses
-- without printing plans whose other parts vary with statistics
CREATE FUNCTION pg_temp.plan_uses(query text, index text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		IF line ~ ('\m' || index || '\M') THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END;
$$;
