/**
 * Runs one README snippet the way Next.js would, without Next.js: loads the project's .env files
 * into process.env as `next start` does (with Next's own loader, @next/env), imports FILE, calls
 * its exported function NAME (register, GET, POST) and prints `@@returned-ms N` (how long the call
 * took) and one last line `@@result {"status": ..., "body": ...}` for a Response (`@@result null`
 * otherwise). Whatever the snippet logs goes before them, as it would in the server's log. A call
 * that throws prints neither: Next.js would not start ("An error occurred while loading
 * instrumentation hook").
 *
 *   tsx run-snippet.ts FILE NAME     (cwd: the app's directory, so that `@/lib/prisma` resolves
 *                                     there and its .env is the one loaded)
 */
import { pathToFileURL } from "node:url";
import nextEnv from "@next/env"; // CommonJS: its named exports are not visible to import

// `next start` loads .env, .env.production, .env.local, ... before it calls register(); the
// environment wins over them. Next's "- Environments: .env" line is left out of the log.
nextEnv.loadEnvConfig(process.cwd(), false, { info: () => {}, error: console.error });

const [file, name] = process.argv.slice(2);
const snippet = await import(pathToFileURL(file).href);
try {
  const started = performance.now();
  const result: unknown = await snippet[name]();
  console.log(`@@returned-ms ${Math.round(performance.now() - started)}`);
  const printed =
    result instanceof Response ? { status: result.status, body: await result.json() } : null;
  console.log(`@@result ${JSON.stringify(printed)}`);
} finally {
  // The pool would keep the process alive. Loaded here, not at the top: with no or a malformed
  // DATABASE_URL lib/prisma.ts throws when loaded, and the snippet must meet that itself.
  try {
    const { prisma } = await import("@/lib/prisma");
    await prisma.$disconnect();
  } catch {
    // nothing to close
  }
}
