-- stuck-runs: pin every function's search_path and take EXECUTE away from PUBLIC.
--
-- The schema is only known at install time (public, or the app's own schema),
-- so the pinning is done here for every function of ours in current_schema():
-- pg_catalog first so no one can shadow now() or format(), our schema next,
-- pg_temp last so a temporary table cannot stand in for ours (CVE-2018-1058).
-- Run this after any CREATE OR REPLACE FUNCTION: replacing a function resets
-- its SET clauses.
DO $harden$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
        FROM pg_catalog.pg_proc AS p
        WHERE p.pronamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident(pg_catalog.current_schema()))
          AND (p.proname LIKE 'stuck\_runs\_%' OR p.proname IN (
               'recover_stuck_runs', 'adopt_runs_table', 'unadopt_runs_table',
               'propose_runs_table_mapping', 'resume_run', 'qualification_runs_touch'))
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                                  fn, pg_catalog.current_schema());
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$harden$;
