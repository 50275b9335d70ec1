"""DR-HelmRollback through the interpreter against moto, and the decision
its shell makes on the management host, against a stand-in helm that
answers `helm history` with what Helm 3 prints."""

import json

from testing import shell, world
from testing.automation import Automation
from testing.harness import SEOUL, document

DOC = document("service/DR-HelmRollback.yaml")
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000c002"
PARAMS = {"Service": "order", "Version": "1.4.2", "FromVersion": "1.5.0", "IncidentId": INCIDENT}


def history(*rows):
    return json.dumps([{"revision": r, "updated": "2026-12-07T10:00:00Z", "status": s, "chart": f"order-{v}",
                        "app_version": v, "description": "Upgrade complete"} for r, s, v in rows])


HISTORY = history((1, "superseded", "1.3.0"), (2, "superseded", "1.4.2"), (3, "deployed", "1.5.0"))


def commands(aws, **extra):
    world.management_host(aws)
    result = Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})
    assert result["status"] == "Success", result["failure_message"]
    return shell.sent_commands(aws, SEOUL, "rollback order")


def helm(hist):
    return {"helm": {"history *": (0, hist)}}


def test_rolls_back_to_the_revision_of_the_previous_version(aws):
    status, calls, err = shell.run(commands(aws), helm(HISTORY))
    assert status == 0, err
    assert calls == ["helm history order -n order --max 100 -o json",
                     "helm rollback order 2 -n order --wait --timeout 600s"]


def test_already_at_the_version_changes_nothing(aws):
    back = history((2, "superseded", "1.4.2"), (3, "superseded", "1.5.0"), (4, "deployed", "1.4.2"))
    status, calls, _ = shell.run(commands(aws), helm(back))
    assert status == 0 and not any("rollback" in c for c in calls)


def test_someone_deployed_since_so_it_refuses(aws):
    newer = history((3, "superseded", "1.5.0"), (4, "deployed", "1.6.0"))
    status, calls, err = shell.run(commands(aws), helm(newer))
    assert status == 3 and "runs 1.6.0, not 1.5.0" in err
    assert not any("rollback" in c for c in calls)


def test_no_earlier_revision_of_the_version_is_refused(aws):
    status, _, err = shell.run(commands(aws, Version="1.0.0"), helm(HISTORY))
    assert status == 4 and "no earlier revision of version 1.0.0" in err


def test_no_version_from_the_event_rolls_back_one_revision(aws):
    status, calls, _ = shell.run(commands(aws, Version="", FromVersion=""), helm(HISTORY))
    assert status == 0 and calls[-1] == "helm rollback order -n order --wait --timeout 600s"


def test_a_second_run_sends_no_second_rollback(aws):
    commands(aws)
    again = Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run(PARAMS)
    assert again["status"] == "Success"
    assert len(world.commands(aws, SEOUL, "rollback order")) == 1


def test_a_version_with_shell_in_it_is_refused_before_anything_runs(aws):
    world.management_host(aws)
    result = Automation(DOC, SEOUL, aws.endpoint).run({**PARAMS, "Version": "1.4.2; rm -rf /"})
    assert result["status"] == "InvalidParameters"
    assert world.commands(aws, SEOUL) == []
