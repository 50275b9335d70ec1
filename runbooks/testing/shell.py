"""Runs the shell a runbook sends through Run Command (AWS-RunShellScript:
the `commands` lines joined into one script, run by bash), with stand-in
kubectl and helm on PATH that log their arguments and answer what a test
programs. moto records a command but runs nothing; this shows what the
command would do on the management host. Test tooling."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{log}"
key="$*"
case "$key" in
{cases}
esac
exit 0
"""


def run(commands: list[str], answers: dict[str, dict[str, tuple[int, str]]] | None = None,
        timeout: float = 30) -> tuple[int, list[str], str]:
    """`answers`: tool -> {glob over its arguments: (exit status, stdout)}. Returns
    (exit status, the tool calls in order, stderr)."""
    answers = answers or {}
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "calls.log"
        log.touch()
        for tool in ("kubectl", "helm"):
            cases = "\n".join(
                f"  {pattern.replace(' ', chr(92) + ' ')}) printf '%s' {json_quote(out)}; exit {status};;"
                for pattern, (status, out) in (answers.get(tool) or {}).items()
            )
            path = Path(d) / tool
            path.write_text(STUB.format(log=log, cases=cases))
            path.chmod(0o755)
        script = Path(d) / "script.sh"
        script.write_text("\n".join(commands) + "\n")
        env = {**os.environ, "PATH": f"{d}:{os.environ['PATH']}"}
        p = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, log.read_text().splitlines(), p.stderr


def json_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def sent_commands(aws, region: str, comment_part: str) -> list[str]:
    """The `commands` of the one Run Command a runbook sent."""
    found = [c for c in aws("ssm", region).list_commands()["Commands"] if comment_part in (c.get("Comment") or "")]
    assert len(found) == 1, found
    return found[0]["Parameters"]["commands"]
