"""Register an editable install in the ament index of its prefix (a script for scripts/setup.sh).

``pip install -e .`` skips setup.py's ``data_files``, so after ``make`` the venv's ``share/`` had no
``irstd_ros`` entry: ``ament_index_python``, ``ros2 launch irstd_ros ...`` and ``ros2 run`` could not
find the package. This links each of those files into the prefix (symlinks to the work tree, so edits
stay live, as the editable install's code does). The list is setup.py's own, read by running it with
``setuptools.setup`` captured.

    python scripts/link_share.py PREFIX      # e.g. .venv
"""
from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import setuptools


def data_files(repo: Path) -> list:
    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(repo)
        runpy.run_path(str(repo / "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        setuptools.setup = real
    return captured.get("data_files", [])


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    prefix, repo = Path(args[0]).resolve(), Path(__file__).resolve().parents[1]
    n = 0
    for dest, files in data_files(repo):
        target_dir = prefix / dest
        target_dir.mkdir(parents=True, exist_ok=True)
        for old in target_dir.iterdir():  # links to files the work tree no longer has
            if old.is_symlink() and not old.exists():
                old.unlink()
        for f in files:
            src, dst = repo / f, target_dir / Path(f).name
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(src)
            n += 1
    print(f"link_share: {n} files of irstd_ros linked into {prefix} (ament index, share/, lib/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
