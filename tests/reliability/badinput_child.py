"""Runs bad-input cases in a child process: `python badinput_child.py IMPL FIRST`.

Prints one JSON line per case, from case number FIRST on, as soon as it is known: the parent
(test_bad_input.py) then knows which case was running if this process dies (an abort, a
segfault) or hangs, records it, and starts a new child after it.
"""

import asyncio
import faulthandler
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import badinput_cases  # noqa: E402


def main():
    impl, first = sys.argv[1], int(sys.argv[2])
    if impl == "rose":
        import rose

        factory = rose.new_event_loop
    else:
        factory = asyncio.new_event_loop
    warnings.simplefilter("ignore")  # ResourceWarnings of abandoned objects are not compared
    faulthandler.enable()
    cases = badinput_cases.cases()
    for index in range(first, len(cases)):
        name, func = cases[index]
        print(json.dumps({"index": index, "name": name, "start": True}), flush=True)
        result = badinput_cases.run_case(factory, func)
        print(json.dumps({"index": index, "name": name, "outcome": result}), flush=True)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
