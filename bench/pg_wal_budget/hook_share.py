"""Reads `perf script -F ip,sym` (call stacks, leaf first) of the server's
processes and prints the share of samples spent in pg_wal_budget's hooks,
excluding samples in the executor or utility code that a hook chains to."""
import collections
import sys

HOOKS = ("executor_start", "executor_end", "process_utility", "xact_callback", "subxact_callback")
CHAINED = ("standard_ExecutorStart", "standard_ExecutorEnd", "standard_ProcessUtility")


def stacks(lines):
    stack = []
    for line in lines:
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        fields = line.split(None, 1)
        stack.append(fields[-1])
    if stack:
        yield stack


def main():
    total = 0
    per_hook = collections.Counter()
    for stack in stacks(sys.stdin):
        total += 1
        for depth, frame in enumerate(stack):
            hook = next((h for h in HOOKS if frame.startswith(f"pg_wal_budget::hooks::{h}")), None)
            if hook is None:
                continue
            # The outermost hook frame; anything chained below it is not ours.
            outer = max(i for i, f in enumerate(stack) if f.startswith(f"pg_wal_budget::hooks::{hook}"))
            if not any(f.startswith(CHAINED) for f in stack[:outer]):
                per_hook[hook] += 1
            break
    if total == 0:
        sys.exit("no samples")
    ours = sum(per_hook.values())
    for hook in HOOKS:
        print(f"cpu_share hook={hook} samples={per_hook[hook]} share={100 * per_hook[hook] / total:.2f}%")
    print(f"cpu_share total samples={total} in_pg_wal_budget={ours} share={100 * ours / total:.2f}%")


main()
