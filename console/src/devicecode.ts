/** Normalises what a person types: upper case, no spaces, the dash after four characters. */
export function normaliseUserCode(v: string): string {
  const c = v.toUpperCase().replace(/[^A-Z0-9]/g, "");
  return c.length > 4 ? `${c.slice(0, 4)}-${c.slice(4, 8)}` : c;
}
