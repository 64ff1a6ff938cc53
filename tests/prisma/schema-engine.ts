/**
 * Prisma's schema engine without its native binary, which downloads from a host CI cannot reach.
 *
 * The prisma package ships the engine as WebAssembly (build/schema_engine_bg.wasm) but not its
 * JavaScript glue; @prisma/schema-engine-wasm has the glue (its imports must match the .wasm's,
 * or instantiation fails with a LinkError). The engine reaches PostgreSQL through
 * @prisma/adapter-pg, with search_path set to the URL's ?schema= as the native engine sets it.
 *
 *   tsx schema-engine.ts COMMAND SCHEMA_FILE [MIGRATIONS_DIR]
 *
 *   create   the first migration `prisma migrate dev` would write (`migrate diff --from-empty
 *            --to-schema SCHEMA_FILE --script`)
 *   deploy   apply MIGRATIONS_DIR's pending migrations (`prisma migrate deploy`)
 *   dev      what `prisma migrate dev` would do first: createMigration, or reset (and why)
 *   next     the migration `prisma migrate dev --create-only` would write
 *   history  from MIGRATIONS_DIR to the live database (`migrate diff --from-migrations
 *            --to-config-datasource --script`); no statement: no drift
 *   drift    from the live database to SCHEMA_FILE (`migrate diff --from-config-datasource
 *            --to-schema --script`); no statement: no drift
 *   pull     the schema `prisma db pull --print` would write
 *   reset    `prisma migrate reset` (without seeding): reset the database, then apply
 *            MIGRATIONS_DIR's migrations
 *   push     `prisma db push --force-reset`: reset the database, then push SCHEMA_FILE
 *
 * The database is DATABASE_URL; its ?schema= names the app's schema, as for the client. The
 * shadow database runs prisma.config.ts's `migrations.initShadowDb` first, as the CLI's does.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { PrismaPg } from "@prisma/adapter-pg";
import { bindMigrationAwareSqlAdapterFactory, ColumnTypeEnum } from "@prisma/driver-adapter-utils";
import * as glue from "@prisma/schema-engine-wasm/schema_engine_bg";
import pg from "pg";

// Where the engine leaves its panic message (the prisma CLI sets up the same registry).
const panic = { message: "", set_message: (m: string) => void (panic.message = m) };
Object.assign(globalThis, { PRISMA_WASM_PANIC_REGISTRY: panic });
process.on("uncaughtException", (error) => {
  console.error(panic.message ? `schema engine panicked: ${panic.message}` : error);
  process.exit(1);
});

const wasmFile = new URL("node_modules/prisma/build/schema_engine_bg.wasm", import.meta.url);
const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasmFile)), {
  "./schema_engine_bg.js": glue as unknown as WebAssembly.ModuleImports,
});
glue.__wbg_set_wasm(instance.exports);
(instance.exports.__wbindgen_start as () => void)();

const [command, schemaFile, migrationsDir] = process.argv.slice(2);
const config = (await import(pathToFileURL(resolve("prisma.config.ts")).href)).default;
const url = process.env.DATABASE_URL!;
const schema = new URL(url).searchParams.get("schema") ?? "public";

/** A pool on DATABASE_URL (or another database of its server) in the app's schema. */
function poolOn(database?: string): pg.Pool {
  const target = new URL(url);
  if (database) target.pathname = `/${database}`;
  return new pg.Pool({ connectionString: target.href, options: `-c search_path="${schema}"` });
}

/**
 * adapter-pg as the engine needs it. adapter-pg 7.10 throws UnsupportedNativeDataType on a
 * column of type "char" (OID 18, such as pg_class.relkind), which the engine's catalog queries
 * read: such columns are passed on as Character. Its shadow database (for migrations) would
 * connect to the main database again, as pg lets the connection string win over `database`.
 * Scripts (migrations, initShadowDb) run whole, as the native engine runs them.
 */
class PrismaPgForSchemaEngine extends PrismaPg {
  constructor(private pool: pg.Pool) {
    super(pool, { schema });
  }

  async connect() {
    // performIO and queryRaw are internals of adapter-pg 7.10 (pinned in package.json)
    const adapter: any = await super.connect();
    const { performIO, queryRaw } = adapter;
    // adapter-pg 7.10 splits a script at every ";", a DO block's included; the native engine
    // sends a migration whole, as one simple query: so does this.
    adapter.executeScript = async (script: string) => {
      try {
        await this.pool.query(script);
      } catch (error) {
        adapter.onError(error);
      }
    };
    const charColumns = new WeakMap<object, number[]>(); // keyed by the rows queryRaw passes on
    adapter.performIO = async (query: unknown) => {
      const result = await performIO.call(adapter, query);
      // A script of several statements (initShadowDb) comes back as one result per statement.
      if (Array.isArray(result)) return result;
      const found: number[] = [];
      result.fields.forEach((field: { dataTypeID: number }, i: number) => {
        if (field.dataTypeID === 18) {
          field.dataTypeID = 25; // text, which adapter-pg passes on
          found.push(i);
        }
      });
      charColumns.set(result.rows, found);
      return result;
    };
    adapter.queryRaw = async (query: unknown) => {
      const result = await queryRaw.call(adapter, query);
      for (const i of charColumns.get(result.rows) ?? []) {
        result.columnTypes[i] = ColumnTypeEnum.Character;
      }
      return result;
    };
    return adapter;
  }

