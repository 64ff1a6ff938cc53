// Prisma 7 reads the datasource URL here, not from schema.prisma.
import { defineConfig, env } from "prisma/config";

export default defineConfig({
  schema: "schema.prisma",
  datasource: { url: env("DATABASE_URL") },
});
