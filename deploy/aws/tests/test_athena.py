"""The Athena tables read what dr-reactor writes: their columns are the
fields of the report and of the event as the API's schema (schema/
openapi.json, generated from the Rust types) gives them, and partition
projection finds the partitions from the key layout alone."""

import json
import os
import re

from conftest import ACCOUNT, DR, ROOT, resolve


def schema(name):
    with open(os.path.join(ROOT, "schema", "openapi.json")) as f:
        return json.load(f)["components"]["schemas"][name]


def table(r, logical):
    return r.resources[logical]["Properties"]["TableInput"]


def top_level(columns):
    return sorted(c["Name"] for c in columns)


def struct_fields(hive_type):
    """The field names of a `struct<...>` or `array<struct<...>>` type."""
    inner = re.sub(r"^array<(.*)>$", r"\1", hive_type)
    inner = re.sub(r"^struct<(.*)>$", r"\1", inner)
    return sorted(f.split(":")[0] for f in inner.split(","))


def test_the_reports_table_has_the_reports_fields(fixture_packaged):
    t = table(resolve(fixture_packaged, DR), "ReportsTable")
    columns = {c["Name"]: c["Type"] for c in t["StorageDescriptor"]["Columns"]}
    report = schema("Report")
    assert sorted(columns) == sorted(report["properties"])
    for column, component in (("times", "Times"), ("durations", "Durations"), ("steps", "StepReport"),
                              ("rto", "RtoReport"), ("rpo", "RpoReport"), ("votes", "VoteReport"),
                              ("timeline", "TimelineEntry")):
        try:
            fields = schema(component)["properties"]
        except KeyError:
            # Inlined in the report's schema rather than a component.
            prop = report["properties"][column]
            prop = prop.get("items", prop)
            fields = prop.get("properties") or next(p["properties"] for p in prop.get("oneOf", prop.get("anyOf", [])) if "properties" in p)
        assert struct_fields(columns[column]) == sorted(fields), column


def test_the_audit_table_has_the_events_fields(fixture_packaged):
    t = table(resolve(fixture_packaged, DR), "AuditEventsTable")
    assert top_level(t["StorageDescriptor"]["Columns"]) == sorted(schema("Event")["properties"])
    assert t["Parameters"]["compressionType"] == "gzip"


def test_partition_projection_follows_the_key_layout(fixture_packaged):
    r = resolve(fixture_packaged, DR, ReportsPrefix="dr/reports")
    bucket = f"dr-audit-{ACCOUNT}-{DR}"
    reports = table(r, "ReportsTable")
    p = reports["Parameters"]
    # src/report/archive.rs: PREFIX/dt=%Y-%m-%d/INCIDENT.json
    assert p["storage.location.template"] == f"s3://{bucket}/dr/reports/dt=${{dt}}/"
    assert reports["StorageDescriptor"]["Location"] == f"s3://{bucket}/dr/reports/"
    assert (p["projection.enabled"], p["projection.dt.type"], p["projection.dt.format"]) == ("true", "date", "yyyy-MM-dd")
    assert [k["Name"] for k in reports["PartitionKeys"]] == ["dt"]
    audit = table(r, "AuditEventsTable")
    p = audit["Parameters"]
    assert p["storage.location.template"] == f"s3://{bucket}/audit/dt=${{dt}}/hour=${{hour}}/"
    assert (p["projection.hour.type"], p["projection.hour.range"], p["projection.hour.digits"]) == ("integer", "0,23", "2")
    assert [k["Name"] for k in audit["PartitionKeys"]] == ["dt", "hour"]
    archive = open(os.path.join(ROOT, "src", "report", "archive.rs")).read()
    assert 'format!("dt={day}/{}.json", r.incident)' in archive, "the archive's layout changed: update the table"
    assert '.format("%Y-%m-%d")' in archive


def test_the_workgroup_enforces_encrypted_results_in_their_own_bucket(fixture_packaged):
    r = resolve(fixture_packaged, DR)
    w = r.resources["AuditWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert w["EnforceWorkGroupConfiguration"] is True
    assert w["ResultConfiguration"] == {
        "OutputLocation": f"s3://dr-audit-{ACCOUNT}-{DR}-athena/results/",
        "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": r.getatt("AuditKey", "Arn")},
    }
