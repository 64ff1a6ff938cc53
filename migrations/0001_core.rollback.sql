-- Undo 0001: remove every object it installed. The built-in qualification_runs
-- goes with its rows (only when stuck-runs created it: an application's own
-- table is never dropped); the audit trail goes too.
DO $drop_builtin$
BEGIN
    IF EXISTS (SELECT FROM stuck_runs_tables AS t
               WHERE t.managed
                 AND t.table_name = to_regclass(format('%I.qualification_runs', current_schema()))) THEN
        DROP TABLE qualification_runs;
    END IF;
END
$drop_builtin$;
DROP VIEW IF EXISTS stuck_runs;
DROP VIEW IF EXISTS active_runs;
DROP FUNCTION IF EXISTS recover_stuck_runs(interval, integer);
DROP FUNCTION IF EXISTS stuck_runs_list(interval);
DROP FUNCTION IF EXISTS stuck_runs_sweep_sql(stuck_runs_tables);
DROP FUNCTION IF EXISTS stuck_runs_time_sql(regclass, text, text);
DROP FUNCTION IF EXISTS stuck_runs_now_sql(regclass, text);
DROP FUNCTION IF EXISTS stuck_runs_count_sql(text);
DROP FUNCTION IF EXISTS stuck_runs_literals(text[]);
DROP FUNCTION IF EXISTS stuck_runs_qualified_name(regclass);
DROP FUNCTION IF EXISTS stuck_runs_threshold();
DROP FUNCTION IF EXISTS propose_runs_table_mapping(regclass);
DROP FUNCTION IF EXISTS unadopt_runs_table(regclass, boolean);
DROP FUNCTION IF EXISTS adopt_runs_table(regclass, text, text, text, text, text, text, text, text, text[], text, text);
DROP FUNCTION IF EXISTS stuck_runs_index_ddl(regclass);
DROP FUNCTION IF EXISTS stuck_runs_index_name(regclass);
DROP FUNCTION IF EXISTS stuck_runs_column_type(regclass, text);
DROP FUNCTION IF EXISTS qualification_runs_touch();
DROP FUNCTION IF EXISTS stuck_runs_builtin_missing_columns(regclass);
DROP TABLE IF EXISTS run_recoveries;
DROP TABLE IF EXISTS stuck_runs_tables;
DROP TABLE IF EXISTS stuck_runs_settings;
