"""The documentation is tested: every python block of the pages runs, every example runs, the site builds strictly.

* Pages: README.md and every ``docs/**/*.md`` (found by glob, so a new page is tested without registering it).
  Each page's python blocks run in order in a fresh process and folder (HOME too, so ``~/.numpywren/store`` is
  a scratch folder), as a reader would run them. Blocks marked ``<!-- docs-test: skip REASON -->`` are compiled
  and reported as skipped, one pytest skip each, so ``pytest -ra`` lists them all.
* Examples: every ``examples/*.py`` runs as a script (through docs/hooks.py, which the site build reuses, so
  each runs once per session) and must exit 0; each script checks its own result against numpy/scipy.
* The site: ``mkdocs build --strict`` (a broken link, a missing reference or a docstring warning fails it).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from doc_blocks import SKIP_REASONS, blocks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PAGE_TIMEOUT = 900


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _pages_with_code():
    return [pytest.param(page, id=_relative(page)) for page in PAGES
            if any(block.skip is None for block in blocks(page))]


def _skipped_blocks():
    return [pytest.param(block, id=f"{_relative(block.page)}:{block.line}")
            for page in PAGES for block in blocks(page) if block.skip is not None]


def _hooks():
    spec = importlib.util.spec_from_file_location("numpywren_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def outputs_folder(tmp_path_factory):
    """Where example runs are cached, shared by the examples' tests and the site build of this session."""
    folder = tmp_path_factory.mktemp("docs-outputs")
    old = os.environ.get("NUMPYWREN_DOCS_OUTPUTS")
    os.environ["NUMPYWREN_DOCS_OUTPUTS"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("NUMPYWREN_DOCS_OUTPUTS", None)
    else:
        os.environ["NUMPYWREN_DOCS_OUTPUTS"] = old


def run_page(page: Path, folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(folder), MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "tests" / "doc_blocks.py"), str(page)], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=PAGE_TIMEOUT)


@pytest.mark.parametrize("page", _pages_with_code())
def test_page_code_blocks_run_in_order(page, tmp_path):
    done = run_page(page, tmp_path)
    assert done.returncode == 0, f"{_relative(page)}: a code block failed\n{done.stdout[-2000:]}{done.stderr[-6000:]}"
    assert re.search(r"ran [1-9]\d* python blocks", done.stdout), done.stdout


@pytest.mark.parametrize("block", _skipped_blocks())
def test_skipped_block_compiles(block):
    assert block.skip in SKIP_REASONS, (
        f"{_relative(block.page)}:{block.line}: unknown mark {block.skip!r}: put the line "
        f"'<!-- docs-test: skip REASON -->' before the fence, REASON one of {sorted(SKIP_REASONS)}")
    block.compiled()  # a skipped block may not run here, but it must be Python
    pytest.skip(f"{_relative(block.page)}:{block.line}: docs-test: skip {block.skip} ({SKIP_REASONS[block.skip]})")


def test_a_broken_page_fails_and_names_its_line(tmp_path):
    """The runner is able to fail: a copy of a page whose second operand has the wrong shape."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    broken = text.replace("np.random.rand(2000, 3000)", "np.random.rand(2001, 3000)", 1)
    assert broken != text, "the page changed: update this test's edit"
    page = tmp_path / "broken.md"
    page.write_text(broken)
    done = run_page(page, tmp_path)
    assert done.returncode != 0
    line = broken[:broken.index("C = numpywren.matmul(A, B")].count("\n") + 1
    assert f'File "{page}", line {line}' in done.stderr, done.stderr[-3000:]
    assert "shape" in done.stderr.splitlines()[-1], done.stderr[-3000:]


def test_readme_links_resolve():
    """The README is read on GitHub, outside the site build: its relative links must name existing files."""
    text = (ROOT / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", text) if "://" not in t]
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert targets and not missing, missing


def test_every_page_in_the_docs_folder_is_found():
    names = {_relative(page) for page in PAGES}
    assert {"README.md", "docs/index.md", "docs/getting-started.md", "docs/reference/api.md"} <= names


@pytest.mark.parametrize("script", [pytest.param(p, id=p.name) for p in EXAMPLES])
def test_example_runs(script, outputs_folder):
    hooks = _hooks()
    record = hooks.run(hooks.command_for("run", _relative(script)))
    assert record["returncode"] == 0, record["output"][-2000:] + record["stderr"][-6000:]
    assert record["output"].strip(), "an example prints what it computed"


def test_examples_are_all_in_the_docs():
    text = "".join(page.read_text() for page in PAGES)
    missing = [p.name for p in EXAMPLES if f"<!-- run: examples/{p.name}" not in text]
    assert not missing, f"examples not shown in any page: {missing}"


def test_api_reference_covers_every_public_name():
    import numpywren

    text = (ROOT / "docs" / "reference" / "api.md").read_text()
    documented = {}  # public name -> the object its entry documents (entries name the defining module)
    for module, name in re.findall(r"^::: (numpywren[\w.]*)\.(\w+)$", text, flags=re.MULTILINE):
        documented[name] = getattr(importlib.import_module(module), name)
    missing = [name for name in numpywren.__all__
               if name not in documented or documented[name] is not _public(name)]
    assert not missing, missing


def _public(name):
    """What ``numpywren.<name>`` is meant to be: the object its defining module exports."""
    import numpywren

    exports = getattr(numpywren, "_EXPORTS", None)
    if exports is None:  # an eager __init__
        return getattr(numpywren, name)
    return getattr(importlib.import_module(exports[name]), name)


def test_public_names_stay_bound_after_their_modules_load():
    code = ("import numpywren\nnumpywren.lstsq\nimport numpywren.decomp_svd\n"
            "bad = [n for n in numpywren.__all__ if type(getattr(numpywren, n)).__name__ == 'module']\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=PAGE_TIMEOUT * 2,
                          env=dict(os.environ, MPLBACKEND="Agg", NO_MKDOCS_2_WARNING="1"))


def test_site_builds_in_strict_mode(outputs_folder, tmp_path):
    done = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-8000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").exists()


def test_strict_build_fails_on_a_broken_link(outputs_folder, tmp_path):
    """The strict build is able to fail: the same site plus a page (not in the nav) linking to no page."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "docs" / "guide" / "broken.md").write_text("# Broken\n\nSee [a page](no-such-page.md).\n")
    config = (ROOT / "mkdocs.yml").read_text()
    config = config.replace("docs_dir: docs", f"docs_dir: {tmp_path / 'docs'}")
    config = config.replace("  - docs/hooks.py", f"  - {ROOT / 'docs' / 'hooks.py'}")
    config = config.replace("paths: [.]", f"paths: [{ROOT}]")
    (tmp_path / "mkdocs.yml").write_text(config)
    done = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr, done.stderr[-3000:]
