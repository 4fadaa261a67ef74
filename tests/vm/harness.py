"""heartwatch against real kernel watchdog drivers, in QEMU virtual machines.

usage: tests/vm/run [--keep] [--list] [NAME...]   (run is a wrapper around this file)

Runs every scenario in tests/vm/scenarios/ (or only the NAMEs given), one
VM at a time, and prints one line per scenario:
    PASS vm: NAME (12.3 s)
    FAIL vm: NAME: why
followed by "N passed, N failed". Exit status 1 when any failed, 2 on
usage errors. See README.md.
"""

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent / "qemu"))  # the QEMU driver both VM suites use
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import prepare  # noqa: E402
from trial import Failed, Trial  # noqa: E402


def load_scenarios():
    """Scenario modules in file-name order (the numeric prefix sets the order)."""
    scenarios = []
    for path in sorted((HERE / "scenarios").glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(f"scenario_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        scenarios.append(module)
    return scenarios


def run_one(inputs, scenario, workroot, keep):
    workdir = tempfile.mkdtemp(prefix=f"{scenario.NAME}.", dir=workroot)
    trial = Trial(inputs, scenario.NAME, workdir)
    start = time.monotonic()
    failure = None
    try:
        scenario.run(trial)
    except Failed as e:
        failure = str(e)
    except Exception:  # a bug in the scenario or harness still fails the scenario
        failure = "harness error:\n" + traceback.format_exc().rstrip()
    finally:
        trial.stop()
    took = time.monotonic() - start
    if failure is None:
        print(f"PASS vm: {scenario.NAME} ({took:.1f} s)")
        for note in trial.notes:
            print(f"    {note}")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return True
    print(f"FAIL vm: {scenario.NAME}: {failure}")
    for note in trial.notes:
        print(f"    {note}")
    for i, machine in enumerate(trial.machines):
        print(f"    --- boot {i}: {machine.describe_exit()}; console tail "
              f"(full log in {machine.console_path}):")
        for line in machine.console_tail():
            print(f"    {line}")
        stderr = machine.qemu_stderr()
        if stderr:
            print(f"    --- QEMU stderr: {stderr}")
    print(f"    ({took:.1f} s; files kept in {workdir})")
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep every scenario's directory, not only failed ones")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args()

    scenarios = load_scenarios()
    known = [s.NAME for s in scenarios]
    if args.list:
        print("\n".join(known))
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(known)}")
    if args.names:
        scenarios = [s for s in scenarios if s.NAME in args.names]

    start = time.monotonic()
    try:
        inputs = prepare.prepare()
    except prepare.PrepareError as e:
        for s in scenarios:
            print(f"FAIL vm: {s.NAME}: not run, the host could not be prepared")
        print(f"vm: prepare: {e}")
        print(f"0 passed, {len(scenarios)} failed")
        return 1
    print(f"vm: kernel {inputs.kernel.release} ({inputs.kernel.image.name}), "
          f"heartwatch features: {','.join(inputs.features) or 'none'}, "
          f"prepared in {time.monotonic() - start:.1f} s", flush=True)

    workroot = prepare.CACHE / "runs"
    workroot.mkdir(exist_ok=True)
    passed = failed = 0
    for scenario in scenarios:
        if run_one(inputs, scenario, workroot, args.keep):
            passed += 1
        else:
            failed += 1
        sys.stdout.flush()
    print(f"vm: total {time.monotonic() - start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
