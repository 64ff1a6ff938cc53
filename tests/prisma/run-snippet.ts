/**
 * Runs one README snippet the way Next.js would, without Next.js: imports FILE, calls its
 * exported function NAME (register, GET, POST) and prints one last line
 * `@@result {"status": ..., "body": ...}` for a Response (`@@result null` otherwise).
 * Whatever the snippet logs goes before it, as it would in the server's log.
 *
 *   tsx run-snippet.ts FILE NAME     (cwd: this directory, so that `@/lib/prisma` resolves here)
 */
import { pathToFileURL } from "node:url";
import { prisma } from "@/lib/prisma";

const [file, name] = process.argv.slice(2);
const snippet = await import(pathToFileURL(file).href);
try {
  const result: unknown = await snippet[name]();
  const printed =
    result instanceof Response ? { status: result.status, body: await result.json() } : null;
  console.log(`@@result ${JSON.stringify(printed)}`);
} finally {
  await prisma.$disconnect(); // the pool would keep the process alive
}
