"""The rules of teams, without I/O: names (T2), kinds (T1), liaison (T3, T4), review times (T5)."""
