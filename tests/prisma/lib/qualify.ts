/**
 * The app's own work, one prospect at a time, as the README's route calls it
 * (`import { qualifyProspect } from "@/lib/qualify"`): not part of the README. Here a
 * prospect named "hold" waits until release() (or forever), so that a test can kill or
 * fence the process while it works on a run; any other prospect takes 10 ms.
 */
const held: Array<() => void> = [];

export async function qualifyProspect(prospect: string): Promise<void> {
  if (prospect === "hold") await new Promise<void>((resolve) => held.push(resolve));
  else await new Promise((resolve) => setTimeout(resolve, 10));
}

export function release(): number {
  const count = held.length;
  for (const resolve of held.splice(0)) resolve();
  return count;
}
