-- crossbank's additions to a database that resonate.sql was just applied to, run
-- once by deploy/postgres/entrypoint.sh as the superuser, with psql variables:
--   worker_password   the password of the login role the workers and the CLI use
--   timer_interval    how often pg_cron runs resonate.process_timeouts() ('1 seconds')
--   gc_after_days     finished promises older than this are removed by resonate.gc
\set ON_ERROR_STOP on

-- The workers' and the CLI's login: resonate.sql's least-privilege role (the wire
-- entrypoints only), nothing else. It cannot call process_timeouts(); pg_cron does.
CREATE ROLE crossbank LOGIN PASSWORD :'worker_password' IN ROLE resonate_worker;

-- resonate.sql's promise search answers 501, so the operator's commands (crossbank
-- transfers, versions, status's operator record) search the promises table themselves:
-- reading it is the one thing this role may do beyond the entrypoints.
GRANT SELECT ON resonate.promises TO crossbank;

-- resonate.sql schedules process_timeouts() every 5 s. Timers are what hand a killed
-- worker's transfer to another worker when its lease runs out, so every second of
-- this interval is a second added to recovery: pg_cron 1.5+ runs jobs in seconds.
SELECT cron.schedule_in_database(
    'resonate_process_timeouts', :'timer_interval',
    'SELECT resonate.process_timeouts()', current_database());

-- Finished workflows stay until removed; process_timeouts() scans the promises
-- table, so they are removed after gc_after_days (their ledger entries stay in the banks).
SELECT cron.schedule_in_database(
    'resonate_gc', '*/10 * * * *',
    format('SELECT resonate.gc(((extract(epoch from now()) - %s * 86400) * 1000)::bigint)',
           (:'gc_after_days')::int),
    current_database());
