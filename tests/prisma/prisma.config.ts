import { defineConfig, env } from "prisma/config";

export default defineConfig({
  schema: "schema.prisma",
  datasource: { url: env("DATABASE_URL") },
  experimental: { externalTables: true }, // Prisma 7 accepts initShadowDb only with it
  migrations: {
    // Only with the partialIndexes preview: the functions the sweep index's predicate calls
    // (for an enum, text or varchar status), for the shadow database `prisma migrate dev`
    // replays the migrations in.
    initShadowDb: `
      CREATE SCHEMA IF NOT EXISTS stuck_runs;
      CREATE OR REPLACE FUNCTION stuck_runs.stuck_runs_label(anyenum) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS 'SELECT pg_catalog.textin(pg_catalog.enum_out($1))';
      CREATE OR REPLACE FUNCTION stuck_runs.stuck_runs_label(text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT $1';
      CREATE OR REPLACE FUNCTION stuck_runs.stuck_runs_label(varchar) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT $1::pg_catalog.text';`,
  },
});
