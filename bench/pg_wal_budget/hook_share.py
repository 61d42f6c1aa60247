"""Reads `perf script -F ip,sym,dso` (call stacks, leaf first) of the
server's processes and prints the share of samples spent in pg_wal_budget's
hooks, excluding samples in the executor or utility code that a hook chains
to, and, as a check that the stacks were unwound, the share of samples whose
innermost frame is in the library itself."""
import collections
import sys

LIBRARY = "pg_wal_budget.so"
HOOKS = ("executor_start", "executor_end", "process_utility", "xact_callback", "subxact_callback")
CHAINED = ("standard_ExecutorStart", "standard_ExecutorEnd", "standard_ProcessUtility")


def samples(lines):
    """Yields each sample as a list of (symbol, dso), innermost first."""
    stack = []
    for line in lines:
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        symbol_and_dso = line.split(None, 1)[-1]
        symbol, _, dso = symbol_and_dso.rpartition(" (")
        stack.append((symbol, dso.rstrip(")")))
    if stack:
        yield stack


def hook_of(stack):
    """The hook a sample was taken in, or None (also when the hook chained)."""
    symbols = [symbol for symbol, _ in stack]
    for hook in HOOKS:
        prefix = f"pg_wal_budget::hooks::{hook}"
        depths = [i for i, symbol in enumerate(symbols) if symbol.startswith(prefix)]
        if depths:
            # Anything below the outermost frame of the hook that is the
            # chained executor or utility code is not the hook's own time.
            chained = any(s.startswith(CHAINED) for s in symbols[: max(depths)])
            return None if chained else hook
    return None


def main():
    total = 0
    innermost_in_library = 0
    per_hook = collections.Counter()
    for stack in samples(sys.stdin):
        total += 1
        innermost_in_library += LIBRARY in stack[0][1]
        hook = hook_of(stack)
        if hook:
            per_hook[hook] += 1
    if total == 0:
        sys.exit("no samples")
    for hook in HOOKS:
        print(f"cpu_share hook={hook} samples={per_hook[hook]} share={100 * per_hook[hook] / total:.2f}%")
    ours = sum(per_hook.values())
    print(f"cpu_share total samples={total} in_pg_wal_budget={ours} share={100 * ours / total:.2f}%")
    print(f"cpu_share check: innermost frame in {LIBRARY}: samples={innermost_in_library} "
          f"share={100 * innermost_in_library / total:.2f}% (part of the share above; "
          "if larger, the stacks were not unwound)")


main()
