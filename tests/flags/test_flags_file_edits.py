"""`flags kill/restore/rollout/schedule` edit only what they change (issue 11, item 9): a YAML file keeps its
comments and layout, weights keep the scale they were written in, a JSON file keeps its indentation."""

from __future__ import annotations

import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rollwise.flags.evaluator import FlagSet
from support.common import EXAMPLES

EXAMPLE = EXAMPLES / "flags" / "checkout.yaml"


def flags(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "rollwise", "flags", *args, "-r", "test", "-a", "ana"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def test_yaml_keeps_comments_layout_and_weight_scale(tmp_path: Path) -> None:
    path = tmp_path / "checkout.yaml"
    shutil.copy(EXAMPLE, path)
    original = path.read_text()
    flags("rollout", "new-checkout", "--file", str(path), "--percent", "30")
    removed, added = changed_lines(original, path.read_text())
    assert removed == ['        - ["on", 0]', '        - ["off", 100]']  # weights keep their total of 100
    assert added[:2] == ['        - ["on", 30]', '        - ["off", 70]']
    assert all(line.startswith(("$rollwise:", "  version:")) for line in added[2:])
    # kill + restore puts the flag back exactly as written; a schedule only adds to the $rollwise section
    flags("kill", "internal-beta-banner", "--file", str(path))
    assert "# dark launch: on for employees only" in path.read_text()
    flags("restore", "internal-beta-banner", "--file", str(path))
    flags("schedule", "button-color", "--file", str(path), "--at", "2031-01-01T00:00:00Z", "--disable")
    removed, _ = changed_lines(original, path.read_text())
    assert removed == ['        - ["on", 0]', '        - ["off", 100]']
    text = path.read_text()
    for comment in (ln for ln in original.splitlines() if ln.lstrip().startswith("#")):
        assert comment in text
    flag_set = FlagSet.load(path)  # still a valid flag file, read the way every server reads it
    assert flag_set.resolve("internal-beta-banner", {"email": "a@example.com"}).value is True
    assert yaml.safe_load(text)["flags"]["new-checkout"]["defaultVariant"] == "off"


def test_a_percent_the_written_scale_cannot_express_uses_hundredths(tmp_path: Path) -> None:
    path = tmp_path / "checkout.yaml"
    shutil.copy(EXAMPLE, path)
    flags("rollout", "new-checkout", "--file", str(path), "--percent", "12.5")
    assert '        - ["on", 1250]' in path.read_text().splitlines()


def test_json_keeps_indentation_order_and_inline_buckets(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    doc = {
        "flags": {
            "beta": {"state": "ENABLED", "variants": {"off": False, "on": True}, "defaultVariant": "off",
                     "targeting": {"fractional": [["off", 3], ["on", 1]]}},
            "theme": {"state": "ENABLED", "variants": {"dark": "d", "light": "l"}, "defaultVariant": "dark"},
        }
    }
    text = json.dumps(doc, indent=4)
    for pair in ('"off",\n                        3', '"on",\n                        1'):
        text = text.replace(f"[\n                        {pair}\n                    ]", f"[{pair.split(chr(10))[0]} "
                            f"{pair.split()[-1]}]")
    path.write_text(text + "\n")
    original = path.read_text()
    assert '["off", 3]' in original
    flags("rollout", "beta", "--file", str(path), "--percent", "50")
    removed, added = changed_lines(original, path.read_text())
    assert removed == ['                    ["off", 3],', '                    ["on", 1]']
    assert added[:2] == ['                    ["off", 2],', '                    ["on", 2]']  # order and total kept
    flags("kill", "theme", "--file", str(path))
    removed, _ = changed_lines(original, path.read_text())
    weights = ['                    ["off", 3],', '                    ["on", 1]']
    expected = {*weights, '            "state": "ENABLED",', "    }"}
    assert set(removed) <= expected and '            "state": "ENABLED",' in removed  # theme's state, nothing else