  async connectToShadowDb() {
    const name = `prisma_shadow_${crypto.randomUUID().replaceAll("-", "")}`;
    await this.pool.query(`CREATE DATABASE "${name}"`);
    const shadow = poolOn(name);
    const adapter: any = await new PrismaPgForSchemaEngine(shadow).connect();
    adapter.dispose = async () => {
      // the engine is done with the shadow database
      await shadow.end();
      await this.pool.query(`DROP DATABASE "${name}"`);
    };
    return adapter;
  }
}

/** MIGRATIONS_DIR as `prisma migrate` reads it: one directory per migration, in name order. */
function migrations() {
  const dirs = readdirSync(migrationsDir).filter((d) =>
    existsSync(join(migrationsDir, d, "migration.sql")),
  );
  return {
    baseDir: migrationsDir,
    lockfile: { path: "migration_lock.toml", content: 'provider = "postgresql"\n' },
    shadowDbInitScript: config.migrations?.initShadowDb ?? "",
    migrationDirectories: dirs.sort().map((d) => ({
      path: d,
      migrationFile: {
        path: "migration.sql",
        content: {
          tag: "ok" as const,
          value: readFileSync(join(migrationsDir, d, "migration.sql"), "utf8"),
        },
      },
    })),
  };
}

const files = [{ path: schemaFile, content: readFileSync(schemaFile, "utf8") }];
const pool = poolOn();
const engine = await glue.SchemaEngine.new(
  { datamodels: files.map((f) => [f.path, f.content] as [string, string]) },
  (log: string) => process.env.DEBUG && console.error(log),
  bindMigrationAwareSqlAdapterFactory(new PrismaPgForSchemaEngine(pool)),
);
const filters = { externalTables: [], externalEnums: [] };
const live = { tag: "schemaDatasource" as const, files, configDir: process.cwd() };
const model = { tag: "schemaDatamodel" as const, files };
type Target = Parameters<typeof engine.diff>[0]["from"];
const diff = async (from: Target, to: Target) =>
  (await engine.diff({ from, to, script: true, exitCode: null, filters })).stdout ?? "";
try {
  if (command === "create") {
    process.stdout.write(await diff({ tag: "empty" }, model));
  } else if (command === "deploy") {
    const applied = await engine.applyMigrations({ migrationsList: migrations(), filters });
    console.log(applied.appliedMigrationNames.join("\n"));
  } else if (command === "dev") {
    const { action } = await engine.devDiagnostic({ migrationsList: migrations(), filters });
    console.log(action.tag === "reset" ? `reset: ${action.reason}` : action.tag);
  } else if (command === "next") {
    process.stdout.write(await diff({ tag: "migrations", ...migrations() }, model));
  } else if (command === "history") {
    process.stdout.write(await diff({ tag: "migrations", ...migrations() }, live));
  } else if (command === "drift") {
    process.stdout.write(await diff(live, model));
  } else if (command === "pull") {
    const pulled = await engine.introspect({
      schema: { files },
      baseDirectoryPath: process.cwd(),
      force: false,
      compositeTypeDepth: -1,
      namespaces: null,
    });
    process.stdout.write(pulled.schema.files.map((f) => f.content).join("\n"));
  } else if (command === "reset") {
    // What the CLI's `migrate reset` calls (its MigrateReset: reset, then applyMigrations).
    await engine.reset({ filter: filters });
    const applied = await engine.applyMigrations({ migrationsList: migrations(), filters });
    console.log(applied.appliedMigrationNames.join("\n"));
  } else if (command === "push") {
    // What the CLI's `db push --force-reset` calls: reset, then schemaPush without force.
    await engine.reset({ filter: filters });
    const pushed = await engine.schemaPush({ force: false, schema: { files }, filters });
    if (pushed.unexecutable.length || pushed.warnings.length) {
      throw new Error(`db push stopped: ${[...pushed.unexecutable, ...pushed.warnings]}`);
    }
    console.log(`${pushed.executedSteps} steps`);
  } else {
    throw new Error(`unknown command ${command}`);
  }
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  engine.free();
  await pool.end();
}
// The engine's lock timeout (10 s) would keep the process alive: exit once stdout is written.
process.stdout.write("", () => process.exit());
