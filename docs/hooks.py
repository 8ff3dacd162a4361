"""MkDocs hooks: outputs computed at build time, and one page per benchmark.

* ``<!-- run: examples/NAME.py -->`` in a page becomes the script's source, its printed output and the
  PNG files it wrote, all from running it during the build (figures are computed, never typed).
* ``<!-- output: python -m numpywren demo --n 1024 -->`` becomes the command's printed output.
* ``benchmarks/README.md`` (which the benchmarks append to) is split into one page per ``## name`` section,
  with that benchmark's "Latest results" subsections and its ``benchmarks/results/name*.png`` plots.

Runs are cached in ``$NUMPYWREN_DOCS_OUTPUTS`` (a folder; the test suite shares it between the examples'
tests and the build, so each example runs once per session) keyed by the command and the script's text.
A command that fails fails the build.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- (run|output): (.+?) -->[ \t]*$", re.MULTILINE)
TIMEOUT_SECONDS = 600
_memory: dict[str, dict] = {}


def command_for(kind: str, text: str) -> list[str]:
    """The argv a marker runs: ``run`` takes a script path, ``output`` a command line."""
    argv = shlex.split(text)
    if kind == "run":
        return [sys.executable, str(ROOT / argv[0]), *argv[1:]]
    return [sys.executable if argv[0] in ("python", "python3") else argv[0], *argv[1:]]


def run(argv: list[str]) -> dict:
    """Run ``argv`` from the repository root's point of view in a fresh folder; cached (see module doc).

    Returns a dict with ``returncode``, ``output`` (stdout), ``stderr``, ``folder`` (where the
    command ran, holding the files it wrote) and ``images`` (the PNG files it wrote, names in ``folder``).
    """
    key_text = json.dumps(argv[1:])
    for arg in argv[1:2]:
        if arg.endswith(".py") and Path(arg).exists():
            key_text += Path(arg).read_text()
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    if key in _memory:
        return _memory[key]
    cache = os.environ.get("NUMPYWREN_DOCS_OUTPUTS")
    base = Path(cache) if cache else _process_folder()
    record_path = base / f"{key}.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
    else:
        folder = base / key
        folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   MPLBACKEND="Agg", HOME=str(folder))
        done = subprocess.run(argv, cwd=folder, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_SECONDS)
        record = {"argv": argv, "returncode": done.returncode, "output": done.stdout, "stderr": done.stderr, "folder": str(folder),
                  "images": sorted(p.name for p in folder.glob("*.png"))}
        record_path.write_text(json.dumps(record))
    _memory[key] = record
    return record


def _process_folder() -> Path:
    """Without ``$NUMPYWREN_DOCS_OUTPUTS``, runs are cached for this process only: ``mkdocs serve`` reloads
    this module on every rebuild, so the folder is remembered in the environment (a script's run is redone
    when its text changes; restart ``mkdocs serve`` to redo them after a change to numpywren itself)."""
    folder = Path(tempfile.mkdtemp(prefix="numpywren-docs-"))
    os.environ["NUMPYWREN_DOCS_OUTPUTS"] = str(folder)
    return folder


# --- MkDocs events -------------------------------------------------------------------------------------------

def _benchmark_sections(text: str) -> tuple[str, dict[str, list[str]]]:
    """benchmarks/README.md as (introduction, {benchmark name: [its section, its result subsections]})."""
    parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
    intro, sections = parts[0], {}
    latest: list[str] = []
    for part in parts[1:]:
        name = re.match(r"## (\S+)", part).group(1)
        if name.lower() == "latest":
            latest = re.split(r"^(?=### )", part, flags=re.MULTILINE)[1:]
            continue
        sections.setdefault(name, []).append(part)
    for sub in latest:
        first = re.match(r"### ([A-Za-z_]+)", sub)
        name = first.group(1) if first else None
        if name in sections:
            sections[name].append("#" + sub)  # one level down, under the page's own results heading
    return intro, sections


def on_config(config):
    """The nav's "Benchmarks" entry becomes a section: the index, then one page per benchmark."""
    _, sections = _benchmark_sections((ROOT / "benchmarks" / "README.md").read_text())
    pages = [{name: f"benchmarks/{name}.md"} for name in sections]
    nav = config.get("nav") or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and entry.get("Benchmarks") == "benchmarks/index.md":
            nav[i] = {"Benchmarks": ["benchmarks/index.md", *pages]}
    return config


def on_files(files, config):
    from mkdocs.structure.files import File

    readme = (ROOT / "benchmarks" / "README.md").read_text()
    intro, sections = _benchmark_sections(readme)
    results = ROOT / "benchmarks" / "results"
    index = [intro.replace("# numpywren benchmarks", "# Benchmarks", 1), "\n## The benchmarks\n"]
    shown: set[str] = set()
    for name, parts in sections.items():
        title = parts[0].splitlines()[0][3:]
        body = ["# " + title, *["\n".join(parts[0].splitlines()[1:])]]
        if len(parts) > 1:
            body.append("\n## Latest results\n")
            body.extend(parts[1:])
        for png in sorted(results.glob(f"{name}*.png")):
            if png.stem == name or png.stem.startswith(name + "_"):
                body.append(f"\n![{png.stem}](results/{png.name})\n")
                shown.add(png.name)
        files.append(File.generated(config, f"benchmarks/{name}.md", content="\n".join(body)))
        index.append(f"- [{title}]({name}.md)")
    others = [png for png in sorted(results.glob("*.png")) if png.name not in shown]
    if others:
        index.append("\n## Other plots\n")
        index.extend(f"![{png.stem}](results/{png.name})\n" for png in others)
    files.append(File.generated(config, "benchmarks/index.md", content="\n".join(index) + "\n"))
    for png in sorted(results.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/results/{png.name}", abs_src_path=str(png)))
    # outputs of the pages' markers: images must be known files before pages link to them
    for file in list(files):
        if not file.src_uri.endswith(".md") or file.abs_src_path is None:
            continue
        for kind, text in MARKER.findall(Path(file.abs_src_path).read_text()):
            record = run(command_for(kind, text))
            for image in record["images"]:
                uri = _image_uri(file.src_uri, text, image)
                if files.get_file_from_path(uri) is None:
                    files.append(File.generated(config, uri, abs_src_path=str(Path(record["folder"]) / image)))
    return files


def _image_uri(page_uri: str, text: str, image: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return str(Path(page_uri).parent / "_outputs" / slug / image)


def on_page_markdown(markdown, page, config, files):
    from mkdocs.exceptions import PluginError

    def replace(match: re.Match) -> str:
        kind, text = match.group(1), match.group(2)
        record = run(command_for(kind, text))
        if record["returncode"] != 0:
            raise PluginError(f"{page.file.src_uri}: `{text}` exited with {record['returncode']}:\n"
                              + record["output"][-2000:] + record["stderr"][-3000:])
        pieces = []
        if kind == "run":
            script = text.split()[0]
            source = (ROOT / script).read_text().rstrip()
            pieces.append(f'```python title="{script}"\n{source}\n```\n')
            pieces.append(f"Running `python {text}` printed (at the build of this page):\n")
        else:
            pieces.append(f"`{text}` printed (at the build of this page):\n")
        pieces.append(f"```text\n{record['output'].rstrip()}\n```\n")
        for image in record["images"]:
            uri = _image_uri(page.file.src_uri, text, image)
            relative = os.path.relpath(uri, str(Path(page.file.src_uri).parent))
            pieces.append(f"![{image}]({relative})\n")
        return "\n".join(pieces)

    return MARKER.sub(replace, markdown)
