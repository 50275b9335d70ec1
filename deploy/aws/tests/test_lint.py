"""cfn-lint (the CloudFormation team's linter) on the template as written
and as packaged, for both regions it is deployed in."""

import json
import subprocess
import sys

from conftest import DR, PRIMARY, TEMPLATE

# Used only by the resources package.py adds: unused in the source alone.
USED_BY_PACKAGED = {
    "W2001 Parameter LambdaRuntime not used.",
    "W2001 Parameter RunbookFunctionTimeout not used.",
    "W2001 Parameter LogRetentionDays not used.",
    "W8001 Condition HasLayers not used",
}


def lint(path):
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())", "--regions", PRIMARY, DR, "--format", "parseable", "--", path],
        capture_output=True, text=True,
    )
    findings = [line for line in run.stdout.splitlines() if line.strip()]
    return run.returncode, findings


def test_the_source_template_is_clean_but_for_what_packaging_uses():
    _, findings = lint(TEMPLATE)
    # parseable: file:line:col:line:col:RULE:message
    messages = {f"{f.split(':')[5]} {':'.join(f.split(':')[6:])}" for f in findings}
    assert messages == USED_BY_PACKAGED, "\n".join(findings)


def test_the_packaged_templates_are_clean(tmp_path, fixture_packaged, shipped_packaged):
    for name, template in (("fixture", fixture_packaged), ("shipped", shipped_packaged)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(template))
        code, findings = lint(str(path))
        assert (code, findings) == (0, []), f"{name}:\n" + "\n".join(findings)
