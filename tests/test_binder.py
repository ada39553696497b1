"""The README's Binder link opens the quickstart, and binder/ installs this repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\(?(https://mybinder\.org/v2/gh/[^)\s]+)\)?")


def _launch_links() -> list[str]:
    return LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_launch_link_opens_the_quickstart_in_lab() -> None:
    links = _launch_links()
    assert links, "README.md has no https://mybinder.org/v2/gh/... launch link"
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert query.get("urlpath") == ["lab/tree/notebooks/quickstart.ipynb"], link
    assert (ROOT / "notebooks" / "quickstart.ipynb").is_file()


def test_binder_installs_this_repository() -> None:
    lines = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    wanted = [line.split("#")[0].strip() for line in lines]
    # repo2docker runs pip from the repository root: "." is this project's pyproject.toml.
    assert "." in wanted, wanted
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "mlops-nb"
    runtime = (ROOT / "binder" / "runtime.txt").read_text(encoding="utf-8").strip()
    assert runtime.startswith("python-"), runtime
    assert runtime.removeprefix("python-") in SpecifierSet(project["requires-python"])
