"""The recovery benchmark's parts; tests/perf/bench_recovery.py is the command that runs them.

One module per concern, so each section reads on its own page:

- common: the targets, the shared SQL, the plan, number formatting and the report table;
- databases: the server, the benchmark's own databases and the rows loaded into them;
- commands: the runner (and psql) as child processes, as an operator would run them;
- sweep, bulk, contention, runner_line: sections 1 to 4 of the report.

Imports only go down that list (sections import common, databases and commands;
nothing here imports bench_recovery), so there are no cycles. No file name starts
with test_: pytest never collects any of it.
"""
