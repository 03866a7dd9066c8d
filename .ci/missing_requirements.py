"""Exit 1, listing them on stderr, when this interpreter lacks anything `make` needs.

The Makefile runs it with an interpreter you chose (PYTHON=..., or an active conda env) and
installs the project into that interpreter only when something is missing: rine itself, a
dependency of pyproject.toml (with its dev extra) at a version the pins allow, or pypoman
(installed apart with --no-deps, see the Makefile). Nothing is installed by this script.
"""

import sys
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
EXTRA = ["pypoman>=1.1"]  # installed with --no-deps by the Makefile


def requirements() -> list[str]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib  # Python 3.10: pip's copy of the same parser
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"], *EXTRA]


def missing() -> list[str]:
    try:
        from packaging.requirements import Requirement  # a dependency of lightning: absent means not installed
    except ModuleNotFoundError:
        return ["packaging (and so, most likely, everything else)"]
    found = []
    try:
        metadata.version("rine")
    except metadata.PackageNotFoundError:
        found.append("rine")
    for line in requirements():
        requirement = Requirement(line)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            found.append(line)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{line} (found {version})")
    return found


if __name__ == "__main__":
    lacking = missing()
    if lacking:
        print(f"{sys.executable} lacks: {', '.join(lacking)}", file=sys.stderr)
        sys.exit(1)
