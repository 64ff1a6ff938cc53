import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "@/generated/prisma/client"; // your generator's output

// Prisma 7 no longer reads ?schema= from the URL: the adapter must be told.
const url = process.env.DATABASE_URL!;
const schema = new URL(url).searchParams.get("schema") ?? "public";

const globalForPrisma = globalThis as unknown as { prisma?: PrismaClient };
export const prisma =
  globalForPrisma.prisma ??
  new PrismaClient({ adapter: new PrismaPg({ connectionString: url }, { schema }) });
if (process.env.NODE_ENV !== "production") globalForPrisma.prisma = prisma;
