"""The README's first command, typed as a newcomer types it: at the root of a fresh clone, in a
fresh venv.

It installs rose (an editable install: maturin builds the compiled module into the clone's
`rose/`) and runs the demo with `python -m rose`. At the root of the clone the current
directory comes first on sys.path, so the source folder `rose/` is what `import rose` finds;
the editable install makes that folder the installed package, so the program runs the build
the command just made. This test clones the repository, makes the venv with this interpreter,
runs the command line verbatim and checks what ran.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    """The two commands of the README's opening block, without their comments."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md opens with no sh block"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_readme_opens_with_install_and_test_commands():
    install, test = readme_commands()
    assert install.startswith("pip install ")
    assert "python -m rose examples/demo.py" in install
    assert test == "make test"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == test  # .ci/run calls exactly the README's test command


@pytest.mark.timeout(900)
def test_readme_install_command_in_a_fresh_clone_and_venv():
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.fail("the test clones the repository: run it from a git checkout", pytrace=False)
    install, _ = readme_commands()
    work = tempfile.mkdtemp(prefix="rose-newcomer-")
    try:
        clone = os.path.join(work, "rose")
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True, timeout=120)
        venv = os.path.join(work, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "VIRTUAL_ENV", "PYO3_", "CARGO_TARGET"))
        }
        env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
        env["VIRTUAL_ENV"] = venv
        # Only a cache: cargo's build products for this interpreter, kept between runs and
        # between clones (a fresh clone's own target/ would make every run a cold release
        # build); cargo locks it while it builds.
        version = "{}.{}".format(*sys.version_info[:2])
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        env["CARGO_TARGET_DIR"] = os.path.join(cache, "rose", f"newcomer-{version}")
        result = subprocess.run(
            ["bash", "-c", install],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=840,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "loop: rose.loop.Loop" in result.stdout, result.stdout
        # What ran is the build the command installed: the module in the clone's rose/,
        # which is also what the venv's python imports from anywhere else.
        where = "import rose._rose as m, os; print(os.path.realpath(m.__file__))"
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built = os.path.realpath(os.path.join(clone, "rose", "_rose" + suffix))
        python = os.path.join(venv, "bin", "python")
        for cwd in (clone, work):
            found = subprocess.run(
                [python, "-c", where], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
            )
            assert found.returncode == 0, found.stderr
            assert found.stdout.strip() == built
    finally:
        shutil.rmtree(work, ignore_errors=True)
