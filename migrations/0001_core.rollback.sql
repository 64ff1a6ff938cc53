-- Undo 0001: remove every object it installed. This drops qualification_runs
-- and the audit trail with their rows: only roll back a database you mean to empty.
DROP VIEW IF EXISTS stuck_runs;
DROP VIEW IF EXISTS active_runs;
DROP FUNCTION IF EXISTS recover_stuck_runs(interval, integer);
DROP TABLE IF EXISTS qualification_runs;
DROP FUNCTION IF EXISTS qualification_runs_touch();
DROP FUNCTION IF EXISTS stuck_runs_threshold();
DROP TABLE IF EXISTS run_recoveries;
DROP TABLE IF EXISTS stuck_runs_settings;
