/**
 * A small node application instance for the owners benchmark (tests/perf/bench_owners.py): the
 * Python worker's twin (tests/perf/workers/worker.py), on the real Prisma 7 client with
 * @prisma/adapter-pg, through $queryRaw as an app that calls stuck-runs itself would.
 *
 * At start: stuck_runs_start(instance, life) with one life per process (kept on globalThis, as the
 * README's instrumentation.ts keeps it); creates RUNS runs and claims them; then heartbeats every
 * HEARTBEAT seconds on a timer, and reports progress only every PROGRESS seconds (its runs stay
 * "silent"). On `fenced` it tries progress and claim once more, reports what they returned and
 * exits. Every step is one JSON line on stdout with the wall clock.
 *
 * The benchmark copies this file into a generated Prisma project (its node_modules and its client
 * in generated/prisma) and runs it there with tsx:
 *
 *   DATABASE_URL=... tsx worker.ts INSTANCE RUNS HEARTBEAT PROGRESS [LIFE]
 */
const BOOT = Date.now() / 1000;
import { randomUUID } from "node:crypto";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "./generated/prisma/client";

const TABLE = "stuck_runs.qualification_runs";

function emit(ev: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ ev, t: Date.now() / 1000, ...fields }) + "\n");
}

const [instance, runsArg, heartbeatArg, progressArg, lifeArg] = process.argv.slice(2);
const g = globalThis as unknown as { stuckRunsLife?: string };
const life = (g.stuckRunsLife ??= lifeArg || randomUUID());
const heartbeatMs = Number(heartbeatArg) * 1000;
const progressMs = Number(progressArg) * 1000;
emit("boot", { boot: BOOT, pid: process.pid, life });

const prisma = new PrismaClient({
  adapter: new PrismaPg({ connectionString: process.env.DATABASE_URL!, max: 2 }),
});

const began = Date.now();
const recovered = await prisma.$queryRaw<{ run_id: string; reason: string | null }[]>`
  SELECT run_id, reason FROM stuck_runs.stuck_runs_start(${instance}, ${life})`;
const returned = Date.now();
emit("started", {
  life,
  call_ms: returned - began,
  returned: returned / 1000,
  boot: BOOT,
  recovered: recovered.map((r) => [r.run_id, r.reason]),
});

const runs: string[] = [];
for (let i = 0; i < Number(runsArg); i++) runs.push(`${instance}-${life.slice(0, 8)}-${i}`);
for (const run of runs) {
  await prisma.$executeRaw`
    INSERT INTO stuck_runs.qualification_runs (id, status, total, completed)
    VALUES (${run}, 'PROCESSING', 100, 0)`;
  const [{ ok }] = await prisma.$queryRaw<{ ok: boolean }[]>`
    SELECT stuck_runs.stuck_runs_claim(${TABLE}::regclass, ${run}, ${life}) AS ok`;
  if (!ok) emit("error", { msg: `claim of ${run} returned false` });
}
emit("claimed", { runs });

let completed = 0;
let lastProgress = Date.now();
let next = Date.now();

async function beat(): Promise<boolean> {
  let state: string;
  const sent = Date.now() / 1000;
  try {
    const [row] = await prisma.$queryRaw<{ state: string; recovered: number | null }[]>`
      SELECT state, recovered FROM stuck_runs.stuck_runs_heartbeat(${life})`;
    state = row.state;
    emit("beat", { state, recovered: row.recovered, sent });
  } catch (err) {
    emit("beat_failed", { msg: String((err as Error).message).split("\n")[0] });
    return true;
  }
  if (state === "fenced") {
    const progress: boolean[] = [];
    const claim: boolean[] = [];
    for (const run of runs) {
      const [p] = await prisma.$queryRaw<{ ok: boolean }[]>`
        SELECT stuck_runs.stuck_runs_progress(${TABLE}::regclass, ${run}, ${life}, ${completed + 1}::integer) AS ok`;
      progress.push(p.ok);
    }
    for (const run of runs) {
      const [c] = await prisma.$queryRaw<{ ok: boolean }[]>`
        SELECT stuck_runs.stuck_runs_claim(${TABLE}::regclass, ${run}, ${life}) AS ok`;
      claim.push(c.ok);
    }
    emit("fenced", { progress, claim });
    return false;
  }
  if (Date.now() - lastProgress >= progressMs) {
    completed += 1;
    for (const run of runs) {
      await prisma.$queryRaw`
        SELECT stuck_runs.stuck_runs_progress(${TABLE}::regclass, ${run}, ${life}, ${completed}::integer)`;
    }
    lastProgress = Date.now();
    emit("progress", { completed });
  }
  return true;
}

for (;;) {
  next += heartbeatMs;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
  if (!(await beat())) break;
}
await prisma.$disconnect();
process.exit(0);
